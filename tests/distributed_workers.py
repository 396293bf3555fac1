"""The two several-device workers in one fresh process, started once per test session.

test_distributed_training.py (mirrored_training_worker.py) and test_losses_distributed.py
(losses_distributed_worker.py) both need two logical CPU devices, which must be configured before
TensorFlow initialises its devices: a fresh interpreter, which pays TensorFlow's start-up
(~5 CPU-s). Run as a script,

    python tests/distributed_workers.py FOLDER

this module sets the devices up once, runs both workers' checks (each guarded: an exception in
one is reported as its "error" and the other still runs) and prints one JSON line
``{"mirrored_training": {...}, "losses": {...}}``.

Imported by the two test modules, :func:`report` starts that process once per test session and
hands each module its part. Under pytest-xdist the workers share the result through the run's
common temporary folder (under a file lock: the first worker to ask runs the process, the others
wait for it or read it).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
PARTS = ("mirrored_training", "losses")
_completed = None  # this process's copy of the worker's outcome


def _environment():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _run_worker(folder):
    completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(folder)], cwd=REPO_ROOT,
                               env=_environment(), capture_output=True, text=True, timeout=900)
    return {"returncode": completed.returncode, "stdout": completed.stdout, "stderr": completed.stderr}


def _outcome(tmp_path_factory):
    global _completed
    if _completed is None:
        root = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            root = root.parent  # the folder common to this run's xdist workers
        folder = root / "distributed_workers"
        folder.mkdir(exist_ok=True)
        saved = folder / "outcome.json"
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not saved.exists():
                outcome = _run_worker(folder / "runs")
                saved.with_suffix(".tmp").write_text(json.dumps(outcome))
                saved.with_suffix(".tmp").replace(saved)
            _completed = json.loads(saved.read_text())
    return _completed


def report(tmp_path_factory, part):
    """The worker's report of ``part`` (one of PARTS); fails the test if the worker or that part failed."""
    completed = _outcome(tmp_path_factory)
    assert completed["returncode"] == 0, (
        f"worker failed with exit code {completed['returncode']}\n"
        f"stdout:\n{completed['stdout'][-3000:]}\nstderr:\n{completed['stderr'][-6000:]}")
    result = json.loads(completed["stdout"].strip().splitlines()[-1])[part]
    assert "error" not in result, f"the {part} worker failed:\n{result.get('error')}"
    return result


def main(folder):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    sys.path.insert(0, str(REPO_ROOT))
    sys.path.insert(0, str(HERE))
    Path(folder).mkdir(parents=True, exist_ok=True)
    import tensorflow as tf

    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import losses_distributed_worker
    import mirrored_training_worker

    results = {}
    for part, run in (("mirrored_training", lambda: mirrored_training_worker.run(str(folder))),
                      ("losses", losses_distributed_worker.run)):
        # Both parts use the library's strategy, made once per process (runtime.select_strategy):
        # two strategies in one process would number their collective operations alike, and the
        # losses part's all-gathers would collide with the training part's all-reduces.
        try:
            results[part] = run()
        except Exception:  # reported to that part's tests; the other part still runs
            results[part] = {"error": traceback.format_exc()}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
