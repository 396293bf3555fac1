"""Where a run executes: the profile, the device and what it offers, versions, seeds.

Each notebook's ``parameters`` cell calls :func:`choose_profile`: the ``SUPCON_PROFILE``
environment variable (``smoke``, ``cpu``, ``gpu`` or ``full``) when set, else ``gpu`` when a GPU
(or TPU) is visible and ``smoke`` otherwise. Tests set ``SUPCON_PROFILE=smoke``; Colab readers
change nothing.

Device choices (the only TensorFlow-specific code besides the input pipeline): mixed precision
and XLA are chosen per device (:func:`select_precision`, :func:`select_jit`), and
:func:`select_strategy` picks ``tf.distribute`` for several GPUs or a TPU (``batch_size`` is
always the global batch); :func:`accelerator_info` says what the device is.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path

import keras

from supcon_lib import paths, run_config

__all__ = [
    "DRIVE_MOUNT_POINT",
    "DRIVE_RUNS_FOLDER",
    "PROFILE_DESCRIPTIONS",
    "accelerator",
    "accelerator_info",
    "choose_profile",
    "describe",
    "keep_runs_on_drive",
    "seed_everything",
    "select_jit",
    "select_precision",
    "select_strategy",
    "start_notebook",
    "strategy_scope",
]

#: What each profile costs, quoted in every notebook's header.
PROFILE_DESCRIPTIONS = {
    "smoke": "offline: scikit-learn's digits at 32x32, a small ResNet, a few epochs (seconds on a CPU)",
    "cpu": "real CIFAR-10 subset (10,000 train / 2,000 test), small ResNet (about 5 minutes per method on 2 CPU cores)",
    "gpu": "all of CIFAR-10, ResNet-18, 50 cross-entropy epochs against 25 SupCon epochs of two views "
           "(notebooks 04-06 within an hour on a Colab T4, estimated)",
    "full": "all of CIFAR-10, ResNet-18, the paper-style schedule (hours on a GPU)",
}


def accelerator():
    """``"gpu"``, ``"tpu"`` or ``"cpu"`` (a str): the first device kind the active Keras backend
    sees."""
    return accelerator_info()[0]


def choose_profile(default=None):
    """The profile to run (a str of ``run_config.PROFILES``): ``$SUPCON_PROFILE``, else ``default``, else
    ``"gpu"`` on a GPU or TPU and ``"smoke"`` otherwise. Raises ``ValueError`` for an unknown one."""
    profile = os.environ.get("SUPCON_PROFILE") or default
    if profile is None:
        profile = "gpu" if accelerator() in ("gpu", "tpu") else "smoke"
    if profile not in run_config.PROFILES:
        raise ValueError(f"SUPCON_PROFILE must be one of {list(run_config.PROFILES)}, found {profile!r}")
    return profile


def describe():
    """A str, one line each: Python, Keras and its backend, TensorFlow (when it is the backend),
    NumPy, scikit-learn, matplotlib, and the device kind; for the top of a notebook."""
    import matplotlib
    import numpy
    import sklearn

    lines = [
        f"python {platform.python_version()} on {sys.platform}",
        f"keras {keras.__version__} (backend: {keras.backend.backend()})",
    ]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        lines.append(f"tensorflow {tf.__version__}")
    lines += [f"numpy {numpy.__version__}, scikit-learn {sklearn.__version__}, matplotlib {matplotlib.__version__}",
              f"device: {accelerator()}"]
    return "\n".join(lines)


#: Where Colab mounts Google Drive, and the folder inside it that keeps the runs.
DRIVE_MOUNT_POINT = "/content/drive"
DRIVE_RUNS_FOLDER = "MyDrive/supcon/runs"


def keep_runs_on_drive():
    """In Colab: mount Google Drive and keep training runs (checkpoints included) in
    ``MyDrive/supcon/runs``, so that a new runtime resumes them; ``/content``, where they live
    otherwise, is deleted when Colab recycles a runtime. Elsewhere: say so and change nothing.
    Returns the runs folder."""
    if "google.colab" not in sys.modules:
        print(f"keep_runs_on_drive: not in Colab; runs stay in {paths.runs_dir()}")
        return paths.runs_dir()
    from google.colab import drive

    drive.mount(DRIVE_MOUNT_POINT)
    os.environ["SUPCON_RUNS_DIR"] = str(Path(DRIVE_MOUNT_POINT) / DRIVE_RUNS_FOLDER)
    print(f"Runs are kept on Google Drive: {paths.runs_dir()}")
    return paths.runs_dir()


def start_notebook(seed=0, trains=False, runs_on_drive=False):
    """The common end of every notebook's setup cell: a GPU hint in Colab, where runs are kept
    (:func:`keep_runs_on_drive` when ``runs_on_drive``), seeds, versions.

    (The install itself stays in the notebook: it has to run before ``supcon_lib`` exists.)
    """
    if "google.colab" in sys.modules and accelerator() == "cpu":
        remedy = "or set SUPCON_PROFILE=smoke to try it on a CPU" if trains else "this notebook runs fine without one"
        print(f"No GPU: Runtime > Change runtime type > T4 GPU ({remedy}).")
    if runs_on_drive:
        keep_runs_on_drive()
    seed_everything(seed)
    print(describe())


def seed_everything(seed=0):
    """Seed Python's ``random``, NumPy and the Keras backend with the int ``seed``."""
    keras.utils.set_random_seed(seed)


