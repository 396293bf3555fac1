"""Real interruptions: training processes killed with SIGKILL at chosen points, then started again.

A worker process (tests/interruption_worker.py) trains a small SupCon run (the smoke profile on
200 digits) and stops at a chosen point: in phase 1, in the probe, half-way through writing a
checkpoint's variables, or before the marker that commits them. The test kills it there
(SIGKILL: nothing runs after it, as when a Colab session disconnects), then runs
``python -m supcon_lib train`` with the same settings and folder, and compares the result with an
uninterrupted run of that command: everything but wall times must agree.

Also here: the run-folder lock between two processes, and that two fresh runs with one seed on
one machine give the same metrics. (POSIX only, like the lock: SIGKILL and flock.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("interruption_worker.py")
# Two epochs of phase 1 (4 steps each), three of the probe: a kill in the second epoch of
# either leaves one completed epoch behind it.
SETTINGS = dict(train_size=200, test_size=100, epochs=2, probe_epochs=3, batch_size=50, encoder="resnet_small", seed=0)
FLAGS = ["--method", "supcon", "--profile", "smoke"] + [
    item for name, value in SETTINGS.items() for item in (f"--{name.replace('_', '-')}", str(value))]
WAIT_SECONDS = 300  # a safety limit for a worker to reach its stopping point, not a speed requirement


def _environment():
    # On the CPU whatever the machine has: these tests are about one CPU's arithmetic.
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1", "JAX_PLATFORMS": "cpu"}


def train(run_dir):
    """``python -m supcon_lib train`` with the settings above; the completed process."""
    return subprocess.run([sys.executable, "-m", "supcon_lib", "train", *FLAGS, "--out", str(run_dir)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=_environment())


def train_to_the_end(run_dir):
    result = train(run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text()), result.stdout


def start_worker(run_dir, stop, logs):
    """A worker training into ``run_dir`` that has reached ``stop`` and waits there."""
    signal_file, log = logs / f"{run_dir.name}-{stop}.signal", logs / f"{run_dir.name}-{stop}.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [sys.executable, str(WORKER), str(run_dir), str(signal_file), stop,
             *(f"{name}={value}" for name, value in SETTINGS.items())],
            stdout=output, stderr=subprocess.STDOUT, cwd=ROOT, env=_environment())
    deadline = time.monotonic() + WAIT_SECONDS
    while not signal_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(f"the worker never reached {stop!r} (exit status {process.returncode}):\n"
                        + log.read_text()[-3000:])
        time.sleep(0.05)
    return process


def kill(process):
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def marker(run_dir, phase):
    return json.loads((run_dir / "checkpoints" / f"{phase}.json").read_text())


def files(folder):
    """Every file under ``folder`` with its contents."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def without_wall_times(metrics):
    metrics = dict(metrics)
    del metrics["train_seconds"]
    metrics["history"] = {phase: {name: values for name, values in history.items() if name != "seconds"}
                          for phase, history in metrics["history"].items()}
    return metrics


def assert_same_run(got, want):
    """Every metric, every epoch's loss and accuracy, equal to the uninterrupted run's (wall times aside).

    The same seed, data order, restored random-number states and kernels make the same
    arithmetic on one machine: on 2 CPU cores every resumed run here was bit-identical to the
    uninterrupted one. The comparison allows float32 rounding (rtol 1e-6) all the same.
    """
    got, want = without_wall_times(got), without_wall_times(want)
    assert got.keys() == want.keys()
    for phase in want["history"]:
        assert got["history"][phase].keys() == want["history"][phase].keys(), phase
        for name, values in want["history"][phase].items():
            np.testing.assert_allclose(got["history"][phase][name], values, rtol=1e-6, err_msg=f"{phase} {name}")
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-6), key
        elif key != "history":
            assert got[key] == value, key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    metrics, _ = train_to_the_end(run_dir)
    return metrics


def test_two_fresh_runs_with_one_seed_agree(uninterrupted, tmp_path):
    metrics, _ = train_to_the_end(tmp_path / "again")
    assert_same_run(metrics, uninterrupted)  # (bit-identical where measured, 2 CPU cores)
    assert metrics["history"]["pretrain"]["loss"][1] < metrics["history"]["pretrain"]["loss"][0]
    assert metrics["knn_accuracy"] > 0.5  # chance is 0.1: a real run, not an empty one


