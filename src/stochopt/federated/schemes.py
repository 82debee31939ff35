"""The aggregation schemes of Fraboni et al. (2023, Table 1): when the server aggregates,
whom, and with which weights :math:`d_i`.

Each scheme says when an aggregation is due (after an arrival, or at a window's deadline) and
gives the weights; :class:`~stochopt.federated.Server` applies them, the same way in the
simulator and in the Flower strategies. Clients aggregated at step :math:`n` restart from
:math:`\\theta^{n+1}` at the aggregation's time, as in the paper's code (a FedBuff or FedFix
client that finished early waits for the aggregation).

``weights`` chooses :math:`d_i`:

* ``"identical"``: the naive choice (async FedAvg :math:`d_i = 1`, FedBuff-c
  :math:`1/c`, FedFix :math:`p_i`), which minimizes a surrogate biased toward fast clients;
* ``"unbiased"``: :math:`d_i = p_i/f_i` with :math:`f_i` the participation rate derived from
  known compute times (simulation only; for FedBuff, the fraction of aggregations containing
  :math:`i` in the schedule, as the paper's code does);
* ``"observed"``: :math:`d_i = p_i/\\hat f_i` with :math:`\\hat f_i` the fraction of the
  aggregations so far (this one included) that contained :math:`i`: what a deployment can
  know, since it never sees :math:`\\tau_i`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, show

__all__ = ["WEIGHTINGS", "AsyncFedAvg", "FedAvg", "FedBuff", "FedFix", "Scheme"]

#: the choices of ``weights`` (see the module's docstring)
WEIGHTINGS = ("identical", "unbiased", "observed")


def _weighting(owner: str, weights: str) -> str:
    if weights not in WEIGHTINGS:
        raise ValueError(f"{owner}: weights must be one of {WEIGHTINGS}, got {show(weights)}")
    return weights


class Scheme:
    """Base: a server's aggregation scheme."""

    #: the weights' kind, one of :data:`WEIGHTINGS`
    weights: str = "identical"
    #: whether an aggregation waits for a deadline rather than for arrivals
    windowed: ClassVar[bool] = False
    #: whether every client is in every aggregation (f_i = 1)
    synchronous: ClassVar[bool] = False

    def ready(self, arrived: int, clients: int) -> bool:
        """Whether ``arrived`` buffered replies (of ``clients``) trigger an aggregation."""
        raise NotImplementedError

    def deadline(self, step: int) -> float:
        """The time of aggregation ``step`` (windowed schemes only)."""
        return math.inf

    def identical(self, p: Tensor) -> Tensor:
        """The naive weights :math:`d_i`, shape ``(M,)``."""
        raise NotImplementedError

    def check(self, clients: int) -> None:
        """Refuse a scheme that cannot run with ``clients`` clients."""

    @property
    def label(self) -> str:
        """A short name for reports, e.g. ``"FedBuff-5 (identical)"``."""
        raise NotImplementedError


@dataclass(frozen=True)
class FedAvg(Scheme):
    """Synchronous FedAvg (McMahan et al. 2017): every client starts each round from the
    same model and the server waits for all of them; :math:`d_i = p_i`."""

    weights: str = "unbiased"
    synchronous: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.weights != "unbiased":
            raise ValueError(f"FedAvg: weights are always p_i ('unbiased'), got "
                             f"{show(self.weights)}")

    def ready(self, arrived: int, clients: int) -> bool:
        return arrived == clients

    def identical(self, p: Tensor) -> Tensor:
        return p

    @property
    def label(self) -> str:
        return "FedAvg"


@dataclass(frozen=True)
class AsyncFedAvg(Scheme):
    """Asynchronous FedAvg: an aggregation at every arrival, of that client alone.

    Args:
        weights: ``"identical"`` (:math:`d_i = 1`), ``"unbiased"``
            (:math:`d_i = (\\sum_j\\tau_j^{-1})\\,\\tau_i\\,p_i`) or ``"observed"``.
    """

    weights: str = "unbiased"

    def __post_init__(self) -> None:
        _weighting("AsyncFedAvg", self.weights)

    def ready(self, arrived: int, clients: int) -> bool:
        return arrived >= 1

    def identical(self, p: Tensor) -> Tensor:
        return torch.ones_like(p)

    @property
    def label(self) -> str:
        return f"Async FedAvg ({self.weights})"


@dataclass(frozen=True)
class FedBuff(Scheme):
    """FedBuff-c (Nguyen et al. 2022, as run by Fraboni et al.): aggregate the first ``c``
    replies to arrive.

    Args:
        c: the buffer size, 1 <= c <= M.
        weights: ``"identical"`` (:math:`d_i = 1/c`), ``"unbiased"`` or ``"observed"``
            (:math:`p_i / f_i`).
    """

    c: int
    weights: str = "identical"

    def __post_init__(self) -> None:
        check_int("FedBuff", "c", self.c)
        _weighting("FedBuff", self.weights)

    def check(self, clients: int) -> None:
        if self.c > clients:
            raise ValueError(f"FedBuff: c (the buffer size) must be at most the number of "
                             f"clients, {clients}, got {self.c}")

    def ready(self, arrived: int, clients: int) -> bool:
        return arrived >= self.c

    def identical(self, p: Tensor) -> Tensor:
        return torch.full_like(p, 1.0 / self.c)

    @property
    def label(self) -> str:
        return f"FedBuff-{self.c} ({self.weights})"


@dataclass(frozen=True)
class FedFix(Scheme):
    """FedFix-:math:`\\Delta t` (Fraboni et al. 2023): aggregate at every multiple of
    ``dt`` whoever finished inside the window; the others go on with their stale model.

    Args:
        dt: the window :math:`\\Delta t` > 0, in the compute times' units.
        weights: ``"unbiased"`` (:math:`d_i = \\lceil\\tau_i/\\Delta t\\rceil p_i`, the
            paper's), ``"observed"``, or ``"identical"`` (:math:`d_i = p_i`, biased).
    """

    dt: float
    weights: str = "unbiased"
    windowed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_real("FedFix", "dt", self.dt)
        _weighting("FedFix", self.weights)

    def ready(self, arrived: int, clients: int) -> bool:
        return False

    def deadline(self, step: int) -> float:
        return (step + 1) * self.dt

    def identical(self, p: Tensor) -> Tensor:
        return p

    @property
    def label(self) -> str:
        return f"FedFix-{self.dt:g} ({self.weights})"
