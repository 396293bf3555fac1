"""benchmarks/full_recipe_jax.py: the GPU script, run here on the CPU at a tiny size, on the JAX
backend with TensorFlow made unimportable (the GPU machine it is written for has none)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from supcon_lib import data, packed

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "full_recipe_jax.py"
WITHOUT_TF = Path(__file__).resolve().parent / "without_tensorflow.py"


def run_script(*args):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1").strip()
    return subprocess.run([sys.executable, str(WITHOUT_TF), str(SCRIPT), *map(str, args)],
                          capture_output=True, text=True, timeout=900, env=env)


def test_tiny_full_recipe_from_a_packed_file_without_tensorflow(tmp_path):
    (x_train, y_train), (x_test, y_test) = data.load_digits32()
    archive = tmp_path / "digits.npz"
    packed.pack(archive, (x_train, y_train), (x_test, y_test), data.DIGITS_CLASS_NAMES)
    out, runs = tmp_path / "report", tmp_path / "runs"
    result = run_script("--data", archive, "--methods", "supcon", "--train-size", 96, "--test-size", 40,
                        "--epochs", 2, "--probe-epochs", 2, "--batch-size", 32, "--encoder", "resnet_small",
                        "--runs-dir", runs, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "full_recipe_jax.json").read_text())
    (row,) = report["runs"]
    assert row["backend"] == "jax" and row["method"] == "supcon" and row["epochs"] == 2
    assert row["train_size"] == 96 and row["test_size"] == 40
    assert 0 < row["epoch_seconds"] and 0 < row["first_epoch_seconds"]
    assert row["images_per_second"] == row["train_size"] // 32 * 32 / row["epoch_seconds"]
    assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["knn_accuracy"] <= 1.0
    assert report["machine"]["backend"] == "jax" and report["machine"]["devices"]
    assert "| supcon | resnet_small | 2 + 2 probe | 32 |" in (out / "full_recipe_jax.md").read_text()
    metrics = json.loads((runs / "supcon" / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and len(metrics["history"]["pretrain"]["seconds"]) == 2
    assert np.isfinite(metrics["history"]["pretrain"]["loss"]).all()


def test_bad_data_is_reported_and_nothing_is_written(tmp_path):
    out, runs = tmp_path / "report", tmp_path / "runs"
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    result = run_script("--data", tmp_path / "junk.npz", "--runs-dir", runs, "--out", out)
    assert result.returncode == 2 and "not a packed CIFAR-10 file" in result.stderr
    assert not out.exists() and not runs.exists()


def load_script_module(monkeypatch):
    """The script as a module (its ``main`` is not run). It refuses a backend other than JAX at
    import, so the variable is set for the import alone; Keras is already imported here."""
    import importlib.util

    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ on the path
    spec = importlib.util.spec_from_file_location("full_recipe_jax", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_method_is_summarised_from_its_own_phases(monkeypatch):
    # ce and hybrid train in one phase ("train"); supcon pre-trains, then probes. The summary
    # reads the training phase's epoch times, the first (XLA's compilation) reported apart.
    script = load_script_module(monkeypatch)
    common = dict(encoder="resnet18", epochs=3, batch_size=100, views=2, train_size=1050, test_size=200,
                  train_seconds=9.0, test_accuracy=0.5, knn_accuracy=0.4, precision="bfloat16", backend="jax")
    one_phase = {"train": {"seconds": [30.0, 2.0, 4.0]}}
    runs = {"ce": dict(common, method="ce", probe_epochs=None, history=one_phase),
            "hybrid": dict(common, method="hybrid", probe_epochs=None, history=one_phase),
            "supcon": dict(common, method="supcon", probe_epochs=2,
                           history={"pretrain": {"seconds": [40.0, 5.0, 7.0]}, "probe": {"seconds": [1.0, 1.0]}})}
    rows = {method: script.summarise(metrics) for method, metrics in runs.items()}
    for method, (first, median) in {"ce": (30.0, 3.0), "hybrid": (30.0, 3.0), "supcon": (40.0, 6.0)}.items():
        row = rows[method]
        assert row["method"] == method and row["first_epoch_seconds"] == first and row["epoch_seconds"] == median
        assert row["images_per_second"] == 1000 / median  # whole batches only: 10 of 100
        assert row["seconds_per_50k_epoch"] == median * 50_000 / 1050
