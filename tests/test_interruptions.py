"""Real interruptions: training processes killed with SIGKILL at chosen points, then started again.

A worker process (tests/interruption_worker.py) trains a small SupCon run (the smoke profile on
200 digits) and stops at a chosen point: in phase 1, in the probe, half-way through writing a
checkpoint's variables, or before the marker that commits them. The test kills it there
(SIGKILL: nothing runs after it, as when a Colab session disconnects). The four interruptions
happen one after another in one run folder, each worker resuming what the killed one left;
then ``python -m supcon_lib train`` with the same settings and folder finishes the run, and the
result is compared with an uninterrupted run of that command: everything but wall times must
agree (so each of the resumes was exact).

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


def worker_log(run_dir, stop, logs):
    """What the worker of ``start_worker(run_dir, stop, logs)`` printed before it was killed."""
    return (logs / f"{run_dir.name}-{stop}.log").read_text()


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
def interrupted_chain(tmp_path_factory):
    """One run folder through every kind of interruption, each session resuming the last one's:

    1. a worker paused in phase 1's second epoch; a second process tries the same folder; the
       worker is killed;
    2. a worker (resuming after epoch 1) killed half-way through writing epoch 2's variables;
    3. a worker killed after epoch 2's variables are in place, with the marker that commits them
       half written;
    4. a worker (resuming after epoch 1 again) killed in the probe's second epoch;
    5. the command started again runs to the end.

    The state at each stop is recorded here and judged by the tests below. Every session resumes
    the previous one's checkpoints, so the final metrics equal an uninterrupted run's only if
    every one of the four resumes was exact (one chain: 8 processes for the module, not 10,
    and phase 1 is trained from scratch once instead of three times).
    """
    logs = tmp_path_factory.mktemp("chain")
    run_dir = logs / "run"
    checkpoints = run_dir / "checkpoints"
    half_written = checkpoints / ".pretrain-epoch0002.npz.tmp.npz"
    stops = {}
    # 1. Killed in phase 1 while a second process tries the folder.
    worker = start_worker(run_dir, "phase1", logs)
    try:
        held = files(run_dir)
        second = train(run_dir)
        after_second = files(run_dir)
    finally:
        kill(worker)
    stops["phase1"] = dict(marker=marker(run_dir, "pretrain"), metrics=(run_dir / "metrics.json").exists(),
                           probe=(checkpoints / "probe.json").exists())
    # 2. Killed half-way through writing epoch 2's variables.
    kill(start_worker(run_dir, "npz", logs))
    stops["npz"] = dict(log=worker_log(run_dir, "npz", logs), half_written=half_written.exists(),
                        half_written_is_zip=half_written.exists() and zipfile.is_zipfile(half_written),
                        marker=marker(run_dir, "pretrain"))
    # 3. Killed while the marker that commits epoch 2 is half written.
    kill(start_worker(run_dir, "marker", logs))
    stops["marker"] = dict(half_written=half_written.exists(),
                           epoch2_is_zip=zipfile.is_zipfile(checkpoints / "pretrain-epoch0002.npz"),
                           marker_tmp=(checkpoints / ".pretrain.json.tmp").exists(),
                           marker=marker(run_dir, "pretrain"))
    # 4. Killed in the probe's second epoch.
    kill(start_worker(run_dir, "probe", logs))
    stops["probe"] = dict(log=worker_log(run_dir, "probe", logs), pretrain=marker(run_dir, "pretrain"),
                          probe=marker(run_dir, "probe"), metrics=(run_dir / "metrics.json").exists())
    # 5. The command, started again, finishes the run.
    metrics, stdout = train_to_the_end(run_dir)
    return dict(run_dir=run_dir, held=held, second=second, after_second=after_second, stops=stops,
                metrics=metrics, stdout=stdout, checkpoints=sorted(path.name for path in checkpoints.iterdir()),
                lock=(run_dir / ".lock").exists())


def test_a_second_process_is_refused_while_the_first_holds_the_folder(interrupted_chain):
    second = interrupted_chain["second"]
    assert second.returncode == 2
    assert "in use by another training process" in second.stderr and "Traceback" not in second.stderr
    assert ".lock" in interrupted_chain["held"]  # the first process held it...
    assert interrupted_chain["after_second"] == interrupted_chain["held"]  # ...and nothing was written


def test_kill_in_phase_one_then_resume_matches_an_uninterrupted_run(interrupted_chain, uninterrupted):
    run, state = interrupted_chain, interrupted_chain["stops"]["phase1"]
    assert state["marker"]["epochs_done"] == 1  # killed in the second epoch
    assert not state["metrics"] and not state["probe"]
    # The next session (the "npz" worker; fit_epochs prints this line whatever ``verbose`` is)
    # resumed, not started over.
    assert "[pretrain] 1 of 2 epochs already done" in run["stops"]["npz"]["log"]
    assert_same_run(run["metrics"], uninterrupted)
    # The killed session's epoch counts in the wall time (the last session trained only the
    # probe's last two epochs), and no lock file outlives the run.
    history = run["metrics"]["history"]
    assert history["pretrain"]["seconds"][0] == state["marker"]["history"]["seconds"][0]
    assert run["metrics"]["train_seconds"] >= sum(history["pretrain"]["seconds"]) + sum(history["probe"]["seconds"])
    assert not run["lock"]


def test_kill_in_the_probe_then_resume_matches_an_uninterrupted_run(interrupted_chain, uninterrupted):
    run, state = interrupted_chain, interrupted_chain["stops"]["probe"]
    assert state["pretrain"]["epochs_done"] == 2 and state["probe"]["epochs_done"] == 1
    assert not state["metrics"]
    stdout = run["stdout"]
    assert "[pretrain] 2 of 2 epochs already done" in stdout and "[probe] 1 of 3 epochs already done" in stdout
    assert_same_run(run["metrics"], uninterrupted)


def test_kills_while_a_checkpoint_is_written_then_resume_matches(interrupted_chain, uninterrupted):
    run, stops = interrupted_chain, interrupted_chain["stops"]
    # 1. Killed half-way through writing epoch 2's variables: epoch 1 stays the last one.
    assert stops["npz"]["half_written"] and not stops["npz"]["half_written_is_zip"]
    assert stops["npz"]["marker"]["epochs_done"] == 1
    # 2. Started again (a worker again), killed after epoch 2's variables are in place but while
    #    the marker that commits them is half written: the old marker still names epoch 1.
    assert not stops["marker"]["half_written"]  # the second session removed the first one's leftovers
    assert stops["marker"]["epoch2_is_zip"]
    assert stops["marker"]["marker_tmp"]
    assert stops["marker"]["marker"]["epochs_done"] == 1
    # 3. The session started after that (the "probe" worker) resumed from epoch 1, and the run,
    #    finished by the command, is as if it had never been interrupted.
    assert "[pretrain] 1 of 2 epochs already done" in stops["probe"]["log"]
    assert_same_run(run["metrics"], uninterrupted)
    assert run["checkpoints"] == [
        "pretrain-epoch0002.npz", "pretrain.json", "probe-epoch0003.npz", "probe.json"]  # no temporaries
    assert not run["lock"]
