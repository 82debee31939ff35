r"""The online protocol: a learner plays, the environment reveals a loss, the learner updates;
and the regret against the best fixed point in hindsight.

.. math::
    R_T = \sum_{t=1}^T f_t(x_t) - \min_{x \in X} \sum_{t=1}^T f_t(x)

is computed exactly (the environment solves the minimization) at each requested horizon of one
run of :math:`T` rounds; the learners are anytime (no horizon is given to them), so the prefix of
a run is a run. This is the realized regret: the SEA bounds are on its expectation against a
fixed comparator, which it upper-bounds on average.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt.online.omd import OnlineGradientDescent, OptimisticFTRL, OptimisticOMD
from stochopt.online.ons import OptimisticONS
from stochopt.online.sea import SEALeastSquares, SEAQuadratic

__all__ = ["Environment", "Learner", "PlayRecord", "loglog_slope", "play"]


@runtime_checkable
class Learner(Protocol):
    """An online learner: plays a point, then is told the gradient of the revealed loss."""

    def play(self) -> Tensor:
        """:math:`x_t`, shape ``(..., d)``."""
        ...

    def update(self, gradient: Tensor) -> None:
        """Take :math:`\\nabla f_t(x_t)` (shape of the point) and move to the next round."""
        ...


@runtime_checkable
class Environment(Protocol):
    """A sequence of losses drawn in advance, with the exact best fixed point in hindsight."""

    rounds: int

    def reveal(self, t: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`f_t(x)` and :math:`\\nabla f_t(x)` at round :math:`t` (1-based)."""
        ...

    def hindsight(self, horizon: int) -> tuple[Tensor, Tensor]:
        """The best fixed point over rounds :math:`1..T` and its cumulative loss."""
        ...

    def variances(self, horizon: int) -> tuple[float, float]:
        """:math:`(\\sigma^2_{1:T}, \\Sigma^2_{1:T})`."""
        ...


@dataclass(frozen=True)
class PlayRecord:
    """What :func:`play` measured.

    Attributes:
        losses: :math:`f_t(x_t)`, shape ``(T, runs)``.
        horizons: the horizons :math:`T_1 < \\dots < T_k` of the regret.
        regret: :math:`R_{T_j}` per run, shape ``(k, runs)``.
        stochastic_variance: :math:`\\sigma^2_{1:T_j}`, one per horizon.
        adversarial_variation: :math:`\\Sigma^2_{1:T_j}`, one per horizon.
    """

    losses: Tensor
    horizons: tuple[int, ...]
    regret: Tensor
    stochastic_variance: tuple[float, ...]
    adversarial_variation: tuple[float, ...]

    def mean_regret(self) -> list[float]:
        """The regret at each horizon, averaged over runs."""
        return self.regret.mean(-1).tolist()


def play(learner: Learner, environment: Environment, rounds: int | None = None, *,
         horizons: Sequence[int] | None = None) -> PlayRecord:
    """Run the protocol for ``rounds`` rounds and measure the regret at ``horizons``.

    Args:
        learner: plays points of the environment's shape ``(runs, d)``.
        environment: the losses.
        rounds: :math:`T` (default ``environment.rounds``).
        horizons: increasing horizons in ``[1, T]`` (default ``(T,)``).

    Returns:
        The :class:`PlayRecord`.

    Example:
        >>> import torch
        >>> from stochopt.online import InverseSqrtStep, OnlineGradientDescent, SEAQuadratic
        >>> env = SEAQuadratic(2, rounds=100, radius=1.0, noise=0.1, seed=0)
        >>> ogd = OnlineGradientDescent(env.domain, env.start(), lr=InverseSqrtStep(
        ...     env.diameter, env.gradient_bound))
        >>> record = play(ogd, env, horizons=(10, 100))
        >>> record.regret.shape, record.stochastic_variance
        (torch.Size([2, 1]), (0.20000000000000004, 2.0000000000000004))
    """
    if not isinstance(learner, Learner):
        raise TypeError(f"play: learner must have play() and update(gradient), got "
                        f"{show(learner)}")
    if not isinstance(environment, Environment):
        raise TypeError(f"play: environment must have rounds, reveal, hindsight and "
                        f"variances, got {show(environment)}")
    total = environment.rounds if rounds is None else rounds
    if isinstance(total, bool) or not isinstance(total, int) or not (
            1 <= total <= environment.rounds):
        raise ValueError(f"play: rounds must be an integer in [1, {environment.rounds}], got "
                         f"{rounds!r}")
    points = (total,) if horizons is None else tuple(horizons)
    if not points or any(isinstance(h, bool) or not isinstance(h, int) for h in points) or (
            list(points) != sorted(set(points))) or not 1 <= points[0] <= points[-1] <= total:
        raise ValueError(f"play: horizons must be increasing integers in [1, {total}], got "
                         f"{horizons!r}")
    reveal, later = environment.reveal, _later_reveal(learner, environment)
    losses = []
    for t in range(1, total + 1):
        value, gradient = reveal(t, learner.play())
        learner.update(gradient)
        losses.append(value)
        reveal = later
    stacked = torch.stack(losses)  # (T, runs)
    cumulative = stacked.cumsum(0)
    regret = torch.stack([cumulative[h - 1] - environment.hindsight(h)[1] for h in points])
    sea = [environment.variances(h) for h in points]
    return PlayRecord(stacked, points, regret, tuple(s for s, _ in sea),
                      tuple(v for _, v in sea))


#: learners whose points keep the shape and dtype of their first round, and are finite (a point
#: that overflowed to NaN would give a NaN gradient, which their update refuses)
_OWN_LEARNERS = (OnlineGradientDescent, OptimisticOMD, OptimisticFTRL, OptimisticONS)
_OWN_ENVIRONMENTS = (SEAQuadratic, SEALeastSquares)


def _later_reveal(learner: Learner,
                  environment: Environment) -> Callable[[int, Tensor], tuple[Tensor, Tensor]]:
    """What :func:`play` calls from the second round on (the first goes through the checked
    ``reveal``): the environment's unchecked ``_reveal`` where both are the library's own
    (exactly, not subclasses), else ``reveal``."""
    if type(learner) in _OWN_LEARNERS and type(environment) in _OWN_ENVIRONMENTS:
        return environment._reveal  # type: ignore[attr-defined]
    return environment.reveal


def loglog_slope(horizons: Sequence[int], values: Sequence[float]) -> float:
    """Least-squares slope of :math:`\\log` ``values`` against :math:`\\log` ``horizons``: the
    exponent :math:`a` of a fit :math:`v \\approx c\\,T^a` (``nan`` if a value is not positive).

    Args:
        horizons: at least two distinct horizons.
        values: one positive value per horizon.

    Example:
        >>> round(loglog_slope([100, 400, 1600], [10.0, 20.0, 40.0]), 12)
        0.5
    """
    if len(horizons) != len(values) or len(set(horizons)) < 2:
        raise ValueError(f"loglog_slope: need one value per horizon and two distinct horizons, "
                         f"got {list(horizons)} and {list(values)}")
    for name, items in (("horizons", horizons), ("values", values)):
        if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in items):
            raise TypeError(f"loglog_slope: {name} must be real numbers, got {list(items)}")
    if any(not 0 < h < math.inf for h in horizons):
        raise ValueError(f"loglog_slope: horizons must be finite and > 0, got {list(horizons)}")
    if any(not v > 0 for v in values):
        return math.nan
    x = [math.log(h) for h in horizons]
    y = [math.log(v) for v in values]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
