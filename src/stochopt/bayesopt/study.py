"""The user's entry points: an ask/tell :class:`Study` that saves and resumes exactly, and
:func:`minimize` on top of it (the shape of scikit-optimize's ``gp_minimize``)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from stochopt._io import write_text_atomic
from stochopt.bayesopt.acquire import ACQUISITIONS, feasibility_score
from stochopt.bayesopt.context import Context, Surrogate
from stochopt.bayesopt.gp import GP
from stochopt.bayesopt.optimize import optimize_acquisition, sobol
from stochopt.bayesopt.surrogates import SURROGATES

__all__ = ["Result", "Study", "minimize"]

_FORMAT = 1


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


def _check_bounds(bounds: Tensor | Sequence[Sequence[float]]) -> Tensor:
    bounds = torch.as_tensor(bounds, dtype=torch.float64)
    if bounds.ndim != 2 or bounds.shape[1] != 2 or bounds.shape[0] < 1:
        raise ValueError(f"bounds must have shape (d, 2) with rows (lower, upper), got "
                         f"{tuple(bounds.shape)}")
    if not (bounds[:, 0] < bounds[:, 1]).all() or not torch.isfinite(bounds).all():
        raise ValueError(f"bounds must be finite with lower < upper in every row, got "
                         f"{bounds.tolist()}")
    return bounds


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
        seed: the study's seed. raw_samples, restarts: the acquisition optimizer's budget.

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
        self.bounds = _check_bounds(bounds)
        d = self.bounds.shape[0]
        acquisition = acquisition or ("logei" if q == 1 else "qei")
        self.settings = {"surrogate": surrogate, "acquisition": acquisition, "q": q,
                         "noise": noise, "n_initial": max(5, 2 * d) if n_initial is None
                         else n_initial, "n_constraints": n_constraints, "seed": seed,
                         "raw_samples": raw_samples, "restarts": restarts}
        self._validate()
        self.X = torch.empty(0, d, dtype=torch.float64)
        self.y = torch.empty(0, dtype=torch.float64)
        self.c = torch.empty(0, n_constraints, dtype=torch.float64)
        self.fit_seconds: list[float] = []
        self.acquisition_seconds: list[float] = []

    def _validate(self) -> None:
        s = self.settings
        if s["surrogate"] not in SURROGATES:
            raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}, got "
                             f"{s['surrogate']!r}")
        if s["acquisition"] not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {sorted(ACQUISITIONS)}, got "
                             f"{s['acquisition']!r}")
        if not isinstance(s["q"], int) or s["q"] < 1:
            raise ValueError(f"q must be an integer >= 1, got {s['q']!r}")
        if s["q"] > 1 and not ACQUISITIONS[s["acquisition"]].batch:
            batch = sorted(k for k, v in ACQUISITIONS.items() if v.batch)
            raise ValueError(f"q={s['q']} needs a batch acquisition {batch}, got "
                             f"{s['acquisition']!r}")
        if s["n_constraints"] and (s["q"] > 1 or ACQUISITIONS[s["acquisition"]].propose):
            raise ValueError(f"constraints work with single-point score acquisitions, not "
                             f"acquisition={s['acquisition']!r} with q={s['q']}")
        for key, low in (("n_initial", 1), ("n_constraints", 0), ("raw_samples", 1),
                         ("restarts", 1)):
            if not isinstance(s[key], int) or s[key] < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {s[key]!r}")
        if s["noise"] is not None and not (s["noise"] >= 0 and math.isfinite(s["noise"])):
            raise ValueError(f"noise must be None (inferred) or a variance >= 0, got "
                             f"{s['noise']!r}")

    # ----------------------------------------------------------------- ask / tell
    @property
    def n(self) -> int:
        return len(self.y)

    def _generator(self, purpose: int) -> torch.Generator:
        """A generator that depends only on the seed, the data count and the purpose."""
        return torch.Generator().manual_seed(self.settings["seed"] * 1_000_003
                                             + self.n * 101 + purpose)

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
        values ``(b, k)`` (feasible where every value is <= 0)."""
        X = torch.as_tensor(X, dtype=torch.float64).reshape(-1, self.bounds.shape[0])
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        k = self.settings["n_constraints"]
        c = (torch.empty(len(y), 0, dtype=torch.float64) if constraints is None and k == 0
             else torch.as_tensor(constraints, dtype=torch.float64).reshape(len(y), -1))
        if len(X) != len(y) or c.shape[1] != k:
            raise ValueError(f"tell: need X (b, d), y (b,), constraints (b, {k}); got "
                             f"{tuple(X.shape)}, {tuple(y.shape)}, {tuple(c.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError(f"tell: observations must be finite, got {y.tolist()}")
        self.X, self.y, self.c = torch.cat([self.X, X]), torch.cat([self.y, y]), \
            torch.cat([self.c, c])

    # ------------------------------------------------------------------- results
    def recommend(self) -> Tensor:
        """The evaluated (feasible) point whose posterior mean is smallest."""
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
            raise RuntimeError("Study.result: no evaluations yet")
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
        return {"format": _FORMAT, "bounds": self.bounds.tolist(), "settings": self.settings,
                "X": self.X.tolist(), "y": self.y.tolist(), "constraints": self.c.tolist(),
                "fit_seconds": self.fit_seconds,
                "acquisition_seconds": self.acquisition_seconds}

    @classmethod
    def from_state_dict(cls, state: dict) -> Study:
        if state.get("format") != _FORMAT:
            raise ValueError(f"Study: unknown checkpoint format {state.get('format')!r}")
        study = cls(state["bounds"], **state["settings"])
        d, k = study.bounds.shape[0], study.settings["n_constraints"]
        study.X = torch.tensor(state["X"], dtype=torch.float64).reshape(-1, d)
        study.y = torch.tensor(state["y"], dtype=torch.float64).reshape(-1)
        study.c = torch.tensor(state["constraints"], dtype=torch.float64).reshape(len(study.y), k)
        study.fit_seconds = list(state["fit_seconds"])
        study.acquisition_seconds = list(state["acquisition_seconds"])
        return study

    def save(self, path: str | Path) -> None:
        """Write the study as JSON atomically (floats round-trip exactly)."""
        write_text_atomic(Path(path), json.dumps(self.state_dict()))

    @classmethod
    def load(cls, path: str | Path) -> Study:
        return cls.from_state_dict(json.loads(Path(path).read_text()))


def _evaluate(f: Callable, x: Tensor, n_constraints: int) -> tuple[float, list[float]]:
    value = f(x)
    if n_constraints:
        value, constraints = value
        return float(value), [float(c) for c in constraints]
    return float(value), []


def _check_resumable(saved: Study, new: Study, given: dict) -> None:
    """Refuse to resume a checkpoint whose box or explicitly given settings differ."""
    differ = [k for k in given if saved.settings.get(k) != new.settings.get(k)]
    if not torch.equal(saved.bounds, new.bounds):
        differ.insert(0, "bounds")
    if differ:
        raise ValueError(f"checkpoint: the saved study differs in {differ}; pass the same "
                         f"settings (or none) to resume it, or use a new checkpoint path")


def minimize(f: Callable[[Tensor], float], bounds: Tensor | Sequence[Sequence[float]],
             n_calls: int, *, callback: Callable[[Result], bool | None] | None = None,
             checkpoint: str | Path | None = None, **settings) -> Result:
    """Minimize ``f`` over the box ``bounds`` with ``n_calls`` evaluations.

    Args:
        f: takes a point ``(d,)`` (float64) and returns its value; with ``n_constraints=k``
            it returns ``(value, [c_1, ..., c_k])``, feasible where every :math:`c \\le 0`.
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

    Example:
        >>> result = minimize(lambda x: float((x - 0.3).square().sum()), [[0.0, 1.0]], 6,
        ...                   n_initial=4)
        >>> result.X.shape, abs(result.x_best.item() - 0.3) < 0.2
        (torch.Size([6, 1]), True)
    """
    if not isinstance(n_calls, int) or n_calls < 1:
        raise ValueError(f"n_calls must be an integer >= 1, got {n_calls!r}")
    path = Path(checkpoint) if checkpoint is not None else None
    study = Study(bounds, **settings)
    if path is not None and path.exists():
        saved = Study.load(path)
        _check_resumable(saved, study, settings)
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
