"""supcon_lib.budget: compute-matched runs, their standard errors, and the study's results."""

import json
import math

import matplotlib
import numpy as np
import pytest

from supcon_lib import budget, run_config, training, viz

matplotlib.use("Agg")

TINY = dict(train_size=200, test_size=100, batch_size=50, encoder="resnet_small", seed=0, verbose=0,
            precision="float32")


@pytest.fixture(scope="module")
def digits_arrays():
    return training.load_data(run_config.RunConfig.from_profile("smoke", "ce", **TINY))


def test_plan_epochs_and_standard_error():
    assert budget.plan_epochs(60, 1000, 10_000) == 6
    assert budget.plan_epochs(61, 1000, 10_000) == 7  # rounded up: the schedule covers the budget
    assert budget.plan_epochs(0.001, 1000, 10_000) == 1
    assert budget.standard_error(0.75, 2000) == pytest.approx(math.sqrt(0.75 * 0.25 / 2000))
    assert budget.standard_error(1.0, 10) == 0.0
    for accuracy, n in ((1.5, 10), (-0.1, 10), (0.5, 0)):
        with pytest.raises(ValueError):
            budget.standard_error(accuracy, n)
    with pytest.raises(ValueError, match="seconds"):
        budget.WallClockBudget(float("nan"))


def _cell(recipe, seconds, seed, test, n=2000):
    se = math.sqrt(test * (1 - test) / n)
    return {"recipe": recipe, "budget_seconds": seconds, "seed": seed, "run_seconds": seconds + 20.0,
            "test_accuracy": test, "test_accuracy_se": se, "knn_accuracy": test, "knn_accuracy_se": se}


def test_difference_against_a_hand_computation():
    cells = [_cell("ce", 300, 0, 0.75), _cell("hybrid", 300, 0, 0.76)]
    delta, se = budget.difference(cells, "hybrid", "ce", 300)
    assert delta == pytest.approx(0.01)
    assert se == pytest.approx(math.hypot(math.sqrt(0.75 * 0.25 / 2000), math.sqrt(0.76 * 0.24 / 2000)))
    # two seeds whose spread is larger than the binomial error: the spread counts, divided by sqrt(2)
    cells += [_cell("ce", 300, 1, 0.70)]
    delta, se = budget.difference(cells, "hybrid", "ce", 300)
    assert delta == pytest.approx(0.76 - 0.725)
    spread = np.std([0.75, 0.70], ddof=1) / math.sqrt(2)
    assert se == pytest.approx(math.hypot(math.sqrt(0.76 * 0.24 / 2000), spread))
    with pytest.raises(ValueError, match="no 'supcon' cell at 300 s"):
        budget.difference(cells, "supcon", "ce", 300)


def test_run_at_budget_stops_at_the_budget_and_reports(digits_arrays):
    config = run_config.RunConfig.from_profile("smoke", "ce", **TINY)
    speed = budget.measure_throughput(config, digits_arrays, steps=2)
    assert speed > 0
    # A budget of zero seconds: the first step ends past it, so exactly one step is taken, of an
    # epoch planned for that budget (one epoch at least).
    cell = budget.run_at_budget(config, 0.0, digits_arrays, images_per_second=speed)
    assert cell["steps"] == 1 and cell["planned_epochs"] == 1
    assert cell["images_through_encoder"] == 50
    assert cell["test_images"] == 100 and 0 <= cell["test_accuracy"] <= 1
    assert cell["test_accuracy_se"] == pytest.approx(budget.standard_error(cell["test_accuracy"], 100))
    # A budget the planned epochs fit into: every planned step is taken (4 steps an epoch).
    cell = budget.run_at_budget(config, 1e6, digits_arrays, images_per_second=4e-4)
    assert cell["planned_epochs"] == 2 and cell["steps"] == 8
    # the supcon recipe counts its views
    supcon = run_config.RunConfig.from_profile("smoke", "supcon", probe_epochs=2, **TINY)
    cell = budget.run_at_budget(supcon, 0.0, digits_arrays, images_per_second=1.0)
    assert cell["steps"] == 1 and cell["images_through_encoder"] == 100


def test_study_results_and_plot(tmp_path):
    cells = [_cell(r, b, 0, 0.5 + 0.1 * i + b / 1000) for i, r in enumerate(("ce", "hybrid")) for b in (60, 300)]
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"cells": cells, "date": "2026-11-29"}))
    assert budget.study_results(path)["cells"] == cells
    fig = viz.plot_accuracy_against_budget(cells)
    lines = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert sorted(tuple(np.round(np.asarray(line.get_ydata(), float), 6)) for line in lines) == [(0.56, 0.8), (0.66, 0.9)]
    with pytest.raises(ValueError, match="no cells"):
        viz.plot_accuracy_against_budget([])
    with pytest.raises(FileNotFoundError):
        budget.study_results(tmp_path / "missing.json")


def test_the_committed_study_has_what_the_readme_cites():
    study = budget.study_results()
    recipes = {c["recipe"] for c in study["cells"]}
    assert {"ce", "ce_supcon_aug", "supcon_2views", "supcon_1view", "hybrid", "supcon_momentum"} <= recipes
    for recipe in recipes:
        budgets = {c["budget_seconds"] for c in study["cells"] if c["recipe"] == recipe}
        assert len(budgets) >= 3 and max(budgets) <= 600
