"""An Optuna sampler built on :mod:`stochopt.bayesopt`: the GP (or a neural surrogate) with
log-EI, Frazier's noisy EI or the knowledge gradient, under Optuna's storage, pruning,
dashboard and distributed workers.

:class:`StochoptSampler` samples the *relative* search space (the parameters every completed
trial shares, as Optuna's ``GPSampler`` does) jointly: at each trial it builds a
:class:`~stochopt.bayesopt.Study` from the study's trials and asks it for one point.

* **Distributions.** ``FloatDistribution`` maps to ``Float`` (``log`` kept); with a ``step``
  and ``IntDistribution`` with ``step > 1``, to an ``Int`` over the grid's index;
  ``IntDistribution`` to ``Int`` (``log`` kept); ``CategoricalDistribution`` to a
  ``Categorical`` over its choices' indices. Single-valued distributions are left to
  independent sampling.
* **Running trials are pending points**: every other ``RUNNING`` trial that has suggested
  all the relative parameters is added with :meth:`Study.add_pending`, so the GP believes its
  posterior mean there (kriging believer) and concurrent workers get different points.
* **Failed and pruned trials** (``FAIL``, ``PRUNED``) are failed evaluations: the surrogate
  sees the worst completed value there (Optuna's ``GPSampler`` ignores them; TPE uses a
  pruned trial's last intermediate value). An infinite value is a failure too.
* **Startup and other parameters**: until ``n_startup_trials`` trials complete, and for
  parameters outside the relative space (dynamic search spaces), values come from Optuna's
  ``RandomSampler``.
* **Seeds**: each trial's randomness is seeded from ``seed`` and the trial number, which the
  storage makes unique across workers, so workers given the same seed still differ.

Maximization is handled by negating the values. Multi-objective studies are refused.

Example::

    import optuna
    from stochopt.integrations.optuna import StochoptSampler

    study = optuna.create_study(sampler=StochoptSampler(acquisition="noisy_ei", seed=0),
                                storage="sqlite:///tuning.db", study_name="mlp",
                                load_if_exists=True)
    study.optimize(objective, n_trials=50)

References:
    Akiba, Sano, Yanase, Ohta & Koyama, "Optuna: A Next-generation Hyperparameter
    Optimization Framework", KDD 2019, arXiv:1907.10902; Ginsbourger, Le Riche & Carraro,
    "Kriging Is Well-Suited to Parallelize Optimization", Springer 2010.
"""

from __future__ import annotations

import math
import secrets
import zlib
from collections.abc import Callable
from typing import Any

import optuna
import torch
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from stochopt._checks import check_int, check_seed, show
from stochopt.bayesopt import Categorical, Float, Int, Space, Study

__all__ = ["StochoptSampler"]

_SEED_MOD = 2**63


def _mix(*parts: int) -> int:
    """A seed in ``[0, 2**63)`` from integers (a fixed polynomial, not Python's ``hash``)."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + part) % _SEED_MOD
    return seed


class _Codec:
    """One Optuna distribution as a search-space dimension: ``encode`` a trial's external
    value as the study's value, ``decode`` it back."""

    def __init__(self, dist: BaseDistribution) -> None:
        self.dist = dist
        self.low: float = 0.0
        self.step: float | None = None
        if isinstance(dist, CategoricalDistribution):
            self.dim: Float | Int | Categorical = Categorical(list(range(len(dist.choices))))
        elif dist.step is not None and (isinstance(dist, FloatDistribution) or dist.step != 1):
            self.low, self.step = dist.low, dist.step
            self.dim = Int(0, round((dist.high - dist.low) / dist.step))
        elif isinstance(dist, IntDistribution):
            self.dim = Int(dist.low, dist.high, log=dist.log)
        else:
            self.dim = Float(dist.low, dist.high, log=dist.log)

    def encode(self, value: Any) -> float:
        internal = self.dist.to_internal_repr(value)
        if self.step is not None:
            return float(round((internal - self.low) / self.step))
        return float(internal)

    def decode(self, value: float) -> Any:
        if self.step is not None:
            value = min(self.low + value * self.step, self.dist.high)
        if isinstance(self.dist, IntDistribution | CategoricalDistribution):
            value = round(value)
        return self.dist.to_external_repr(value)


