"""Argument checks shared across the library: each names the argument, shows the bad value
and states the valid range (``TypeError`` for the wrong kind of value, ``ValueError`` for a
value out of range)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["check_int", "check_real", "check_seed", "check_tensor", "show"]

#: the seeds ``torch.Generator.manual_seed`` accepts without wrapping (and numpy accepts)
SEED_MAX = 2**63 - 1


def show(value: Any, limit: int = 80) -> str:
    """``repr(value)``, shortened to ``limit`` characters (tensors by dtype and shape)."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print (sys.set_int_max_str_digits)
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_real(owner: str, name: str, value: float, *, low: float = 0.0,
               low_open: bool = True, high: float = math.inf, high_open: bool = True) -> float:
    """``value`` as a float, refusing non-reals (``TypeError``) and values outside the
    interval from ``low`` to ``high`` (``ValueError``; open or closed ends as given; NaN is
    always refused, infinity unless an end is closed at it)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {show(value)}")
    given = value
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float range
        value = math.inf if given > 0 else -math.inf
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high or math.isnan(value):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{owner}: {name} must be in {left}{low:g}, {high:g}{right}, "
                         f"got {show(given)}")
    return value


def check_int(owner: str, name: str, value: int, *, low: int = 1,
              high: int | None = None) -> int:
    """``value`` as an int of at least ``low`` (and at most ``high`` if given)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an integer, got {show(value)}")
    value = int(value)
    if high is not None and not low <= value <= high:
        raise ValueError(f"{owner}: {name} must be in [{low}, {high}], got {value!r}")
    if value < low:
        raise ValueError(f"{owner}: {name} must be >= {low}, got {value!r}")
    return value


def check_seed(owner: str, name: str, value: Any, *, optional: bool = False) -> int | None:
    """A random seed: an integer in ``[0, 2**63 - 1]`` (``None`` too if ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        allowed = "an integer or None" if optional else "an integer"
        raise TypeError(f"{owner}: {name} must be {allowed}, got {show(value)}")
    if not 0 <= int(value) <= SEED_MAX:
        raise ValueError(f"{owner}: {name} must be in [0, 2**63 - 1], got {value!r}")
    return int(value)


def check_tensor(owner: str, name: str, value: Any, *, shape: Sequence[int | None] | None = None,
                 ndim: int | Sequence[int] | None = None, floating: bool = True,
                 finite: bool = True) -> torch.Tensor:
    """``value`` as a tensor with the given ``shape`` (``None`` entries match any size) or
    number of dims, floating point if ``floating``, with only finite values if ``finite``.
    Other tensor-likes (lists, numpy arrays) are converted with ``torch.as_tensor``."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{owner}: {name} must be a tensor, got {show(value)}") from None
    if floating and not (value.is_floating_point() or value.is_complex()):
        raise TypeError(f"{owner}: {name} must be a floating-point tensor, got dtype "
                        f"{value.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{owner}: {name} must have {want} dims, got shape "
                             f"{tuple(value.shape)}")
    if shape is not None:
        matches = value.ndim == len(shape) and all(
            want is None or want == got for want, got in zip(shape, value.shape))
        if not matches:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{owner}: {name} must have shape {want}, got "
                             f"{tuple(value.shape)}")
    if finite and value.numel() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{owner}: {name} must be finite, got a NaN or infinite entry")
    return value
