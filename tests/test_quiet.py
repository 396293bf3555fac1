"""supcon_lib.quiet: TensorFlow's start-up lines are filtered out, nothing else is."""

import subprocess
import sys
from pathlib import Path

from supcon_lib import quiet

ROOT = Path(__file__).resolve().parent.parent


def test_known_startup_lines():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795935205.182465    9352 port.cc:153] oneDNN custom operations are on. You may see ...",
        "I0000 00:00:1795935205.182804    9352 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
        "E0000 00:00:1795933564.076879    2284 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
        "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.",
    ]
    assert all(quiet.is_startup_noise(line) for line in noise)
    assert not quiet.is_startup_noise("ValueError: temperature must be > 0")
    assert not quiet.is_startup_noise("W0000 resource_variable_ops.cc] Out of memory while allocating")


def test_start_passes_on_every_other_line(tmp_path):
    # A stand-in for Keras that writes a start-up line and a real message straight to descriptor 2.
    (tmp_path / "keras.py").write_text(
        "import os\n"
        "os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on. Details.\\n')\n"
        "os.write(2, b'a message the reader must see\\n')\n"
        "class backend:\n"
        "    @staticmethod\n"
        "    def backend():\n"
        "        return 'jax'\n")
    code = "from supcon_lib import quiet; quiet.start(); import sys; print('keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert result.stderr == "a message the reader must see\n"


class _Records(list):
    """A logging handler that keeps the messages it is given."""

    level = 0

    def handle(self, record):
        self.append(record.getMessage())


# Seven fresh models, each predicting once, in a fresh interpreter: TensorFlow warns at most a few
# times per process about one function, so a test process that already trained models may see
# none. Prints the tensorflow logger's messages as JSON.
_FRESH_MODELS = """
import json, logging, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras, numpy as np
messages = []
handler = logging.Handler()
handler.emit = lambda record: messages.append(record.getMessage())
logging.getLogger("tensorflow").addHandler(handler)
for width in range(1, 8):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(width)])
    model.predict(np.ones((4, 3), "float32"), verbose=0)
print(json.dumps(messages))
"""


def test_fresh_model_retracing_warning_is_held_back_and_nothing_else():
    import json
    import logging

    result = subprocess.run([sys.executable, "-c", _FRESH_MODELS], capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-2000:]
    warned = [m for m in json.loads(result.stdout.strip().splitlines()[-1]) if "triggered tf.function retracing" in m]
    # The warning exists, and the pattern matches every instance of it.
    assert warned and all(quiet.FRESH_MODEL_RETRACING.search(m) for m in warned), result.stdout

    logger = logging.getLogger("tensorflow")
    records = _Records()
    logger.addHandler(records)
    saved_filters = list(logger.filters)
    try:
        quiet.hide_fresh_model_retracing()
        quiet.hide_fresh_model_retracing()  # installed once
        assert sum(type(f).__name__ == "_FreshModelRetracing" for f in logger.filters) == 1
        for message in warned:
            logger.warning(message)
        assert records == []
        # Any other message, a retracing warning about another function included, still passes.
        other = "5 out of the last 5 calls to <function my_step at 0x7f00> triggered tf.function retracing."
        logger.warning(other)
        logger.warning("something else")
        assert records == [other, "something else"]
    finally:
        logger.removeHandler(records)
        logger.filters = saved_filters


def test_devices_can_still_be_configured_after_start():
    # start() must not initialise TensorFlow's devices: memory growth or logical devices are set
    # after it (an earlier version ran a float16 product in start() and broke this).
    code = ("from supcon_lib import quiet; quiet.start()\n"
            "import tensorflow as tf\n"
            "cpu = tf.config.list_physical_devices('CPU')[0]\n"
            "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
            "print(len(tf.config.list_logical_devices('CPU')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "2"
