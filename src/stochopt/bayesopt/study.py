"""The user's ask/tell :class:`Study`: it saves and resumes exactly, lets several workers ask
before any tells (pending points), records failed evaluations, and searches a box or a
:class:`~stochopt.bayesopt.space.Space` of real, log-scale, integer and categorical
parameters. :func:`~stochopt.bayesopt.minimize` runs the loop on top of it."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
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
    WHAT,
    check_path,
    check_seconds,
    check_structure,
    check_told,
    failure,
    nan_to_nulls,
    nulls_to_nan,
)
from stochopt.bayesopt._validate import NotReadyError, check_bounds, real_tensor
from stochopt.bayesopt.acquire import ACQUISITIONS, feasibility_score
from stochopt.bayesopt.context import Context, Surrogate
from stochopt.bayesopt.fantasy import Believer
from stochopt.bayesopt.gp import GP
from stochopt.bayesopt.optimize import optimize_acquisition, sobol
from stochopt.bayesopt.space import Float, Space
from stochopt.bayesopt.surrogates import SURROGATES

__all__ = ["Result", "Study"]


@dataclass
class Result:
    """What a study has found so far.

    Attributes:
        x_best, y_best: the best observed (feasible) point and its observation.
        x_recommended: the evaluated point with the smallest posterior mean (the right
            answer under noise; Frazier 2018, Alg. 1).
        X, y: every evaluation in order, ``(n, d)`` and ``(n,)``; a failed evaluation's value
            is NaN. ``constraints``: ``(n, k)`` (NaN rows for failures).
        fit_seconds, acquisition_seconds: per model-based iteration.
        n_initial: how many of the evaluations came from the Sobol design.
        params_best, params_recommended: with a search space, ``x_best`` and
            ``x_recommended`` as ``{name: value}`` dicts; ``None`` for a box.
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
    params_best: dict[str, Any] | None = None
    params_recommended: dict[str, Any] | None = None

    @property
    def failed(self) -> Tensor:
        """``(n,)``: which evaluations failed."""
        return self.y.isnan()


