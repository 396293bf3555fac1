"""Where things live: figures, training runs, and a local CIFAR-10 copy.

Notebooks run from their own folder under the test runner, from the repository root on the
command line, and from ``/content`` in Colab, so no code here or in the notebooks uses relative
paths like ``../figures``. Every location can be overridden by an environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository address, defined once (Colab badges and installs use it).
REPOSITORY = "supcon-teaching/supcon"
REPOSITORY_URL = f"https://github.com/{REPOSITORY}"


def repo_root():
    """The checkout this package was imported from, or None when installed elsewhere (Colab)."""
    candidate = Path(__file__).resolve().parent.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "notebooks").is_dir():
        return candidate
    return None


def _base():
    return repo_root() or Path.cwd()


def figures_dir() -> Path:
    """``$SUPCON_FIGURES_DIR``, else ``figures/`` of the checkout (or of the working folder)."""
    path = Path(os.environ.get("SUPCON_FIGURES_DIR") or _base() / "figures")
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """``$SUPCON_RUNS_DIR``, else ``runs/`` of the checkout (or of the working folder)."""
    path = Path(os.environ.get("SUPCON_RUNS_DIR") or _base() / "runs")
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_cifar10_dir():
    """The 12,000-image CIFAR-10 subset next to a development checkout, or None."""
    root = repo_root()
    if root is None:
        return None
    candidate = root.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None
