"""What a :class:`~stochopt.bayesopt.Study` accepts: told evaluations (``tell``) and saved
states (``from_state_dict``, checkpoint files), checked whole before the study changes.

Format 2 adds the pending points and the search space, and writes a failed evaluation's
value (and constraint values) as ``null``; format 1 files (no failures, pending points or
space) still load."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt._io import damaged, require_fields
from stochopt.bayesopt._validate import real_tensor

__all__ = ["FORMAT", "RECOVER", "SETTINGS", "WHAT", "check_path", "check_seconds",
           "check_structure", "check_told", "failure", "nan_to_nulls", "nulls_to_nan"]

FORMAT = 2
READABLE = (1, 2)
SETTINGS = ("surrogate", "acquisition", "q", "noise", "n_initial", "n_constraints", "seed",
            "raw_samples", "restarts")
WHAT = "BO checkpoint"
RECOVER = ("delete it to start the study afresh, or put back a copy saved earlier (it is "
           "rewritten after every batch)")
_FIELDS = {"bounds": list, "settings": dict, "X": list, "y": list, "constraints": list,
           "fit_seconds": list, "acquisition_seconds": list}
_OPTIONAL = {"pending": list, "space": (dict, type(None))}  # format 2


def failure(path: Path | None) -> Callable[[str], Exception]:
    """The error for a problem with a saved state: a ``DamagedFileError`` naming ``path`` if
    the state came from a file, a ``ValueError`` of ``Study.from_state_dict`` otherwise."""
    if path is not None:
        return lambda problem: damaged(path, WHAT, problem, RECOVER)
    return lambda problem: ValueError(f"Study.from_state_dict: the state is not a saved "
                                      f"study: {problem}")


def check_path(owner: str, name: str, path: Any) -> Path:
    """``path`` (a ``str`` or ``os.PathLike``) as a ``Path``."""
    if isinstance(path, bool) or not isinstance(path, str | os.PathLike):
        raise TypeError(f"{owner}: {name} must be a path (str or os.PathLike), got {show(path)}")
    return Path(path)


def check_structure(state: Any, path: Path | None) -> None:
    """The keys and JSON types of a saved state (``format`` first, then every field, then the
    names of the settings)."""
    fail = failure(path)
    if not isinstance(state, dict):
        if path is None:
            raise TypeError(f"Study.from_state_dict: state must be a dict (from "
                            f"Study.state_dict), got {show(state)}")
        raise fail(f"it holds a JSON {type(state).__name__}, not an object")
    version = state.get("format")
    if isinstance(version, bool) or version not in READABLE:
        raise fail(f"unknown checkpoint format {show(version)} (this version reads formats "
                   f"{list(READABLE)})")
    fields = _FIELDS | (_OPTIONAL if version >= 2 else {})
    if path is not None:
        require_fields(state, path, WHAT, RECOVER, **fields)
    else:
        for key, kind in fields.items():
            if key not in state:
                raise fail(f"it has no {key!r} entry")
            if not isinstance(state[key], kind):
                names = kind.__name__ if isinstance(kind, type) else "dict or None"
                raise fail(f"its {key!r} entry is {show(state[key])}, expected {names}")
    names = set(state["settings"])
    if names != set(SETTINGS):
        missing, unknown = sorted(set(SETTINGS) - names), sorted(names - set(SETTINGS))
        raise fail(f"its settings lack {missing} and have unknown {unknown}")


def check_seconds(values: list, name: str, fail: Callable[[str], Exception]) -> list[float]:
    """Timings: finite numbers >= 0."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < math.inf:
            raise fail(f"its {name!r} entry holds {show(v)}, not a time in seconds")
    return [float(v) for v in values]


def _outside(points: Tensor, bounds: Tensor) -> tuple[int, int] | None:
    """The first (row, coordinate) of ``points`` outside ``bounds``, allowing the rounding of
    ``low + u (high - low)``; ``None`` when every point is inside."""
    low, high = bounds[:, 0], bounds[:, 1]
    slack = 1e-9 * (high - low) + 4 * torch.finfo(torch.float64).eps * torch.maximum(
        low.abs(), high.abs())
    lowest, highest = low - slack, high + slack
    bad = ((points < lowest) | (points > highest)).nonzero()
    return None if not len(bad) else (int(bad[0, 0]), int(bad[0, 1]))


def _finite(owner: str, name: str, values: Tensor, hint: str = "") -> None:
    if values.numel() and not bool(torch.isfinite(values).all()):
        index = tuple((~torch.isfinite(values)).nonzero()[0].tolist())
        raise ValueError(f"{owner}: {name} must be finite, got {values[index].item()} at "
                         f"{name}[{', '.join(map(str, index))}]{hint}")


def nulls_to_nan(values: Any) -> Any:
    """A JSON list (nested) with ``None`` (a failed evaluation) as NaN."""
    if isinstance(values, list):
        return [nulls_to_nan(v) for v in values]
    return math.nan if values is None else values


def nan_to_nulls(values: Tensor) -> list:
    """``values.tolist()`` with NaN as ``None`` (strict JSON has no NaN)."""
    def clean(v: Any) -> Any:
        return [clean(u) for u in v] if isinstance(v, list) else None if v != v else v

    return clean(values.tolist())


def check_told(owner: str, X: Any, y: Any, constraints: Any, bounds: Tensor, k: int
               ) -> tuple[Tensor, Tensor, Tensor]:
    """Evaluations to record: ``X`` ``(b, d)`` finite and inside ``bounds``, ``y`` ``(b,)``,
    and ``constraints`` ``(b, k)`` (``None`` when ``k == 0``); as float64 tensors. A row whose
    value or any constraint value is NaN or infinite is a failed evaluation: its value and
    constraint values come back as NaN."""
    d = bounds.shape[0]
    X = real_tensor(owner, "X", X).detach().to(torch.float64)
    y = real_tensor(owner, "y", y).detach().to(torch.float64)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"{owner}: X must have shape (b, {d}), one row per point of this "
                         f"{d}-dimensional study, got {tuple(X.shape)}")
    if y.shape != (len(X),):
        raise ValueError(f"{owner}: y must have shape (b,) = ({len(X)},), one value per row of "
                         f"X, got {tuple(y.shape)}")
    if constraints is None and k:
        raise ValueError(f"{owner}: this study has n_constraints={k}; pass constraints of "
                         f"shape ({len(X)}, {k})")
    if constraints is not None and not k:
        raise ValueError(f"{owner}: this study has no constraints (n_constraints=0), got "
                         f"constraints {show(constraints)}")
    c = torch.empty(len(X), 0, dtype=torch.float64) if constraints is None else \
        real_tensor(owner, "constraints", constraints).detach().to(torch.float64)
    if c.shape != (len(X), k):
        raise ValueError(f"{owner}: constraints must have shape (b, k) = ({len(X)}, {k}), got "
                         f"{tuple(c.shape)}")
    _finite(owner, "X", X)
    failed = ~torch.isfinite(y) | ~torch.isfinite(c).all(1)
    y = torch.where(failed, math.nan, y)
    c = torch.where(failed[:, None], math.nan, c)
    outside = _outside(X, bounds)
    if outside is not None:
        row, j = outside
        raise ValueError(f"{owner}: X[{row}] = {show(X[row].tolist())} lies outside the bounds "
                         f"(coordinate {j} must be in [{bounds[j, 0].item():g}, "
                         f"{bounds[j, 1].item():g}])")
    return X, y, c
