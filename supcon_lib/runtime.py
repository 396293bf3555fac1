"""What the notebooks need to know about where they run: profile, device, versions, seeds.

Each notebook's ``parameters`` cell calls :func:`choose_profile`: the ``SUPCON_PROFILE``
environment variable (``smoke``, ``cpu``, ``gpu`` or ``full``) when set, else ``gpu`` when a GPU
(or TPU) is visible and ``smoke`` otherwise. Tests set ``SUPCON_PROFILE=smoke``; Colab readers
change nothing.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from supcon_lib import paths, training

__all__ = [
    "DRIVE_MOUNT_POINT",
    "DRIVE_RUNS_FOLDER",
    "PROFILES",
    "PROFILE_DESCRIPTIONS",
    "accelerator",
    "choose_profile",
    "describe",
    "keep_runs_on_drive",
    "seed_everything",
    "start_notebook",
]

#: The profiles; their settings live in ``training``.
PROFILES = training.PROFILES

#: What each profile costs, quoted in every notebook's header.
PROFILE_DESCRIPTIONS = {
    "smoke": "offline: scikit-learn's digits at 32x32, a small ResNet, a few epochs (seconds on a CPU)",
    "cpu": "real CIFAR-10 subset (10,000 train / 2,000 test), small ResNet (under 5 minutes per method on 2 CPU cores)",
    "gpu": "all of CIFAR-10, ResNet-18, 50 cross-entropy epochs against 25 SupCon epochs of two views "
           "(notebooks 04-06 within an hour on a Colab T4, estimated)",
    "full": "all of CIFAR-10, ResNet-18, the paper-style schedule (hours on a GPU)",
}


def accelerator():
    """``"gpu"``, ``"tpu"`` or ``"cpu"`` (a str): the first device kind the active Keras backend
    sees."""
    return training.accelerator_info()[0]


def choose_profile(default=None):
    """The profile to run (a str of :data:`PROFILES`): ``$SUPCON_PROFILE``, else ``default``, else
    ``"gpu"`` on a GPU or TPU and ``"smoke"`` otherwise. Raises ``ValueError`` for an unknown one."""
    profile = os.environ.get("SUPCON_PROFILE") or default
    if profile is None:
        profile = "gpu" if accelerator() in ("gpu", "tpu") else "smoke"
    if profile not in PROFILES:
        raise ValueError(f"SUPCON_PROFILE must be one of {list(PROFILES)}, found {profile!r}")
    return profile


def describe():
    """A str, one line each: Python, Keras and its backend, TensorFlow (when it is the backend),
    NumPy, scikit-learn, matplotlib, and the device kind; for the top of a notebook."""
    import keras
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
    import keras

    keras.utils.set_random_seed(seed)
