"""The user's entry points: an ask/tell :class:`Study` that saves and resumes exactly, and
:func:`minimize` on top of it (the shape of scikit-optimize's ``gp_minimize``)."""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, check_seed, show
from stochopt._io import read_json, write_text_atomic
from stochopt.bayesopt._state import (
    FORMAT,
    RECOVER,
    SETTINGS,
    WHAT,
    check_path,
    check_seconds,
    check_structure,
    check_told,
    failure,
)
from stochopt.bayesopt._validate import NotReadyError, check_bounds
from stochopt.bayesopt.acquire import ACQUISITIONS, feasibility_score
from stochopt.bayesopt.context import Context, Surrogate
from stochopt.bayesopt.gp import GP
from stochopt.bayesopt.optimize import optimize_acquisition, sobol
from stochopt.bayesopt.surrogates import SURROGATES

__all__ = ["Result", "Study", "minimize"]


@dataclass
class Result:
    """What a study has found so far.

    Attributes:
        x_best, y_best: the best observed (feasible) point and its observation.
        x_recommended: the evaluated point with the smallest posterior mean (the right
            answer under noise; Frazier 2018, Alg. 1).
        X, y: every evaluation in order, ``(n, d)`` and ``(n,)``; ``constraints``: ``(n, k)``.
        fit_seconds, acquisition_seconds: per model-based iteration.
        n_initial: how many of the evaluations came from the Sobol design.
    """

    x_best: Tensor
    y_best: float
    x_recommended: Tensor
    X: Tensor
    y: Tensor
    constraints: Tensor
    fit_seconds: list[float] = field(default_factory=list)
    acquisition_seconds: list[float] = field(default_factory=list)
    n_initial: int = 0


