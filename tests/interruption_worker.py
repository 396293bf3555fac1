"""A training process that stops at a chosen point and waits there to be killed (tests/test_interruptions.py).

    python tests/interruption_worker.py RUN_DIR SIGNAL_FILE STOP [setting=value ...]

runs ``training.run`` with the settings of ``RunConfig.from_profile("smoke", "supcon", ...)``
(the same run as ``python -m supcon_lib train --method supcon`` with those flags) into RUN_DIR. At
the point STOP it writes SIGNAL_FILE and sleeps, holding the run folder, until the test kills it
(SIGKILL: no Python code runs after that, as when a machine goes away). STOP is one of

* ``phase1``: in phase 1 (pretraining), after the first batch of its second epoch;
* ``probe``: in phase 2 (the probe), after the first batch of its second epoch;
* ``npz``: while phase 1's second epoch is being checkpointed, half-way through writing its
  variables (the temporary ``.npz`` holds half of its bytes);
* ``marker``: while phase 1's second epoch is being checkpointed, after its variables are in
  place, half-way through writing the new marker that commits them (the old one still in place).

Started in the folder of a killed one, it resumes it as ``python -m supcon_lib train`` would (the
tests chain the four stops in one folder). The first two use an ordinary Keras callback
(``run(..., callbacks=...)``); the last two wrap, in this process only, the two library calls that
write the files, so the library itself has no code for tests.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

from supcon_lib import checkpoint, run_config, training

WAIT_SECONDS = 300  # killed long before; a worker nobody kills ends by itself


def _stop_here(signal_file):
    # What the session printed ("[pretrain] 1 of 2 epochs already done ...") reaches its log
    # before the test, told by the signal file, kills it (SIGKILL flushes nothing).
    sys.stdout.flush()
    Path(signal_file).write_text(str(os.getpid()))
    time.sleep(WAIT_SECONDS)
    sys.exit(3)  # not killed: the test failed to do its part


class StopInFit(keras.callbacks.Callback):
    """Stops after the first batch of the second epoch of the ``fit_number``-th fit (1: phase 1, 2: probe)."""

    def __init__(self, fit_number, signal_file):
        super().__init__()
        self.fit_number, self.signal_file = fit_number, signal_file
        self.fits, self.epoch = 0, None

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.fits == self.fit_number and self.epoch == 1 and batch == 0:
            _stop_here(self.signal_file)


def _stop_in_npz_write(signal_file, target):
    real_savez = np.savez

    def savez(file, *args, **arrays):
        if target not in str(file):
            return real_savez(file, *args, **arrays)
        buffer = io.BytesIO()
        real_savez(buffer, *args, **arrays)
        payload = buffer.getvalue()
        with open(file, "wb") as stream:
            stream.write(payload[: len(payload) // 2])
        _stop_here(signal_file)

    np.savez = savez


def _stop_before_commit(signal_file, marker_name, epochs_done):
    real_write_json = checkpoint.write_json

    def write_json(path, value):
        path = Path(path)
        if path.name == marker_name and value.get("epochs_done") == epochs_done:
            text = json.dumps(value)
            path.with_name(f".{path.name}.tmp").write_text(text[: len(text) // 2])  # the new marker, half written
            _stop_here(signal_file)
        return real_write_json(path, value)

    checkpoint.write_json = write_json


def _setting(text):
    name, value = text.split("=", 1)
    return name, int(value) if value.lstrip("-").isdigit() else value


def main(argv):
    run_dir, signal_file, stop, *settings = argv
    config = run_config.RunConfig.from_profile("smoke", "supcon", verbose=0, **dict(map(_setting, settings)))
    callbacks = []
    if stop == "phase1":
        callbacks.append(StopInFit(1, signal_file))
    elif stop == "probe":
        callbacks.append(StopInFit(2, signal_file))
    elif stop == "npz":
        _stop_in_npz_write(signal_file, ".pretrain-epoch0002.npz.tmp")
    elif stop == "marker":
        _stop_before_commit(signal_file, "pretrain.json", 2)
    elif stop != "none":
        raise SystemExit(f"unknown stop {stop!r}")
    training.run(config, run_dir, callbacks=callbacks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
