"""The scikit-optimize-shaped loop over a :class:`~stochopt.bayesopt.Study`:
:func:`minimize` evaluates ``f`` at each asked batch, records failures, checkpoints and
resumes."""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, show
from stochopt.bayesopt._state import SETTINGS, check_path
from stochopt.bayesopt.space import Space
from stochopt.bayesopt.study import Result, Study

__all__ = ["minimize"]


def _objective(value: Any, x: Tensor) -> float:
    """``f``'s value at ``x`` as a float: a real number, or a numpy or torch scalar (one
    element); NaN or infinite is a failed evaluation (NaN)."""
    where = f"at x = {show(x.tolist())}"
    if hasattr(value, "__array__") and not isinstance(value, Tensor | numbers.Number):
        with contextlib.suppress(TypeError, ValueError, RuntimeError):  # a numpy array
            value = torch.as_tensor(value)
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"minimize: f must return a single number, got a tensor of shape "
                             f"{tuple(value.shape)} {where}")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"minimize: f must return a real number, got dtype {value.dtype} "
                            f"{where}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"minimize: f must return a real number, got {show(value)} {where}")
    return float(value) if math.isfinite(value) else math.nan


def _evaluate(f: Callable, x: Tensor, n_constraints: int, space: Space | None,
              catch: tuple[type[BaseException], ...]) -> tuple[float, list[float]]:
    """``f`` at ``x`` (a copy: ``f`` may change its argument; or the point's parameter
    dict with a space): its value and constraint values, NaN for a failed evaluation."""
    try:
        value = f(x.clone() if space is None else space.params(x[None])[0])
    except catch:
        return math.nan, [math.nan] * n_constraints
    if not n_constraints:
        return _objective(value, x), []
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"minimize: with n_constraints={n_constraints}, f must return "
                        f"(value, [c_1, ..., c_{n_constraints}]), got {show(value)} at x = "
                        f"{show(x.tolist())}")
    value, constraints = value
    where = f"at x = {show(x.tolist())}"
    try:
        values = None if isinstance(constraints, str | bytes) else \
            [float(c) for c in constraints]
    except (TypeError, ValueError, RuntimeError):
        values = None
    if values is None or len(values) != n_constraints:
        raise ValueError(f"minimize: f's constraint values must be a sequence of "
                         f"{n_constraints} real number(s), got {show(constraints)} {where}")
    return _objective(value, x), values


def _check_resumable(saved: Study, new: Study, given: dict, path: Path) -> None:
    """Refuse to resume a checkpoint whose box or explicitly given settings differ."""
    differ = [k for k in given if saved.settings.get(k) != new.settings.get(k)]
    if saved.bounds.shape != new.bounds.shape or not torch.equal(saved.bounds, new.bounds):
        differ.insert(0, "bounds")
    elif saved.space != new.space:  # the same box of values, another scale or another kind
        differ.insert(0, "space")
    if differ:
        def value(study: Study, key: str) -> str:
            if key == "space":
                return show(None if study.space is None else study.space.to_json(), 200)
            return show(study.bounds.tolist() if key == "bounds" else study.settings[key], 40)

        values = "; ".join(f"{k}: {value(saved, k)} saved, {value(new, k)} given"
                           for k in differ)
        raise ValueError(f"minimize: checkpoint {path}: the saved study differs in {differ} "
                         f"({values}); pass the same settings (or none) to resume it, or use a "
                         f"new checkpoint path")


def _check_checkpoint(checkpoint: Any) -> Path | None:
    """The checkpoint path, refusing a directory or a path under a file."""
    if checkpoint is None:
        return None
    path = check_path("minimize", "checkpoint", checkpoint)
    if path.is_dir():
        raise ValueError(f"minimize: checkpoint {path} is a directory; pass a file path (e.g. "
                         f"{path / 'study.json'})")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"minimize: checkpoint {path} cannot be written: {parent} is a file")
    return path