class StochoptSampler(BaseSampler):
    """An Optuna sampler whose relative sampling is a :class:`stochopt.bayesopt.Study`.

    Args:
        acquisition: a name in :data:`stochopt.bayesopt.acquire.ACQUISITIONS` for one point
            at a time (``"logei"`` default, ``"noisy_ei"``, ``"kg"``, ``"ei"``, ``"mes"``,
            ``"kg_sga"``).
        surrogate: ``"gp"`` (default), ``"ibnn"``, ``"dkl"``, ``"ensemble"`` or ``"hmc"``.
        n_startup_trials: completed trials sampled at random before the model is used
            (default 10, as Optuna's ``GPSampler``).
        seed: an integer in ``[0, 2**63 - 1]``; ``None`` draws one.
        noise: a known observation-noise variance, or ``None`` (default) to infer it.
        raw_samples, restarts: the acquisition optimizer's budget (defaults 512 and 10).

    Raises:
        ValueError, TypeError: a setting :class:`~stochopt.bayesopt.Study` refuses, named.
    """

    def __init__(self, *, acquisition: str = "logei", surrogate: str = "gp",
                 n_startup_trials: int = 10, seed: int | None = None,
                 noise: float | None = None, raw_samples: int = 512,
                 restarts: int = 10) -> None:
        self._seeded = seed is not None
        seed = check_seed("StochoptSampler", "seed", seed, optional=True)
        self._seed = secrets.randbits(63) if seed is None else seed
        self._n_startup_trials = check_int("StochoptSampler", "n_startup_trials",
                                           n_startup_trials, low=1)
        self._settings = {"acquisition": acquisition, "surrogate": surrogate, "noise": noise,
                          "raw_samples": raw_samples, "restarts": restarts}
        try:
            Study([[0.0, 1.0]], **self._settings)  # checks every setting, naming it
        except (TypeError, ValueError) as error:
            raise type(error)(str(error).replace("Study:", "StochoptSampler:")) from None
        self._search_space = IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        """Draw a new seed, unless one was given (trials differ by number anyway)."""
        if not self._seeded:
            self._seed = secrets.randbits(63)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        if len(study.directions) > 1:
            raise ValueError(f"StochoptSampler: single-objective studies only; this study has "
                             f"{len(study.directions)} objectives")
        return {name: dist for name, dist in self._search_space.calculate(study).items()
                if not dist.single()}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING)
        trials = [t for t in study.get_trials(deepcopy=False, states=states)
                  if t.number != trial.number and all(
                      t.distributions.get(name) == dist for name, dist in search_space.items())]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if len(complete) < self._n_startup_trials:
            return {}
        codecs = {name: _Codec(dist) for name, dist in search_space.items()}
        with torch.device("cpu"):
            bo = Study(Space({name: codec.dim for name, codec in codecs.items()}), n_initial=1,
                       seed=_mix(self._seed, trial.number), **self._settings)
            row = self._rows(codecs)
            sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
            told = [t for t in trials if t.state != TrialState.RUNNING]
            values = [sign * t.value if t.state == TrialState.COMPLETE else math.nan
                      for t in told]
            bo.tell(torch.tensor([row(t) for t in told], dtype=torch.float64), values)
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if running:
                bo.add_pending(torch.tensor([row(t) for t in running], dtype=torch.float64))
            x = bo.ask()[0].tolist()
        return {name: codec.decode(v) for (name, codec), v in zip(codecs.items(), x,
                                                                  strict=True)}

    @staticmethod
    def _rows(codecs: dict[str, _Codec]) -> Callable[[FrozenTrial], list[float]]:
        return lambda t: [codec.encode(t.params[name]) for name, codec in codecs.items()]

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        seed = _mix(self._seed, trial.number, zlib.crc32(param_name.encode())) % 2**32
        return RandomSampler(seed=seed).sample_independent(study, trial, param_name,
                                                           param_distribution)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={show(v)}" for k, v in self._settings.items())
        return f"StochoptSampler({settings}, n_startup_trials={self._n_startup_trials})"