class Study:
    """Bayesian optimization as ask/tell: ``ask()`` proposes a batch, ``tell(X, y)`` records
    its evaluations, which may run anywhere. Deterministic: every proposal is a function of
    the seed and the data so far, so a study saved and loaded continues exactly as one that
    never stopped.

    Args:
        bounds: the box, ``(d, 2)``.
        surrogate: a name in :data:`SURROGATES` (``"gp"`` default, ``"ibnn"``, ``"dkl"``,
            ``"ensemble"``, ``"hmc"``).
        acquisition: a name in :data:`ACQUISITIONS`; default ``"logei"``, or ``"qei"`` for
            ``q > 1``.
        q: points per batch. noise: known observation-noise variance, or ``None`` to infer.
        n_initial: Sobol design size (default ``max(5, 2d)``).
        n_constraints: constraints :math:`c_k(x) \\le 0`, modeled by independent GPs.
        seed: the study's seed, an integer in ``[0, 2**63 - 1]``. raw_samples, restarts: the
            acquisition optimizer's budget.

    Every argument is checked here, and every ``tell`` checks its whole input before it
    records anything: a call that raises leaves the study as it was. Observations must be
    finite: a NaN or infinite value is refused with the point named (failed evaluations are
    not supported yet).

    Example:
        >>> study = Study([[0.0, 1.0]], n_initial=3, seed=0)
        >>> for _ in range(4):
        ...     X = study.ask()
        ...     study.tell(X, (X[:, 0] - 0.3).square())
        >>> study.result().X.shape
        torch.Size([4, 1])
    """

    def __init__(self, bounds: Tensor | Sequence[Sequence[float]], *, surrogate: str = "gp",
                 acquisition: str | None = None, q: int = 1, noise: float | None = None,
                 n_initial: int | None = None, n_constraints: int = 0, seed: int = 0,
                 raw_samples: int = 512, restarts: int = 10) -> None:
        self.bounds = check_bounds("Study", bounds)
        d = self.bounds.shape[0]
        q = _count("q", q, 1)
        if acquisition is None:
            acquisition = "logei" if q == 1 else "qei"
        settings = {"surrogate": surrogate, "acquisition": acquisition, "q": q,
                    "noise": noise, "n_initial": max(5, 2 * d) if n_initial is None
                    else n_initial, "n_constraints": n_constraints, "seed": seed,
                    "raw_samples": raw_samples, "restarts": restarts}
        self.settings = _check_settings(settings)
        n_constraints = self.settings["n_constraints"]
        self.X = torch.empty(0, d, dtype=torch.float64)
        self.y = torch.empty(0, dtype=torch.float64)
        self.c = torch.empty(0, n_constraints, dtype=torch.float64)
        self.fit_seconds: list[float] = []
        self.acquisition_seconds: list[float] = []

    # ----------------------------------------------------------------- ask / tell
    @property
    def n(self) -> int:
        return len(self.y)

    def _generator(self, purpose: int) -> torch.Generator:
        """A generator that depends only on the seed, the data count and the purpose (the
        combination taken modulo 2**64, as ``manual_seed`` takes it)."""
        return torch.Generator().manual_seed((self.settings["seed"] * 1_000_003
                                              + self.n * 101 + purpose) % 2**64)

    def _to_original(self, U: Tensor) -> Tensor:
        return self.bounds[:, 0] + U * (self.bounds[:, 1] - self.bounds[:, 0])

    def ask(self) -> Tensor:
        """The next batch to evaluate, ``(q, d)`` (fewer while the Sobol design finishes).
        A function of the seed and the data told so far: asking again before ``tell``
        returns the same batch."""
        s = self.settings
        if self.n < s["n_initial"]:
            design = sobol(s["n_initial"], self.bounds.shape[0],
                           torch.Generator().manual_seed(s["seed"]))
            return self._to_original(design[self.n:self.n + s["q"]])
        start = time.perf_counter()
        ctx = self._context()
        fitted = time.perf_counter()
        U = self._propose(ctx)
        self.fit_seconds.append(fitted - start)
        self.acquisition_seconds.append(time.perf_counter() - fitted)
        return self._to_original(U)

    def _surrogate(self) -> Surrogate:
        return SURROGATES[self.settings["surrogate"]](self.settings["noise"])

    def _context(self) -> Context:
        constraint_models = [GP().fit(self.X, self.c[:, k], self.bounds, self._generator(2 + k))
                             for k in range(self.settings["n_constraints"])]
        feasible = (self.c <= 0).all(1) if self.settings["n_constraints"] else None
        return Context(self._surrogate().fit(self.X, self.y, self.bounds, self._generator(0)),
                       self.X, self.y, self.bounds, self._generator(1), constraint_models,
                       feasible)

    def _propose(self, ctx: Context) -> Tensor:
        s = self.settings
        acquisition = ACQUISITIONS[s["acquisition"]]
        if acquisition.propose is not None:
            return acquisition.propose(ctx)
        score = acquisition.build(ctx) if ctx.best is not None else None
        if ctx.constraint_models:
            score = feasibility_score(ctx, acquisition, score)
        if acquisition.batch:
            def unit_score(U: Tensor) -> Tensor:
                return score(ctx.to_original(U))
        else:
            def unit_score(U: Tensor) -> Tensor:
                return score(ctx.to_original(U[:, 0]))
        U, _ = optimize_acquisition(unit_score, self.bounds.shape[0], ctx.generator, q=s["q"],
                                    raw_samples=s["raw_samples"], restarts=s["restarts"])
        return U

    def tell(self, X: Tensor, y: Tensor | Sequence[float],
             constraints: Tensor | Sequence[Sequence[float]] | None = None) -> None:
        """Record evaluations: ``X`` ``(b, d)``, ``y`` ``(b,)``, and with constraints their
        values ``(b, k)`` (feasible where every value is <= 0).

        The points need not come from :meth:`ask` (evaluations made earlier can be told too),
        but they must lie in the box, and every value must be finite.

        Raises:
            ValueError: wrong shapes (nothing is reshaped), NaN or infinite values, a point
                outside the bounds; TypeError: values that are not real numbers. The study is
                unchanged when ``tell`` raises.
        """
        X, y, c = check_told("Study.tell", X, y, constraints, self.bounds,
                             self.settings["n_constraints"])
        self.X, self.y, self.c = torch.cat([self.X, X]), torch.cat([self.y, y]), \
            torch.cat([self.c, c])

    # ------------------------------------------------------------------- results
    def recommend(self) -> Tensor:
        """The evaluated (feasible) point whose posterior mean is smallest."""
        if self.n == 0:
            raise NotReadyError("Study.recommend: no evaluations yet; tell some first")
        feasible = (self.c <= 0).all(1) if self.settings["n_constraints"] else \
            torch.ones(self.n, dtype=torch.bool)
        if not feasible.any():
            feasible = torch.ones(self.n, dtype=torch.bool)
        if self.n < 2:
            return self.X[int(self.y.argmin())]
        model = self._surrogate().fit(self.X, self.y, self.bounds, self._generator(0))
        with torch.no_grad():
            mean = model.posterior(self.X[feasible]).mean
        return self.X[feasible][int(mean.argmin())]

    def result(self, recommend: bool = True) -> Result:
        """The study so far; ``recommend=False`` skips the model fit behind
        ``x_recommended`` (it is then the best observed point)."""
        if self.n == 0:
            raise NotReadyError("Study.result: no evaluations yet; tell some first")
        feasible = (self.c <= 0).all(1) if self.settings["n_constraints"] else None
        y = self.y if feasible is None or not feasible.any() else \
            torch.where(feasible, self.y, torch.full_like(self.y, math.inf))
        best = int(y.argmin())
        return Result(self.X[best], float(self.y[best]),
                      self.recommend() if recommend else self.X[best], self.X.clone(),
                      self.y.clone(), self.c.clone(), list(self.fit_seconds),
                      list(self.acquisition_seconds), min(self.settings["n_initial"], self.n))

    # ---------------------------------------------------------------- save / load
    def state_dict(self) -> dict:
        """The study as plain JSON-ready data (see :meth:`from_state_dict`)."""
        return {"format": FORMAT, "bounds": self.bounds.tolist(),
                "settings": dict(self.settings), "X": self.X.tolist(), "y": self.y.tolist(),
                "constraints": self.c.tolist(), "fit_seconds": list(self.fit_seconds),
                "acquisition_seconds": list(self.acquisition_seconds)}

    @classmethod
    def from_state_dict(cls, state: dict) -> Study:
        """The study saved by :meth:`state_dict`.

        Raises:
            ValueError: the state is not a saved study (an unknown format, a missing entry,
                settings a study refuses, evaluations that do not fit the settings, NaN
                values); TypeError: ``state`` is not a dict.
        """
        return cls._from_state(state, None)

    @classmethod
    def _from_state(cls, state: Any, path: Path | None) -> Study:
        check_structure(state, path)
        fail = failure(path)
        try:
            study = cls(state["bounds"], **state["settings"])
        except (TypeError, ValueError) as error:
            raise fail(f"its bounds or settings are refused ({error})") from None
        d, k, n = study.bounds.shape[0], study.settings["n_constraints"], len(state["y"])
        empty = {"X": (0, d), "constraints": (0, k)}
        data = {key: torch.empty(empty[key], dtype=torch.float64)
                if key in empty and n == 0 and not state[key] else state[key]
                for key in ("X", "y", "constraints")}
        try:
            X, y, c = check_told("the saved study", data["X"], data["y"],
                                 data["constraints"] if k else None, study.bounds, k)
        except (TypeError, ValueError) as error:
            raise fail(f"its evaluations are refused ({error})") from None
        if not k and any(row != [] for row in state["constraints"]):
            raise fail("it holds constraint values, but its settings have n_constraints=0")
        study.X, study.y, study.c = X, y, c
        study.fit_seconds = check_seconds(state["fit_seconds"], "fit_seconds", fail)
        study.acquisition_seconds = check_seconds(state["acquisition_seconds"],
                                                  "acquisition_seconds", fail)
        return study

    def save(self, path: str | Path) -> None:
        """Write the study as JSON atomically (floats round-trip exactly): a reader sees the
        previous file or the new one, never a partial one."""
        path = check_path("Study.save", "path", path)
        write_text_atomic(path, json.dumps(self.state_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Study:
        """The study saved at ``path``.

        Raises:
            FileNotFoundError: no file at ``path``.
            DamagedFileError: the file is truncated, not JSON, or not a saved study (it names
                the file, what is wrong and how to recover).
        """
        path = check_path("Study.load", "path", path)
        return cls._from_state(read_json(path, what=WHAT, recover=RECOVER), path)


#: the largest count setting: each sizes a tensor, so it must fit torch's int64 sizes with room
MAX_COUNT = 2**31 - 1


def _count(name: str, value: Any, low: int) -> int:
    """An integer setting in ``[low, MAX_COUNT]`` (booleans refused)."""
    try:
        return check_int("Study", name, value, low=low, high=MAX_COUNT)
    except (TypeError, ValueError):
        kind = ValueError if isinstance(value, int) and not isinstance(value, bool) \
            else TypeError
        raise kind(f"Study: {name} must be an integer in [{low}, 2**31 - 1], got "
                   f"{show(value)}") from None


def _check_settings(s: dict[str, Any]) -> dict[str, Any]:
    """The settings checked, as plain Python values (JSON-ready)."""
    for key in ("surrogate", "acquisition"):
        registry = SURROGATES if key == "surrogate" else ACQUISITIONS
        if not isinstance(s[key], str) or s[key] not in registry:
            raise ValueError(f"Study: {key} must be one of {sorted(registry)}, got "
                             f"{show(s[key])}")
    for key, low in (("n_initial", 1), ("n_constraints", 0), ("raw_samples", 1),
                     ("restarts", 1)):
        s[key] = _count(key, s[key], low)
    s["seed"] = check_seed("Study", "seed", s["seed"])
    if s["noise"] is not None:
        try:
            s["noise"] = check_real("Study", "noise", s["noise"], low=0.0, low_open=False)
        except (TypeError, ValueError) as error:
            raise type(error)(f"Study: noise must be None (inferred) or a finite variance "
                              f">= 0, got {show(s['noise'])}") from None
    acquisition = ACQUISITIONS[s["acquisition"]]
    if s["q"] > 1 and not acquisition.batch:
        batch = sorted(k for k, v in ACQUISITIONS.items() if v.batch)
        raise ValueError(f"Study: q={s['q']} needs a batch acquisition {batch}, got "
                         f"{s['acquisition']!r}")
    if s["n_constraints"] and (s["q"] > 1 or acquisition.propose):
        raise ValueError(f"Study: constraints work with single-point score acquisitions, not "
                         f"acquisition={s['acquisition']!r} with q={s['q']}")
    return s


def _objective(value: Any, x: Tensor) -> float:
    """``f``'s value at ``x`` as a finite float: a real number, or a numpy or torch scalar
    (one element)."""
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
    if not math.isfinite(value):
        raise ValueError(f"minimize: f returned {float(value)!r} {where}; values must be finite "
                         f"(failed evaluations are not supported yet: return a large finite "
                         f"penalty instead)")
    return float(value)


def _evaluate(f: Callable, x: Tensor, n_constraints: int) -> tuple[float, list[float]]:
    value = f(x.clone())  # f may change its argument; the study keeps its own copy
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
    if not all(math.isfinite(c) for c in values):
        raise ValueError(f"minimize: f returned constraint values {values} {where}; they must "
                         f"be finite")
    return _objective(value, x), values


def _check_resumable(saved: Study, new: Study, given: dict, path: Path) -> None:
    """Refuse to resume a checkpoint whose box or explicitly given settings differ."""
    differ = [k for k in given if saved.settings.get(k) != new.settings.get(k)]
    if saved.bounds.shape != new.bounds.shape or not torch.equal(saved.bounds, new.bounds):
        differ.insert(0, "bounds")
    if differ:
        def value(study: Study, key: str) -> str:
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


def minimize(f: Callable[[Tensor], float], bounds: Tensor | Sequence[Sequence[float]],
             n_calls: int, *, callback: Callable[[Result], bool | None] | None = None,
             checkpoint: str | Path | None = None, **settings) -> Result:
    """Minimize ``f`` over the box ``bounds`` with ``n_calls`` evaluations.

    Args:
        f: takes a point ``(d,)`` (float64) and returns its value, a finite real number;
            with ``n_constraints=k`` it returns ``(value, [c_1, ..., c_k])``, feasible where
            every :math:`c \\le 0`.
        bounds: ``(d, 2)``.
        n_calls: total evaluations, the initial design included.
        callback: called with the :class:`Result` (without a recommendation fit) after each
            batch; returning ``True`` stops.
        checkpoint: a JSON file written atomically after each batch; if it exists the study
            resumes from it (settings given here must match the saved ones) and, with the same
            seed and a deterministic ``f``, continues exactly as an uninterrupted run.
        **settings: :class:`Study` options (surrogate, acquisition, q, noise, n_initial,
            n_constraints, seed, raw_samples, restarts).

    Returns:
        :class:`Result` with the best observed and the recommended point.

    Raises:
        ValueError, TypeError: a bad argument, found before ``f`` is first called; or ``f``
            returned something other than one finite real number (the message names the
            point; the checkpoint keeps the batches before it). NaN and infinite values are
            refused: failed evaluations are not supported yet.
        DamagedFileError: the checkpoint exists but cannot be read back.

    Example:
        >>> result = minimize(lambda x: float((x - 0.3).square().sum()), [[0.0, 1.0]], 6,
        ...                   n_initial=4)
        >>> result.X.shape, abs(result.x_best.item() - 0.3) < 0.2
        (torch.Size([6, 1]), True)
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
    path = _check_checkpoint(checkpoint)
    study = Study(bounds, **settings)
    if path is not None and path.exists():
        saved = Study.load(path)
        _check_resumable(saved, study, settings, path)
        study = saved
    k = study.settings["n_constraints"]
    while study.n < n_calls:
        X = study.ask()[: n_calls - study.n]
        values = [_evaluate(f, x, k) for x in X]
        study.tell(X, [v for v, _ in values], [c for _, c in values] if k else None)
        if path is not None:
            study.save(path)
        if callback is not None and callback(study.result(recommend=False)):
            break
    return study.result()
