"""Input checks shared by the Bayesian-optimization entry points: each names its owner and the
argument, shows the bad value and says what is allowed (``TypeError`` for the wrong kind of
value, ``ValueError`` for a wrong value), and runs before anything is changed."""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from stochopt._checks import show
from stochopt.errors import NotReadyError

__all__ = ["NotReadyError", "check_bounds", "check_data", "check_generator", "check_points",
           "check_scalar", "real_tensor", "restore_on_error"]


def real_tensor(owner: str, name: str, value: Any) -> Tensor:
    """``value`` as a real tensor, refusing what is not numeric, booleans and complex numbers
    (``TypeError``). Tensors keep their floating dtype; integer tensors and everything else
    (sequences of Python numbers, numpy arrays) become float64, without a float32 detour."""
    if not isinstance(value, Tensor):
        try:
            kind = torch.as_tensor(value).dtype
            if kind != torch.bool and not kind.is_complex:
                value = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{owner}: {name} must be a tensor or a (nested) sequence of real "
                            f"numbers, got {show(value)}") from None
        if kind == torch.bool or kind.is_complex:
            raise TypeError(f"{owner}: {name} must hold real numbers, got {show(value)}")
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{owner}: {name} must hold real numbers, got dtype {value.dtype}")
    return value if value.is_floating_point() else value.to(torch.float64)


def _finite(owner: str, name: str, value: Tensor) -> None:
    if value.numel() and not bool(torch.isfinite(value.detach()).all()):
        bad = (~torch.isfinite(value.detach())).nonzero()[0].tolist()
        raise ValueError(f"{owner}: {name} must be finite, got "
                         f"{value.detach()[tuple(bad)].item()} at index {tuple(bad)}")


def check_bounds(owner: str, bounds: Any) -> Tensor:
    """The search box as a float64 ``(d, 2)`` tensor of finite rows (lower, upper) with
    lower < upper, ``1 <= d <= 21201`` (the Sobol design's limit)."""
    bounds = real_tensor(owner, "bounds", bounds).to(torch.float64)
    if bounds.ndim != 2 or bounds.shape[1] != 2 or bounds.shape[0] < 1:
        raise ValueError(f"{owner}: bounds must have shape (d, 2) with rows (lower, upper), got "
                         f"{tuple(bounds.shape)}")
    if bounds.shape[0] > SobolEngine.MAXDIM:
        raise ValueError(f"{owner}: bounds has {bounds.shape[0]} rows; at most "
                         f"{SobolEngine.MAXDIM} dimensions are supported")
    width = bounds[:, 1] - bounds[:, 0]
    if not (bounds[:, 0] < bounds[:, 1]).all() or not torch.isfinite(width).all():
        raise ValueError(f"{owner}: bounds must be finite with lower < upper in every row, got "
                         f"{show(bounds.tolist())}")
    return bounds


def check_points(owner: str, name: str, X: Any, d: int, rows: str = "m") -> Tensor:
    """``X`` as a real ``(m, d)`` tensor of finite points (dtype and autograd kept); ``rows``
    names the number of points in the message."""
    X = real_tensor(owner, name, X)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"{owner}: {name} must have shape ({rows}, {d}) (one row per point), "
                         f"got {tuple(X.shape)}")
    _finite(owner, name, X)
    return X


def check_data(owner: str, X: Any, y: Any, bounds: Any) -> tuple[Tensor, Tensor, Tensor]:
    """Training data: ``X`` ``(n, d)`` and ``y`` ``(n,)`` finite with ``n >= 1``, and the box
    ``bounds`` ``(d, 2)``; returned as float64 tensors."""
    bounds = check_bounds(owner, bounds)
    d = bounds.shape[0]
    X = check_points(owner, "X", X, d, rows="n").detach().to(torch.float64)
    y = real_tensor(owner, "y", y).detach().to(torch.float64)
    if y.shape != (X.shape[0],):
        raise ValueError(f"{owner}: y must have shape (n,) = ({X.shape[0]},) to match X "
                         f"{tuple(X.shape)}, got {tuple(y.shape)}")
    if X.shape[0] < 1:
        raise ValueError(f"{owner}: need at least one point, got X of shape {tuple(X.shape)}")
    _finite(owner, "y", y)
    return X, y, bounds


def check_generator(owner: str, generator: Any) -> torch.Generator | None:
    """``generator`` if it is a ``torch.Generator`` or ``None``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be a torch.Generator or None, got "
                        f"{show(generator)}")
    return generator


def check_scalar(owner: str, name: str, value: Any) -> float:
    """A finite real number (a Python or numpy number, or a one-element tensor)."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.dtype == torch.bool or value.is_complex():
            raise ValueError(f"{owner}: {name} must be a single real number, got {show(value)}")
        number = float(value.detach())
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    else:
        raise TypeError(f"{owner}: {name} must be a real number, got {show(value)}")
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"{owner}: {name} must be finite, got {number!r}")
    return number


@contextmanager
def restore_on_error(obj: object) -> Iterator[None]:
    """Run the block; if it raises, put back ``obj``'s attributes as they were (the block must
    rebind attributes rather than change their values in place)."""
    saved = dict(vars(obj))
    try:
        yield
    except BaseException:
        vars(obj).clear()
        vars(obj).update(saved)
        raise