def minimize(f: Callable[[Any], Any],
             bounds: Tensor | Sequence[Sequence[float]] | Space | Mapping, n_calls: int, *,
             callback: Callable[[Result], bool | None] | None = None,
             checkpoint: str | Path | None = None,
             catch: tuple[type[Exception], ...] = (), **settings) -> Result:
    """Minimize ``f`` over the box or search space ``bounds`` with ``n_calls`` evaluations.

    Args:
        f: takes a point ``(d,)`` (float64), or with a search space its ``{name: value}``
            dict, and returns its value, a real number; with ``n_constraints=k`` it returns
            ``(value, [c_1, ..., c_k])``, feasible where every :math:`c \\le 0`. A NaN or
            infinite value is a failed evaluation, recorded as :class:`Study` says (the
            surrogate sees the worst successful value there).
        bounds: the box ``(d, 2)``, or a :class:`~stochopt.bayesopt.space.Space` (or a dict
            of name -> ``Float`` / ``Int`` / ``Categorical``).
        n_calls: total evaluations, the initial design included.
        callback: called with the :class:`Result` (without a recommendation fit) after each
            batch; returning ``True`` stops.
        checkpoint: a JSON file written atomically after each batch; if it exists the study
            resumes from it (settings given here must match the saved ones) and, with the same
            seed and a deterministic ``f``, continues exactly as an uninterrupted run.
        catch: exception types that, raised by ``f``, record a failed evaluation instead of
            ending the run (as Optuna's ``optimize(catch=...)``); default none.
        **settings: :class:`Study` options (surrogate, acquisition, q, noise, n_initial,
            n_constraints, seed, raw_samples, restarts).

    Returns:
        :class:`Result` with the best observed and the recommended point.

    Raises:
        ValueError, TypeError: a bad argument, found before ``f`` is first called; or ``f``
            returned something other than one real number (the message names the point; the
            checkpoint keeps the batches before it).
        NotReadyError: every evaluation failed, so there is no best point.
        DamagedFileError: the checkpoint exists but cannot be read back.

    Example:
        >>> result = minimize(lambda x: float((x - 0.3).square().sum()), [[0.0, 1.0]], 6,
        ...                   n_initial=4)
        >>> result.X.shape, abs(result.x_best.item() - 0.3) < 0.2
        (torch.Size([6, 1]), True)

        With a search space ``f`` gets a dict:

        >>> from stochopt.bayesopt.space import Categorical, Float
        >>> space = {"lr": Float(1e-4, 1.0, log=True), "act": Categorical(["relu", "tanh"])}
        >>> result = minimize(lambda p: abs(math.log10(p["lr"]) + 2) + (p["act"] == "relu"),
        ...                   space, 6, n_initial=4, raw_samples=32, restarts=2)
        >>> sorted(result.params_best)
        ['act', 'lr']
    """
    if not callable(f):
        raise TypeError(f"minimize: f must be callable, got {show(f)}")
    n_calls = check_int("minimize", "n_calls", n_calls)
    if callback is not None and not callable(callback):
        raise TypeError(f"minimize: callback must be callable or None, got {show(callback)}")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(f"minimize: unknown settings {unknown}; the Study settings are "
                        f"{list(SETTINGS)}")
    catch = _check_catch(catch)
    path = _check_checkpoint(checkpoint)
    study = Study(bounds, **settings)
    if path is not None and path.exists():
        saved = Study.load(path)
        _check_resumable(saved, study, settings, path)
        study = saved
    k = study.settings["n_constraints"]
    while study.n < n_calls:
        X = study.ask()
        study.cancel(X[n_calls - study.n:])  # past the budget: never evaluated
        X = X[: n_calls - study.n]
        values = [_evaluate(f, x, k, study.space, catch) for x in X]
        study.tell(X, [v for v, _ in values], [c for _, c in values] if k else None)
        if path is not None:
            study.save(path)
        if callback is not None and callback(study.result(recommend=False)):
            break
    return study.result()


def _check_catch(catch: Any) -> tuple[type[Exception], ...]:
    """A tuple of exception classes (``Exception`` subclasses: ``KeyboardInterrupt`` and the
    like always end the run)."""
    if isinstance(catch, type):
        catch = (catch,)
    if not isinstance(catch, tuple) or not all(
            isinstance(c, type) and issubclass(c, Exception) for c in catch):
        raise TypeError(f"minimize: catch must be a tuple of exception classes (subclasses of "
                        f"Exception), got {show(catch)}")
    return catch
