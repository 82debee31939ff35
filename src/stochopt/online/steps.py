r"""Step-size rules of online mirror descent: closed-form functions of the round and the
observed gradient variation.

A rule is called as ``rule(t, variation)`` at round :math:`t \ge 1` with
:math:`V_{t-1} = \sum_{s<t} \|g_s - M_s\|_2^2` (the squared errors of the learner's past hints;
plain online gradient descent has :math:`M_s = 0`), a tensor of shape ``(...)`` with one entry
per independent run, and returns :math:`\eta_t` with the same shape. Every rule refuses
constants whose first step :math:`\eta_1` (its largest) would not be a finite positive number,
a round that is not an integer :math:`\ge 1` and a variation that is not a finite tensor
:math:`\ge 0`. The learners, whose round and variation are valid by construction, call the
unchecked ``_eta(t, variation)`` every round instead (through ``step_size``).

=======================  ============================================  ====================
rule                     :math:`\eta_t`                                regime
=======================  ============================================  ====================
:class:`InverseSqrtStep`  :math:`D / (G\sqrt t)`                        convex (OGD)
:class:`VariationStep`    :math:`D / \sqrt{\delta + 4G^2 + V_{t-1}}`    convex and smooth
:class:`InverseTimeStep`  :math:`c / (\lambda t)`                       strongly convex
=======================  ============================================  ====================

References:
    Zinkevich, "Online convex programming and generalized infinitesimal gradient ascent",
    ICML 2003 (:math:`D/(G\sqrt t)`).
    Hazan, Agarwal & Kale, "Logarithmic regret algorithms for online convex optimization",
    Machine Learning 2007 (:math:`1/(\lambda t)` for OGD).
    Chen, Zhang, Tu, Zhao & Zhang, "Optimistic online mirror descent for bridging stochastic
    and adversarial online convex optimization", ICML 2023 / JMLR 2024, arXiv:2302.04552
    (:math:`D/\sqrt{\delta + 4G^2 + \bar V_{t-1}}` for optimistic OMD, as quoted verbatim by Wang,
    Barik, Zhao & Tan, NeurIPS 2025, arXiv:2510.04685).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from stochopt._checks import check_int, check_real, show

__all__ = ["InverseSqrtStep", "InverseTimeStep", "StepRule", "VariationStep"]


def _check_first(owner: str, eta: float, formula: str) -> None:
    """The first (largest) step must be a finite positive number."""
    if not 0 < eta < math.inf:
        raise ValueError(f"{owner}: the first step {formula} must be finite and > 0, got "
                         f"{eta!r}")


def _check_call(owner: str, t: int, variation: Tensor) -> None:
    """A rule's arguments: the round ``t >= 1`` and a finite, non-negative variation."""
    check_int(owner, "t", t)
    if not isinstance(variation, Tensor) or not variation.is_floating_point():
        raise TypeError(f"{owner}: variation must be a floating-point tensor, got "
                        f"{show(variation)}")
    if not bool(((variation >= 0) & variation.isfinite()).all()):
        raise ValueError(f"{owner}: variation must be finite and >= 0 (a sum of squared "
                         f"norms), got {variation.tolist()}")


@dataclass(frozen=True)
class InverseSqrtStep:
    """:math:`\\eta_t = D / (G \\sqrt t)`, the anytime step of online gradient descent.

    Args:
        diameter: :math:`D`, the domain's diameter.
        gradient_bound: :math:`G \\ge \\sup_t \\|\\nabla f_t\\|`.
    """

    diameter: float
    gradient_bound: float

    def __post_init__(self) -> None:
        check_real("InverseSqrtStep", "diameter", self.diameter)
        check_real("InverseSqrtStep", "gradient_bound", self.gradient_bound)
        _check_first("InverseSqrtStep", self.diameter / self.gradient_bound,
                     "diameter / gradient_bound")

    def __call__(self, t: int, variation: Tensor) -> Tensor:
        _check_call("InverseSqrtStep", t, variation)
        return self._eta(t, variation)

    def _eta(self, t: int, variation: Tensor) -> Tensor:
        return variation.new_full(variation.shape,
                                  self.diameter / (self.gradient_bound * math.sqrt(t)))


