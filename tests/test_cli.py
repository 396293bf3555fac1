"""python -m supcon_lib train: a real tiny run, and every error path (exit 2, nothing written)."""

import json

import numpy as np
import pytest

from conftest import write_batch
from supcon_lib import __main__ as cli, checkpoint, run_config


def test_tiny_run_writes_metrics(tmp_path, capsys):
    # In this process through cli.main, as the other tests here: ``python -m supcon_lib train`` in a
    # fresh interpreter runs in every test of test_interruptions.py (and its exit status 0 there).
    out = tmp_path / "run"
    status = cli.main(["train", "--method", "ce", "--dataset", "digits", "--train-size", "100", "--test-size", "50",
                       "--epochs", "1", "--batch-size", "25", "--seed", "3", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "ce" and metrics["dataset"] == "digits" and metrics["seed"] == 3
    assert metrics["train_size"] == 100 and metrics["test_size"] == 50 and metrics["epochs"] == 1
    # Four steps leave the classifier near chance (0.1; measured 0.2), but the k-NN on its features
    # already reads the digits (measured 0.62): that floor is known.
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["knn_accuracy"] > 0.3
    assert metrics["train_seconds"] > 0 and len(metrics["history"]["train"]["loss"]) == 1
    assert '"test_accuracy"' in captured.out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "ce", "--epochs", "0"], "--epochs: expected a positive integer"),
        (["--method", "ce", "--batch-size", "many"], "--batch-size: expected a positive integer"),
        (["--method", "supcon", "--temperature", "-1"], "--temperature: expected a positive number"),
        (["--method", "supcon", "--temperature", "nan"], "--temperature: expected a positive number, found 'nan'"),
        (["--method", "supcon", "--learning-rate", "nan"], "--learning-rate: expected a positive number, found 'nan'"),
        (["--method", "ce", "--learning-rate", "0"], "--learning-rate: expected a positive number"),
        (["--method", "ce", "--weight-decay", "-1"], "--weight-decay: expected a number >= 0"),
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
        (["--method", "supcon", "--train-size", "5000"], "train_size must lie in 1..1438"),
        (["--test-size", "360"], "test_size must lie in 1..359"),
        (["--method", "supcon", "--temperature", "inf"], "temperature must be a finite number"),
        (["--method", "supcon", "--temperature", "1e-5"], "temperature must be >= 0.0001"),
        (["--method", "supcon", "--learning-rate", "inf"], "learning_rate must be a finite number > 0"),
        (["--method", "ce", "--weight-decay", "inf"], "weight_decay must be a finite number >= 0"),
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


def files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("empty, message", [("training", "the training batches (data_batch_1) hold no images"),
                                            ("test", "test_batch: the test batch holds no images")])
def test_empty_split_is_reported(tmp_path, capsys, empty, message):
    import pickle

    copy = tmp_path / "cifar-10-batches-py"
    copy.mkdir()
    for name, split in (("data_batch_1", "training"), ("test_batch", "test")):
        if split == empty:  # a well-formed batch of no images
            (copy / name).write_bytes(pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, protocol=4))
        else:
            write_batch(copy / name, np.zeros((10, 32, 32, 3), np.uint8), range(10))
    assert cli.main(["train", "--method", "ce", "--dataset", "cifar10", "--data-dir", str(copy),
                     "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "run").exists()


def test_empty_data_folder_is_reported(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["train", "--method", "ce", "--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"),
                     "--out", str(tmp_path / "run")]) == 2
    assert "holds no CIFAR-10 copy" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


TINY_ARGS = ["train", "--method", "ce", "--dataset", "digits", "--train-size", "100", "--test-size", "50",
             "--epochs", "1", "--batch-size", "25"]


def _tiny_run_folder(tmp_path):
    """A folder holding the settings of TINY_ARGS and a checkpoint of its first epoch (to damage)."""
    config = run_config.RunConfig.from_profile("smoke", "ce", dataset="digits", train_size=100, test_size=50,
                                             epochs=1, batch_size=25)
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    checkpoint.write_json(run_dir / "config.json", checkpoint._saved_settings(config))
    np.savez(run_dir / "checkpoints" / "train-epoch0001.npz", **{"foreign/kernel": np.zeros((3, 2), np.float32)})
    marker = {"epochs_done": 1, "history": {"loss": [2.0]}, "file": "train-epoch0001.npz"}
    checkpoint.write_json(run_dir / "checkpoints" / "train.json", marker)
    return run_dir, marker


@pytest.mark.parametrize("contents, message", [
    ("{not json", "config.json: unreadable"),
    ("[]", "not the settings of a run"),
    ('{"method": 3}', "holds a run with other settings"),
])
def test_corrupt_config_json_is_reported_and_left_alone(tmp_path, capsys, contents, message):
    run_dir, _ = _tiny_run_folder(tmp_path)
    (run_dir / "config.json").write_text(contents)
    before = files(run_dir)
    assert cli.main([*TINY_ARGS, "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert files(run_dir) == before


@pytest.mark.parametrize("damage, message", [
    ("missing npz", "the variables file it names, train-epoch0001.npz, is missing"),
    ("marker not JSON", "train.json: unreadable"),
    ("marker wrong type", "epochs_done must be a non-negative integer"),
])
def test_damaged_checkpoint_is_reported_and_left_alone(tmp_path, capsys, damage, message):
    run_dir, marker = _tiny_run_folder(tmp_path)
    if damage == "missing npz":
        (run_dir / "checkpoints" / "train-epoch0001.npz").unlink()
    elif damage == "marker not JSON":
        (run_dir / "checkpoints" / "train.json").write_text("{")
    else:
        (run_dir / "checkpoints" / "train.json").write_text(json.dumps({**marker, "epochs_done": -1}))
    before = files(run_dir)
    assert cli.main([*TINY_ARGS, "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "use another output folder" in err
    assert files(run_dir) == before


def test_checkpoint_of_another_model_is_reported_and_left_alone(tmp_path, capsys):
    # Found only once the model is built, inside the run: still one message, exit 2, no lock left.
    run_dir, _ = _tiny_run_folder(tmp_path)
    before = files(run_dir)
    assert cli.main([*TINY_ARGS, "--out", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "its variables are not the model's" in err
    assert "'foreign/kernel' in the checkpoint" in err
    assert files(run_dir) == before