@pytest.fixture(scope="module")
def killed_in_phase_one(tmp_path_factory):
    """A worker paused in phase 1's second epoch; a second process tries the same folder; the
    worker is killed; the command is started again and runs to the end."""
    logs = tmp_path_factory.mktemp("phase1")
    run_dir = logs / "run"
    worker = start_worker(run_dir, "phase1", logs)
    try:
        held = files(run_dir)
        second = train(run_dir)
        after_second = files(run_dir)
    finally:
        kill(worker)
    state = dict(marker=marker(run_dir, "pretrain"), metrics=(run_dir / "metrics.json").exists(),
                 probe=(run_dir / "checkpoints" / "probe.json").exists())
    metrics, stdout = train_to_the_end(run_dir)
    return dict(run_dir=run_dir, held=held, second=second, after_second=after_second, state=state,
                metrics=metrics, stdout=stdout)


def test_a_second_process_is_refused_while_the_first_holds_the_folder(killed_in_phase_one):
    second = killed_in_phase_one["second"]
    assert second.returncode == 2
    assert "in use by another training process" in second.stderr and "Traceback" not in second.stderr
    assert ".lock" in killed_in_phase_one["held"]  # the first process held it...
    assert killed_in_phase_one["after_second"] == killed_in_phase_one["held"]  # ...and nothing was written


def test_kill_in_phase_one_then_resume_matches_an_uninterrupted_run(killed_in_phase_one, uninterrupted):
    run = killed_in_phase_one
    assert run["state"]["marker"]["epochs_done"] == 1  # killed in the second epoch
    assert not run["state"]["metrics"] and not run["state"]["probe"]
    assert "[pretrain] 1 of 2 epochs already done" in run["stdout"]  # resumed, not started over
    assert_same_run(run["metrics"], uninterrupted)
    # The killed session's epoch counts in the wall time, and no lock file outlives the run.
    assert run["metrics"]["history"]["pretrain"]["seconds"][0] == run["state"]["marker"]["history"]["seconds"][0]
    assert not (run["run_dir"] / ".lock").exists()


def test_kill_in_the_probe_then_resume_matches_an_uninterrupted_run(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    kill(start_worker(run_dir, "probe", tmp_path))
    assert marker(run_dir, "pretrain")["epochs_done"] == 2 and marker(run_dir, "probe")["epochs_done"] == 1
    assert not (run_dir / "metrics.json").exists()
    metrics, stdout = train_to_the_end(run_dir)
    assert "[pretrain] 2 of 2 epochs already done" in stdout and "[probe] 1 of 3 epochs already done" in stdout
    assert_same_run(metrics, uninterrupted)


def test_kills_while_a_checkpoint_is_written_then_resume_matches(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    checkpoints = run_dir / "checkpoints"
    # 1. Killed half-way through writing epoch 2's variables: epoch 1 stays the last one.
    kill(start_worker(run_dir, "npz", tmp_path))
    half_written = checkpoints / ".pretrain-epoch0002.npz.tmp.npz"
    assert half_written.exists() and not zipfile.is_zipfile(half_written)
    assert marker(run_dir, "pretrain")["epochs_done"] == 1
    # 2. Started again (a worker again), killed after epoch 2's variables are in place but while
    #    the marker that commits them is half written: the old marker still names epoch 1.
    kill(start_worker(run_dir, "marker", tmp_path))
    assert not half_written.exists()  # the second session removed the first one's leftovers
    assert zipfile.is_zipfile(checkpoints / "pretrain-epoch0002.npz")
    assert (checkpoints / ".pretrain.json.tmp").exists()
    assert marker(run_dir, "pretrain")["epochs_done"] == 1
    # 3. The command started again finishes the run as if it had never been interrupted.
    metrics, stdout = train_to_the_end(run_dir)
    assert "[pretrain] 1 of 2 epochs already done" in stdout
    assert_same_run(metrics, uninterrupted)
    assert sorted(path.name for path in checkpoints.iterdir()) == [
        "pretrain-epoch0002.npz", "pretrain.json", "probe-epoch0003.npz", "probe.json"]  # no temporaries
    assert not (run_dir / ".lock").exists()
