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
