"""Argument checks shared by several modules (each module keeps the checks only it needs)."""

from __future__ import annotations

import numbers

__all__ = ["check_positive_int"]


def check_positive_int(value, argument: str) -> int:
    """``value`` as an int if it is a positive integer (a bool is not); else ``ValueError``
    naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    return int(value)
