"""python -m supcon_lib train: a real tiny run, and every error path (exit 2, nothing written)."""

import json
import subprocess
import sys

import pytest

from supcon_lib import __main__ as cli


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "supcon_lib", *args], capture_output=True, text=True, timeout=600)


def test_tiny_run_writes_metrics(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--method", "ce", "--dataset", "digits", "--train-size", "100", "--test-size", "50",
                     "--epochs", "1", "--batch-size", "25", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "ce" and metrics["dataset"] == "digits" and metrics["seed"] == 3
    assert metrics["train_size"] == 100 and metrics["test_size"] == 50 and metrics["epochs"] == 1
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and 0.0 <= metrics["knn_accuracy"] <= 1.0
    assert metrics["train_seconds"] > 0 and len(metrics["history"]["train"]["loss"]) == 1
    assert '"test_accuracy"' in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "ce", "--epochs", "0"], "--epochs: expected a positive integer"),
        (["--method", "ce", "--batch-size", "many"], "--batch-size: expected a positive integer"),
        (["--method", "supcon", "--temperature", "-1"], "--temperature: expected a positive number"),
        (["--method", "knn"], "invalid choice: 'knn'"),
        (["--method", "ce", "--profile", "huge"], "invalid choice: 'huge'"),
        (["--method", "ce"], "required: --out"),
    ],
)
def test_invalid_arguments(tmp_path, capsys, args, message):
    argv = ["train", *args] + ([] if "--method" in args and args[-1] == "ce" and len(args) == 2 else [])
    if "required: --out" not in message:
        argv += ["--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--encoder", "vgg16"], "encoder must be one of"),
        (["--train-size", "5"], "train_size must be an integer >= 10"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar: no such file or folder"),
        (["--method", "supcon", "--train-size", "5000"], "size must lie in 1..1438"),
        (["--method", "supcon", "--temperature", "inf"], "temperature must be a finite number"),
        (["--method", "supcon", "--temperature", "1e-5"], "temperature must be >= 0.0001"),
    ],
)
def test_invalid_settings_or_data(tmp_path, capsys, extra, message):
    argv = ["train", "--method", "ce", *extra, "--out", str(tmp_path / "run")]
    if extra[0] == "--method":
        argv = ["train", *extra, "--out", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "run").exists()


def test_corrupt_cifar_copy_is_reported(tmp_path, capsys):
    copy = tmp_path / "cifar-10-batches-py"
    copy.mkdir()
    (copy / "data_batch_1").write_bytes(b"garbage")
    (copy / "test_batch").write_bytes(b"garbage")
    assert cli.main(["train", "--method", "ce", "--dataset", "cifar10", "--data-dir", str(copy),
                     "--out", str(tmp_path / "run")]) == 2
    assert "data_batch_1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    assert cli.main(["train", "--method", "ce", "--out", str(target)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_folder_with_other_settings_is_left_alone(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"method": "supcon", "epochs": 99}))
    before = sorted(p.name for p in run_dir.iterdir())
    assert cli.main(["train", "--method", "ce", "--out", str(run_dir)]) == 2
    assert "holds a run with other settings" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_run_folder_in_use_is_refused(tmp_path, capsys):
    import fcntl

    run_dir = tmp_path / "run"
    argv = ["train", "--method", "ce", "--dataset", "digits", "--train-size", "100", "--test-size", "50",
            "--epochs", "1", "--batch-size", "25", "--out", str(run_dir)]
    run_dir.mkdir()
    with open(run_dir / ".lock", "w") as held:  # another training process holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main(argv) == 2
    assert "in use by another training process" in capsys.readouterr().err
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoints").exists()
