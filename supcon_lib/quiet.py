"""Start the Keras backend without TensorFlow's start-up lines in a notebook's first output.

TensorFlow writes several lines from C++ while it starts (oneDNN, CUDA driver probes, CPU feature
hints), straight to file descriptor 2 and before its log settings apply, so
``TF_CPP_MIN_LOG_LEVEL`` cannot hold them back and Jupyter shows them under the setup cell.
:func:`start` imports Keras (and so its backend) and looks for devices with descriptor 2
redirected, then passes on every line that is not one of those known start-up lines: nothing
else is ever swallowed. Call it before anything imports Keras::

    from supcon_lib import quiet
    quiet.start()
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

__all__ = ["STARTUP_NOISE", "is_startup_noise", "start"]

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


def is_startup_noise(line):
    """Whether the str ``line`` is one of TensorFlow's known start-up lines (a bool)."""
    return bool(_NOISE.search(line))


def start():
    """Import Keras and list the devices with TensorFlow's start-up lines filtered out (once;
    nothing happens if Keras is already imported). Errors of the import itself propagate."""
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

                tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if line.strip() and not is_startup_noise(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