@dataclass(frozen=True)
class VariationStep:
    """:math:`\\eta_t = D / \\sqrt{\\delta + 4G^2 + V_{t-1}}`, the convex-and-smooth step of
    optimistic OMD (Chen et al., Theorem 1), :math:`V_{t-1} = \\sum_{s<t} \\|g_s - M_s\\|^2`.

    Args:
        diameter: :math:`D`.
        gradient_bound: :math:`G`.
        delta: :math:`\\delta > 0` (default 1.0; the paper leaves it free).
    """

    diameter: float
    gradient_bound: float
    delta: float = 1.0

    def __post_init__(self) -> None:
        check_real("VariationStep", "diameter", self.diameter)
        check_real("VariationStep", "gradient_bound", self.gradient_bound)
        check_real("VariationStep", "delta", self.delta)
        bound = self.gradient_bound * self.gradient_bound  # inf, not OverflowError, when huge
        _check_first("VariationStep", self.diameter / math.sqrt(self.delta + 4 * bound),
                     "diameter / sqrt(delta + 4 gradient_bound^2)")

    def __call__(self, t: int, variation: Tensor) -> Tensor:
        _check_call("VariationStep", t, variation)
        return self._eta(t, variation)

    def _eta(self, t: int, variation: Tensor) -> Tensor:
        return self.diameter / (self.delta + 4 * self.gradient_bound**2 + variation).sqrt()


@dataclass(frozen=True)
class InverseTimeStep:
    """:math:`\\eta_t = c / (\\lambda t)` for :math:`\\lambda`-strongly convex losses.

    ``scale=1`` is online gradient descent's step (Hazan et al. 2007). For optimistic OMD the
    Bregman terms telescope when :math:`1/\\eta_t - 1/\\eta_{t-1} \\le \\lambda/2` (strong
    convexity is spent at :math:`x_t` while the telescoping runs over :math:`\\hat x_t`, and
    :math:`\\|u - \\hat x_t\\|^2 \\le 2\\|u - x_t\\|^2 + 2\\|x_t - \\hat x_t\\|^2`), hence
    ``scale=2`` there. We could not check this constant against the paper's text (its PDF was not
    available to us); any :math:`c \\ge 1` keeps the logarithmic rate.

    Args:
        strong_convexity: :math:`\\lambda > 0`.
        scale: :math:`c > 0` (default 1.0).
    """

    strong_convexity: float
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_real("InverseTimeStep", "strong_convexity", self.strong_convexity)
        check_real("InverseTimeStep", "scale", self.scale)
        _check_first("InverseTimeStep", self.scale / self.strong_convexity,
                     "scale / strong_convexity")

    def __call__(self, t: int, variation: Tensor) -> Tensor:
        _check_call("InverseTimeStep", t, variation)
        return self._eta(t, variation)

    def _eta(self, t: int, variation: Tensor) -> Tensor:
        return variation.new_full(variation.shape, self.scale / (self.strong_convexity * t))


#: any of the rules above (or a callable with the same signature)
StepRule = InverseSqrtStep | VariationStep | InverseTimeStep


_CHECKED_CALLS = (InverseSqrtStep.__call__, VariationStep.__call__, InverseTimeStep.__call__)


def step_size(rule: StepRule, t: int, variation: Tensor) -> Tensor:
    """:math:`\\eta_t` for a learner's own round and variation (valid by construction): the
    rule's unchecked ``_eta``, or its ``__call__`` where a subclass overrides it."""
    if type(rule).__call__ in _CHECKED_CALLS:
        return rule._eta(t, variation)
    return rule(t, variation)
