"""benchmarks/speed.py and loss_cost.py: every section runs at a tiny size and reports sanely.

The numbers themselves are measurements, not test results (they live in benchmarks/results and
the README); these tests only keep the benchmark code working on every backend.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import loss_cost  # noqa: E402
import speed  # noqa: E402

from supcon_lib import data  # noqa: E402

TINY_RECIPES = {
    "original": dict(speed.RECIPES["original"], encoder="resnet_small", batch_size=24),
    "ours": dict(speed.RECIPES["ours"], encoder="resnet_small", batch_size=16),
}


@pytest.fixture(scope="module")
def tiny_arrays():
    (x_train, y_train), (x_test, y_test) = data.load_digits32()
    return (x_train[:96], y_train[:96]), (x_test[:40], y_test[:40]), data.DIGITS_CLASS_NAMES


@pytest.fixture(scope="module")
def recipes(tiny_arrays):
    """speed.bench_recipes on TINY_RECIPES, measured once for the two tests below (the second
    only in the TensorFlow pass)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(speed, "RECIPES", TINY_RECIPES)
        return speed.bench_recipes(tiny_arrays, steps=1, warmup=1)


@pytest.fixture(scope="module")
def pipeline(tiny_arrays):
    return speed.bench_input_pipeline(tiny_arrays, "resnet_small", 16, steps=2, warmup=1, rounds=2)


def test_recipes_and_input_pipeline(recipes, pipeline):
    for name, row in recipes.items():
        assert row["batch_size"] == TINY_RECIPES[name]["batch_size"]
        assert row["images_per_second"] == pytest.approx(row["batch_size"] / row["seconds_per_step"])
    assert pipeline["rounds"] == 2 and math.isfinite(pipeline["overhead"])


# The budget's bookkeeping and the report (the runs in it are one step of each recipe, which train
# on JAX in test_training.py and test_hybrid_and_momentum.py): in the TensorFlow pass only.
@pytest.mark.backend_independent
def test_recipes_budget_and_report(tiny_arrays, recipes, pipeline, monkeypatch):
    monkeypatch.setattr(speed, "RECIPES", TINY_RECIPES)
    # A zero budget stops pre-training after its first step, whatever the plan was; the probe
    # afterwards is not cut short.
    budget = speed.bench_budget(tiny_arrays, recipes, budget_seconds=0.0, probe_epochs=2)
    for name, row in budget.items():
        assert row["planned_epochs"] == 1 and row["steps"] == 1
        assert row["images_seen"] == TINY_RECIPES[name]["batch_size"]
        assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["knn_accuracy"] <= 1.0
    report = {"date": "today", "machine": speed.machine(), "data": "digits", "recipes": recipes,
              "budget_seconds": 0.0, "budget_probe_epochs": 2, "budget": budget, "input_pipeline": pipeline,
              "loss_cost": [{"batch_size": 8, "loss_ms": 1.0, "step_ms": 2.0}, {"batch_size": 16, "loss_ms": 3.0}],
              "tsne": {"points": 10, "dim": 2, "seconds": 1.0, "method": "sklearn", "knn_accuracy_2d": 1.0}}
    text = speed.markdown(report)
    assert "| original | resnet_small | 24 | 1 | npairs |" in text and "| ours | resnet_small | 16 | 2 | supcon |" in text
    assert "| original | 1 | 1 | 24 |" in text and "| 16 | 3.0 | not measured |" in text


def test_loss_cost_sections_run():
    args = loss_cost.parse_args(["--sizes", "8", "--repeats", "1"])
    rng = np.random.default_rng(0)
    loss = loss_cost.bench_loss(8, args, rng)
    assert loss["median_ms"] > 0 and loss["min_ms"] <= loss["median_ms"]
    encoder, _ = loss_cost.build_small_encoder()
    step = loss_cost.bench_step(8, args, rng, encoder)
    assert step["median_ms"] > 0


@pytest.mark.jax_redundant("XLA on/off is TensorFlow's switch (JAX always compiles); the recipes it builds "
                           "train on JAX in test_training.py and test_hybrid_and_momentum.py")
def test_compile_modes_runs_both_modes(tiny_arrays):
    import compile_modes

    args = compile_modes.parse_args(["--steps", "1", "--rounds", "2", "--batch-size", "16", "--encoder", "resnet_small"])
    (x_train, y_train), (x_test, y_test), _ = tiny_arrays
    # One method (each compiles twice, ~7 s a mode on 2 cores): both go through the same code,
    # and SupCon's two views are what the report has to count.
    report = {"date": "today", "machine": speed.machine(), "steps": 1, "rounds": 2, "methods": {
        "supcon": compile_modes.bench_method("supcon", ((x_train, y_train), (x_test, y_test)), args)}}
    for row in report["methods"].values():
        assert set(row["xla"]) == {"on", "off"} and all(len(mode["rounds"]) == 2 for mode in row["xla"].values())
        assert row["speed_up"] == pytest.approx(row["xla"]["off"]["seconds_per_step"] / row["xla"]["on"]["seconds_per_step"])
    assert report["methods"]["supcon"]["views"] == 2
    assert "| supcon | resnet_small | 16 | 2 |" in compile_modes.markdown(report)


@pytest.mark.backend_independent  # cells, resume and report: budget runs, as in the TF pass
def test_recipe_study_is_resumable(tmp_path, capsys):
    import json

    import recipe_study

    argv = ["--recipes", "ce", "supcon_1view", "--budgets", "0", "--dataset", "digits", "--train-size", "60",
            "--test-size", "40", "--batch-size", "20", "--probe-epochs", "1", "--out", str(tmp_path)]
    assert recipe_study.main(argv) == 0
    report = json.loads((tmp_path / "recipe_study.json").read_text())
    assert [(c["recipe"], c["budget_seconds"], c["seed"]) for c in report["cells"]] == [
        ("ce", 0.0, 0), ("supcon_1view", 0.0, 0)]
    for cell in report["cells"]:
        assert cell["steps"] == 1  # a zero budget stops after the first step
        assert cell["images_through_encoder"] == 20  # one view: as many images as cross-entropy
        p = cell["test_accuracy"]
        assert cell["test_accuracy_se"] == pytest.approx(math.sqrt(p * (1 - p) / 40))
    assert (tmp_path / "recipe_study.png").stat().st_size > 0
    assert "| supcon_1view | 0 | 0 | 1 | 20 | 100% |" in (tmp_path / "recipe_study.md").read_text()
    capsys.readouterr()
    assert recipe_study.main(argv) == 0  # started again: every cell is there already
    assert capsys.readouterr().out.count("already done") == 2
    assert json.loads((tmp_path / "recipe_study.json").read_text())["cells"] == report["cells"]
