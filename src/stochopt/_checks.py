"""Argument checks shared across the library: each names the argument, shows the bad value
and states the valid range."""

from __future__ import annotations

import math

__all__ = ["check_int", "check_real"]


def check_real(owner: str, name: str, value: float, *, low: float = 0.0,
               low_open: bool = True, high: float = math.inf, high_open: bool = True) -> float:
    """``value`` as a float, refusing non-reals (``TypeError``) and values outside the
    interval from ``low`` to ``high`` (``ValueError``; open or closed ends as given)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high or math.isnan(value):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{owner}: {name} must be in {left}{low:g}, {high:g}{right}, "
                         f"got {value!r}")
    return float(value)


def check_int(owner: str, name: str, value: int, *, low: int = 1,
              high: int | None = None) -> int:
    """``value`` as an int of at least ``low`` (and at most ``high`` if given)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be an integer, got {value!r}")
    if high is not None and not low <= value <= high:
        raise ValueError(f"{owner}: {name} must be in [{low:g}, {high:g}], got {value!r}")
    if value < low:
        raise ValueError(f"{owner}: {name} must be >= {low}, got {value!r}")
    return value
