"""Where things live: figures, training runs, a local CIFAR-10 copy, and where the library comes from.

Notebooks run from their own folder under the test runner, from the repository root on the
command line, and from ``/content`` in Colab, so no code here or in the notebooks uses relative
paths like ``../figures``. Every location can be overridden by an environment variable.

Installed from a wheel (outside a checkout) nothing here needs the repository: figures and runs
go to ``figures/`` and ``runs/`` of the working folder, and :func:`shared_cifar10_dir` returns
None. Inside a development checkout they go next to the notebooks instead; that, and the CIFAR-10
subset under ``../shared/data``, are conveniences, never requirements.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "INSTALL_SOURCE",
    "RELEASE_TAG",
    "REPOSITORY",
    "REPOSITORY_URL",
    "figures_dir",
    "repo_root",
    "runs_dir",
    "shared_cifar10_dir",
]

#: The repository address, defined once (Colab badges and installs use it).
REPOSITORY = "supcon-teaching/supcon"
REPOSITORY_URL = f"https://github.com/{REPOSITORY}"
#: The release the notebooks install in Colab: the tag of this version (``v`` + ``__version__``).
RELEASE_TAG = "v0.2.0"
#: What a notebook's setup cell passes to ``pip install`` in Colab. A notebook cannot import the
#: library before installing it, so each setup cell spells out this string; a test checks that
#: every notebook's copy equals this one.
INSTALL_SOURCE = f"git+{REPOSITORY_URL}@{RELEASE_TAG}"


def repo_root():
    """The checkout this package was imported from (a ``Path``), or None when it was installed
    from a wheel or elsewhere (Colab): a checkout has ``pyproject.toml`` and ``notebooks/``
    next to the package."""
    candidate = Path(__file__).resolve().parent.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "notebooks").is_dir():
        return candidate
    return None


def _base():
    return repo_root() or Path.cwd()


def figures_dir() -> Path:
    """``$SUPCON_FIGURES_DIR``, else ``figures/`` of the checkout (or of the working folder when
    installed); created if missing. Raises ``OSError`` if it cannot be created."""
    path = Path(os.environ.get("SUPCON_FIGURES_DIR") or _base() / "figures")
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """``$SUPCON_RUNS_DIR``, else ``runs/`` of the checkout (or of the working folder when
    installed); created if missing. Raises ``OSError`` if it cannot be created."""
    path = Path(os.environ.get("SUPCON_RUNS_DIR") or _base() / "runs")
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_cifar10_dir():
    """The 12,000-image CIFAR-10 subset next to a development checkout (``../shared/data``, a
    ``Path``), or None: always None when installed, and where the folder is missing."""
    root = repo_root()
    if root is None:
        return None
    candidate = root.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None