class Study:
    """Bayesian optimization as ask/tell: ``ask()`` proposes a batch, ``tell(X, y)`` records
    its evaluations, which may run anywhere. Deterministic: every proposal is a function of
    the seed, the data and the pending points, so a study saved and loaded continues exactly
    as one that never stopped.

    **Search space.** ``bounds`` is a box ``(d, 2)``, or a :class:`~stochopt.bayesopt.space.Space`
    (or a dict of name -> ``Float`` / ``Int`` / ``Categorical``). With a space, points are
    *values* ``(q, d)``: one column per parameter, a categorical parameter's column holding
    the index of its choice; :meth:`params` turns them into dicts, and :meth:`tell` takes
    either form. The surrogate works on the space's unit-cube encoding (log scales, one-hot
    choices) and sees integers and choices rounded (Garrido-Merchán & Hernández-Lobato 2020).

    **Pending points.** Each batch ``ask`` returns is pending until told (or
    :meth:`cancel`-ed). The next ``ask`` conditions the surrogate on the pending points as if
    they had been observed, without noise, at the surrogate's posterior mean (the *kriging
    believer* of Ginsbourger et al. 2010; the fantasies of Snoek et al. 2012): the GP keeps
    its hyperparameters and mean, and its variance at the pending points drops to zero, so
    the acquisition there drops and concurrent workers get different points; the fantasized
    values also enter the incumbent. Other surrogates (the neural ones) get the same update
    on the Gaussian summary of their posterior (:class:`~stochopt.bayesopt.fantasy.Believer`).
    During the Sobol design, pending points advance the design instead.

    **Failed evaluations.** A value (or constraint value) that is NaN or infinite records a
    failed evaluation: it stays in :attr:`X` with value NaN, is never the best or the
    recommended point, and is imputed for the surrogate with the worst (largest) successful
    value so far, the pessimistic lie of Ginsbourger et al.'s constant liar ("CL-max"), so the
    next proposals move away from it. Constraint models leave failures out. Until one
    evaluation succeeds, ``ask`` keeps taking Sobol points.

    Args:
        bounds: the box ``(d, 2)``, or a search space.
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
    records anything: a call that raises leaves the study as it was.

    Example:
        >>> study = Study([[0.0, 1.0]], n_initial=3, seed=0)
        >>> for _ in range(4):
        ...     X = study.ask()
        ...     study.tell(X, (X[:, 0] - 0.3).square())
        >>> study.result().X.shape
        torch.Size([4, 1])

    References:
        Ginsbourger, Le Riche & Carraro, "Kriging Is Well-Suited to Parallelize
        Optimization", Computational Intelligence in Expensive Optimization Problems,
        Springer 2010; Snoek, Larochelle & Adams, "Practical Bayesian Optimization of Machine
        Learning Algorithms", NeurIPS 2012, arXiv:1206.2944; Garrido-Merchán &
        Hernández-Lobato, Neurocomputing 380, 2020, arXiv:1805.03463.
    """

    def __init__(self, bounds: Tensor | Sequence[Sequence[float]] | Space | Mapping, *,
                 surrogate: str = "gp", acquisition: str | None = None, q: int = 1,
                 noise: float | None = None, n_initial: int | None = None,
                 n_constraints: int = 0, seed: int = 0, raw_samples: int = 512,
                 restarts: int = 10) -> None:
        if isinstance(bounds, Space | Mapping):
            self.space: Space | None = Space.of(bounds)
            self.bounds = self.space.bounds
        else:
            self.space = None
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
        self.pending = torch.empty(0, d, dtype=torch.float64)
        self.fit_seconds: list[float] = []
        self.acquisition_seconds: list[float] = []

    # ----------------------------------------------------------------- ask / tell
    @property
    def n(self) -> int:
        """Evaluations told, failed ones included."""
        return len(self.y)

    @property
    def n_failed(self) -> int:
        return int(self.y.isnan().sum())

    def _generator(self, purpose: int) -> torch.Generator:
        """A generator that depends only on the seed, the data count and the purpose (the
        combination taken modulo 2**64, as ``manual_seed`` takes it)."""
        return torch.Generator().manual_seed((self.settings["seed"] * 1_000_003
                                              + self.n * 101 + purpose) % 2**64)

    def _to_values(self, U: Tensor) -> Tensor:
        """Unit-cube points (the acquisition optimizer's) as the study's points."""
        if self.space is not None:
            return self.space.from_unit(U)
        return self.bounds[:, 0] + U * (self.bounds[:, 1] - self.bounds[:, 0])

    def _model_inputs(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Points as the surrogate sees them, with the surrogate's box: the original units
        and the box, or a space's unit-cube encoding and the unit box."""
        if self.space is None:
            return X, self.bounds
        unit = torch.tensor([[0.0, 1.0]] * self.space.width, dtype=torch.float64)
        return self.space.to_unit(X), unit

    def ask(self) -> Tensor:
        """The next batch to evaluate, ``(q, d)`` (fewer while the Sobol design finishes),
        which becomes pending until told: asking again before ``tell`` gives other points.
        A function of the seed, the data told so far and the pending points."""
        s = self.settings
        index = self.n + len(self.pending)
        if index < s["n_initial"] or not (~self.y.isnan()).any():
            end = min(index + s["q"], s["n_initial"]) if index < s["n_initial"] else \
                index + s["q"]
            design = sobol(max(s["n_initial"], end), self.bounds.shape[0] if self.space is None
                           else self.space.width, torch.Generator().manual_seed(s["seed"]))
            X = self._to_values(design[index:end])
        else:
            start = time.perf_counter()
            ctx = self._context()
            fitted = time.perf_counter()
            X = self._to_values(self._propose(ctx))
            self.fit_seconds = [*self.fit_seconds, fitted - start]
            self.acquisition_seconds = [*self.acquisition_seconds,
                                        time.perf_counter() - fitted]
        self.pending = torch.cat([self.pending, X])
        return X.clone()

    def params(self, X: Tensor) -> list[dict[str, Any]]:
        """Points ``(b, d)`` as ``{name: value}`` dicts (``x0, x1, ...`` for a box)."""
        X = real_tensor("Study.params", "X", X).detach().to(torch.float64)
        if X.ndim != 2 or X.shape[1] != self.bounds.shape[0]:
            raise ValueError(f"Study.params: X must have shape (b, {self.bounds.shape[0]}), got "
                             f"{tuple(X.shape)}")
        if self.space is None:
            return [{f"x{j}": v for j, v in enumerate(row)} for row in X.tolist()]
        return self.space.params(X)

    def _surrogate(self) -> Surrogate:
        return SURROGATES[self.settings["surrogate"]](self.settings["noise"])

    def _training(self) -> tuple[Tensor, Tensor, Tensor]:
        """The surrogate's data: inputs, values with failures imputed by the worst
        successful value, and the box."""
        failed = self.y.isnan()
        worst = self.y[~failed].max()
        X, box = self._model_inputs(self.X)
        return X, torch.where(failed, worst, self.y), box

    def _context(self) -> Context:
        X, y, box = self._training()
        ok = ~self.y.isnan()
        constraint_models = [GP().fit(X[ok], self.c[ok, k], box, self._generator(2 + k))
                             for k in range(self.settings["n_constraints"])]
        feasible = (ok & (self.c <= 0).all(1)) if self.settings["n_constraints"] else ok
        model = self._surrogate().fit(X, y, box, self._generator(0))
        if len(self.pending):
            P, _ = self._model_inputs(self.pending)
            with torch.no_grad():
                mean = model.posterior(P).mean
                believed = [m.posterior(P).mean for m in constraint_models]
            model = model.fantasize(P) if isinstance(model, GP) else Believer(model, P)
            constraint_models = [m.fantasize(P) for m in constraint_models]
            fine = torch.stack(believed, 1).le(0).all(1) if believed else \
                torch.ones(len(P), dtype=torch.bool)
            X, y, feasible = torch.cat([X, P]), torch.cat([y, mean]), torch.cat([feasible, fine])
        return Context(model, X, y, box, self._generator(1), constraint_models, feasible)

    def _propose(self, ctx: Context) -> Tensor:
        s = self.settings
        acquisition = ACQUISITIONS[s["acquisition"]]
        if acquisition.propose is not None:
            return acquisition.propose(ctx)
        score = acquisition.build(ctx) if ctx.best is not None else None
        if ctx.constraint_models:
            score = feasibility_score(ctx, acquisition, score)
        snap = self.space.round_unit if self.space is not None else lambda U: U
        if acquisition.batch:
            def unit_score(U: Tensor) -> Tensor:
                return score(ctx.to_original(snap(U)))
        else:
            def unit_score(U: Tensor) -> Tensor:
                return score(ctx.to_original(snap(U[:, 0])))
        d = self.bounds.shape[0] if self.space is None else self.space.width
        U, _ = optimize_acquisition(unit_score, d, ctx.generator, q=s["q"],
                                    raw_samples=s["raw_samples"], restarts=s["restarts"])
        return U

    def _points(self, owner: str, X: Any) -> Any:
        """``X`` as given, or a list of ``{name: value}`` dicts as values (with a space)."""
        if self.space is not None and isinstance(X, Sequence) and X and \
                all(isinstance(row, Mapping) for row in X):
            return self.space.values(owner, X)
        return X

    def tell(self, X: Tensor | Sequence[Mapping[str, Any]], y: Tensor | Sequence[float],
             constraints: Tensor | Sequence[Sequence[float]] | None = None) -> None:
        """Record evaluations: ``X`` ``(b, d)`` (or, with a search space, a list of
        ``{name: value}`` dicts), ``y`` ``(b,)``, and with constraints their values
        ``(b, k)`` (feasible where every value is <= 0).

        A value or constraint value that is NaN or infinite records a failed evaluation
        (see the class notes). Each told point clears the pending point it matches (equal up
        to float32 rounding). The points need not come from :meth:`ask` (evaluations made
        earlier can be told too), but they must lie in the box; with a space, integer and
        categorical values must be integers (choice indices).

        Raises:
            ValueError: wrong shapes (nothing is reshaped), NaN or infinite points, a point
                outside the bounds; TypeError: values that are not real numbers. The study is
                unchanged when ``tell`` raises.
        """
        X = self._points("Study.tell", X)
        X, y, c = check_told("Study.tell", X, y, constraints, self.bounds,
                             self.settings["n_constraints"])
        if self.space is not None:
            self.space.check_values("Study.tell", X)
        pending = _without(self.pending, X, self.bounds, self.space)
        self.X, self.y, self.c = torch.cat([self.X, X]), torch.cat([self.y, y]), \
            torch.cat([self.c, c])
        self.pending = pending

    def add_pending(self, X: Tensor | Sequence[Mapping[str, Any]]) -> None:
        """Mark points ``(b, d)`` that are being evaluated elsewhere (asked from another
        copy of the study, or chosen by hand) as pending, as if ``ask`` had returned them.

        Raises:
            ValueError, TypeError: as :meth:`tell` for the points (nothing changes).
        """
        X = real_tensor("Study.add_pending", "X", self._points("Study.add_pending", X))
        X, _, _ = check_told("Study.add_pending", X, torch.zeros(X.shape[:1]), None,
                             self.bounds, 0)
        if self.space is not None:
            self.space.check_values("Study.add_pending", X)
        self.pending = torch.cat([self.pending, X])

    def cancel(self, X: Tensor | Sequence[Mapping[str, Any]] | None = None) -> None:
        """Forget pending points that will never be told (a worker that died): those
        matching the rows of ``X``, or all of them when ``X`` is ``None``."""
        if X is None:
            self.pending = self.pending[:0]
            return
        X = real_tensor("Study.cancel", "X", self._points("Study.cancel", X)).to(torch.float64)
        if X.ndim != 2 or X.shape[1] != self.bounds.shape[0]:
            raise ValueError(f"Study.cancel: X must have shape (b, {self.bounds.shape[0]}), got "
                             f"{tuple(X.shape)}")
        self.pending = _without(self.pending, X, self.bounds, self.space)

    # ------------------------------------------------------------------- results
    def _best_candidates(self) -> Tensor:
        """Successful evaluations, feasible ones if there are any."""
        ok = ~self.y.isnan()
        if not ok.any():
            raise NotReadyError(f"Study: all {self.n} evaluations failed (NaN or infinite "
                                f"values); there is no best point yet")
        if self.settings["n_constraints"]:
            feasible = ok & (self.c <= 0).all(1)
            if feasible.any():
                return feasible
        return ok

    def recommend(self) -> Tensor:
        """The evaluated (feasible, successful) point whose posterior mean is smallest."""
        if self.n == 0:
            raise NotReadyError("Study.recommend: no evaluations yet; tell some first")
        candidates = self._best_candidates()
        if self.n < 2:
            return self.X[0].clone()
        X, y, box = self._training()
        model = self._surrogate().fit(X, y, box, self._generator(0))
        with torch.no_grad():
            mean = model.posterior(X[candidates]).mean
        return self.X[candidates][int(mean.argmin())].clone()

    def result(self, recommend: bool = True) -> Result:
        """The study so far; ``recommend=False`` skips the model fit behind
        ``x_recommended`` (it is then the best observed point).

        Raises:
            NotReadyError: no evaluations yet, or all of them failed.
        """
        if self.n == 0:
            raise NotReadyError("Study.result: no evaluations yet; tell some first")
        candidates = self._best_candidates()
        best = int(torch.where(candidates, self.y, math.inf).argmin())
        recommended = self.recommend() if recommend else self.X[best]
        named = (None, None) if self.space is None else \
            tuple(self.space.params(torch.stack([self.X[best], recommended])))
        return Result(self.X[best].clone(), float(self.y[best]), recommended, self.X.clone(),
                      self.y.clone(), self.c.clone(), list(self.fit_seconds),
                      list(self.acquisition_seconds), min(self.settings["n_initial"], self.n),
                      *named)

    # ---------------------------------------------------------------- save / load
    def state_dict(self) -> dict:
        """The study as plain JSON-ready data (see :meth:`from_state_dict`); failed values
        are ``None``."""
        return {"format": FORMAT, "bounds": self.bounds.tolist(),
                "space": None if self.space is None else self.space.to_json(),
                "settings": dict(self.settings), "X": self.X.tolist(),
                "y": nan_to_nulls(self.y), "constraints": nan_to_nulls(self.c),
                "pending": self.pending.tolist(), "fit_seconds": list(self.fit_seconds),
                "acquisition_seconds": list(self.acquisition_seconds)}

    @classmethod
    def from_state_dict(cls, state: dict) -> Study:
        """The study saved by :meth:`state_dict`.

        Raises:
            ValueError: the state is not a saved study (an unknown format, a missing entry,
                settings a study refuses, evaluations that do not fit the settings, NaN
                points); TypeError: ``state`` is not a dict.
        """
        return cls._from_state(state, None)

    @classmethod
    def _from_state(cls, state: Any, path: Path | None) -> Study:
        check_structure(state, path)
        fail = failure(path)
        try:
            space = state.get("space")
            study = cls(Space.from_json(space) if space is not None else state["bounds"],
                        **state["settings"])
        except (TypeError, ValueError) as error:
            raise fail(f"its bounds, space or settings are refused ({error})") from None
        if space is not None and state["bounds"] != study.bounds.tolist():
            raise fail("its bounds do not match its search space")
        d, k = study.bounds.shape[0], study.settings["n_constraints"]

        def rows(key: str, width: int) -> Any:  # an empty list is (0, width)
            values = state.get(key, [])
            return nulls_to_nan(values) if values else torch.empty(0, width,
                                                                  dtype=torch.float64)

        data = {"X": rows("X", d), "y": nulls_to_nan(state["y"]),
                "constraints": rows("constraints", k), "pending": rows("pending", d)}
        try:
            X, y, c = check_told("the saved study", data["X"], data["y"],
                                 data["constraints"] if k else None, study.bounds, k)
            pending = data["pending"]
            if len(pending):
                pending, _, _ = check_told("the saved study's pending points", pending,
                                           torch.zeros(len(pending)), None, study.bounds, 0)
            if study.space is not None:
                study.space.check_values("the saved study", X)
                study.space.check_values("the saved study's pending points", pending)
        except (TypeError, ValueError) as error:
            raise fail(f"its evaluations are refused ({error})") from None
        if not k and any(row != [] for row in state["constraints"]):
            raise fail("it holds constraint values, but its settings have n_constraints=0")
        study.X, study.y, study.c = X, y, c
        study.pending = torch.as_tensor(pending, dtype=torch.float64).reshape(-1, d)
        study.fit_seconds = check_seconds(state["fit_seconds"], "fit_seconds", fail)
        study.acquisition_seconds = check_seconds(state["acquisition_seconds"],
                                                  "acquisition_seconds", fail)
        return study

    def save(self, path: str | Path) -> None:
        """Write the study as JSON atomically (floats round-trip exactly): a reader sees the
        previous file or the new one, never a partial one."""
        path = check_path("Study.save", "path", path)
        write_text_atomic(path, json.dumps(self.state_dict(), allow_nan=False))

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


def _without(pending: Tensor, X: Tensor, bounds: Tensor, space: Space | None) -> Tensor:
    """``pending`` less one matching row per row of ``X`` (equal up to float32 rounding:
    1e-6 of the box's width plus 1e-7 of the value; for a log-scale ``Float``, 1e-6 of the
    width of its logarithm's range, relative to the value, since a width-based tolerance
    would merge every value much smaller than the range)."""
    keep = torch.ones(len(pending), dtype=torch.bool)
    width = (bounds[:, 1] - bounds[:, 0]).clone()
    log = torch.zeros(len(width), dtype=torch.bool)
    if space is not None:
        for j, dim in enumerate(space.dimensions.values()):
            if isinstance(dim, Float) and dim.log:
                log[j] = True
                width[j] = math.log(dim.high / dim.low)
    for x in X:
        scale = torch.where(log, width * x.abs(), width)  # (d,)
        close = ((pending - x).abs() <= 1e-6 * scale + 1e-7 * x.abs()).all(1) & keep
        if close.any():
            keep[int(close.nonzero()[0])] = False
    return pending[keep]


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


