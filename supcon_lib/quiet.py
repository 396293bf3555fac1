"""Start the Keras backend without TensorFlow's start-up lines in a notebook's first output.

TensorFlow writes several lines from C++ while it starts (oneDNN, CUDA driver probes, CPU feature
hints), straight to file descriptor 2 and before its log settings apply, so
``TF_CPP_MIN_LOG_LEVEL`` cannot hold them back and Jupyter shows them under the setup cell.
:func:`start` imports Keras (and so its backend) and looks for devices with descriptor 2
redirected, then passes on every line that is not one of those known start-up lines: nothing
else is ever swallowed. Call it before anything imports Keras::

    from supcon_lib import quiet
    quiet.start()

It also holds back one TensorFlow warning that is a false alarm in a notebook that trains several
models (:func:`hide_fresh_model_retracing`): "5 out of the last 10 calls to <function
TensorFlowTrainer.make_predict_function.<locals>.one_step_on_data_distributed ...> triggered
tf.function retracing". TensorFlow counts traces per Python *code object*, and every Keras model
makes its own predict (train, test) function from the same code, so five new models, each traced
once, read as five retracings of one function. A model that really retraces is caught by the
tests (``tests/test_training.py::test_embeddings_and_predictions_trace_once``), not by this warning.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile

__all__ = ["FRESH_MODEL_RETRACING", "STARTUP_NOISE", "hide_fresh_model_retracing", "is_startup_noise", "start"]

#: Start-up lines of TensorFlow and XLA that say nothing about the reader's code.
STARTUP_NOISE = (
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers on your machine",
    r"failed call to cuInit",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* rebuild TensorFlow",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
)
_NOISE = re.compile("|".join(STARTUP_NOISE))


#: TensorFlow's frequent-retracing warning about the step functions Keras makes for every model.
FRESH_MODEL_RETRACING = re.compile(
    r"calls to <function TensorFlowTrainer\.make_(?:train|test|predict)_function\.<locals>\.\w+ at 0x[0-9a-f]+> "
    r"triggered tf\.function retracing")


class _FreshModelRetracing(logging.Filter):
    def filter(self, record):
        return not FRESH_MODEL_RETRACING.search(record.getMessage())


def hide_fresh_model_retracing():
    """Hold back TensorFlow's retracing warning for Keras' per-model step functions (see the
    module's docstring; every other log record passes). Installed once on the ``tensorflow``
    logger; :func:`start` calls it."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _FreshModelRetracing) for f in logger.filters):
        logger.addFilter(_FreshModelRetracing())


def is_startup_noise(line):
    """Whether the str ``line`` is one of TensorFlow's known start-up lines (a bool)."""
    return bool(_NOISE.search(line))


def start():
    """Hide the fresh-model retracing warning, then import Keras and list the devices with
    TensorFlow's start-up lines filtered out (once: the import is skipped if Keras is already
    imported). Errors of the import itself propagate."""
    hide_fresh_model_retracing()
    if "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own INFO and WARNING logs
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                # Lists the devices without initialising them: a reader may still configure
                # them afterwards (memory growth, logical devices). Running an operation here
                # would forbid that.
                tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if line.strip() and not is_startup_noise(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