# ------------------------------------------------------------------------------------------------
# Device choices
# ------------------------------------------------------------------------------------------------
def accelerator_info():
    """``(kind, capabilities)`` for the active Keras backend: ``kind`` is ``"tpu"``, ``"gpu"`` or
    ``"cpu"``; ``capabilities`` a list of floats, the compute capability of each visible GPU
    (e.g. 7.5 for a T4; empty otherwise)."""

    if keras.backend.backend() == "jax":
        import jax

        platform = jax.devices()[0].platform
        if platform == "gpu":
            capabilities = [float(getattr(d, "compute_capability", "0") or 0) for d in jax.devices()]
            return "gpu", capabilities
        return platform, []
    import tensorflow as tf

    if tf.config.list_logical_devices("TPU"):
        return "tpu", []
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = []
        for gpu in gpus:
            major_minor = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
            capabilities.append(major_minor[0] + major_minor[1] / 10)
        return "gpu", capabilities
    return "cpu", []


def select_precision(requested="auto"):
    """Keras dtype policy: bfloat16 on A100/H100-class GPUs (compute capability >= 8) and TPUs,
    float16 on T4/V100-class GPUs (7.x), float32 on CPUs, where reduced precision only slows."""
    if requested != "auto":
        return requested
    kind, capabilities = accelerator_info()
    if kind == "tpu":
        return "mixed_bfloat16"
    if kind == "gpu" and capabilities:
        return "mixed_bfloat16" if min(capabilities) >= 8 else "mixed_float16" if min(capabilities) >= 7 else "float32"
    return "float32"


def select_jit(requested="auto"):
    """Whether ``fit`` compiles its steps with XLA: always on JAX (without it, ``jax.jit`` is off
    and every operation runs on its own), and on GPUs and TPUs with TensorFlow. TensorFlow on a
    CPU runs its own graph instead: ``benchmarks/compile_modes.py`` measures both choices."""
    if requested != "auto":
        return requested == "on"
    return keras.backend.backend() == "jax" or accelerator_info()[0] in ("gpu", "tpu")


# The strategies made so far in this process, by kind and devices: one per process, reused by
# every run. Two MirroredStrategy objects in one process number their collective operations from
# the same keys, and TensorFlow remembers each key's operation: a cross-entropy run (all-reduces)
# followed by a SupCon run (whose loss all-gathers) in one kernel failed at the first step with
# "Collective instance ... expected type 0 ... but got type 2" (tests/test_distributed_training.py
# runs the recipes one after another in one process). A TPU system is initialised once, too.
_STRATEGIES = {}


def select_strategy(requested="auto"):
    """``tf.distribute`` strategy: TPUStrategy on a Colab TPU, MirroredStrategy on several GPUs,
    the default (one device) otherwise. Other Keras backends get ``None`` (no strategy scope).
    A process makes each strategy once and returns the same object to every later run."""

    if keras.backend.backend() != "tensorflow":
        if requested in ("mirrored", "tpu"):
            raise ValueError(f"strategy {requested!r} needs the TensorFlow backend")
        return None
    import tensorflow as tf

    if requested == "tpu" or (requested == "auto" and os.environ.get("COLAB_TPU_ADDR")):
        if "tpu" not in _STRATEGIES:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            _STRATEGIES["tpu"] = tf.distribute.TPUStrategy(resolver)
        return _STRATEGIES["tpu"]
    gpus = tf.config.list_logical_devices("GPU")
    if requested == "mirrored" or (requested == "auto" and len(gpus) > 1):
        # Every GPU; without GPUs, every (logical) CPU device, as the multi-device tests use.
        devices = tuple(device.name for device in gpus or tf.config.list_logical_devices("CPU"))
        if ("mirrored", devices) not in _STRATEGIES:
            _STRATEGIES["mirrored", devices] = tf.distribute.MirroredStrategy(devices=list(devices))
        return _STRATEGIES["mirrored", devices]
    return tf.distribute.get_strategy()


def strategy_scope(strategy):
    """``strategy.scope()`` when there is a strategy, a no-op context otherwise."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
