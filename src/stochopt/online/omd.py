r"""Online gradient descent, optimistic online mirror descent and optimistic FTRL with the
Euclidean regularizer.

Each learner plays :math:`x_t` (:meth:`play`), is told :math:`g_t = \nabla f_t(x_t)`
(:meth:`update`), and keeps everything it needs in :meth:`state_dict`. Points have shape
``(..., d)``: leading dimensions are independent runs sharing the rule (the step sizes of
adaptive rules are per run).

Optimistic OMD (Chen et al., Algorithm 1, with :math:`\psi_t = \|x\|^2 / (2\eta_t)`, so
:math:`B_{\psi_t}(x, y) = \|x - y\|^2 / (2\eta_t)`) with the hint :math:`M_t = g_{t-1}`
(:math:`M_1 = 0`):

.. math::
    x_t &= \arg\min_{x \in X} \langle M_t, x\rangle + B_{\psi_t}(x, \hat x_t)
         = \Pi_X(\hat x_t - \eta_t M_t) \\
    \hat x_{t+1} &= \arg\min_{x \in X} \langle g_t, x\rangle + B_{\psi_t}(x, \hat x_t)
         = \Pi_X(\hat x_t - \eta_t g_t)

Online gradient descent is the same with :math:`M_t = 0` (then :math:`x_t = \hat x_t`).

A gradient with a NaN or infinite entry, or so large that the learner's state would overflow
(its sum of squared errors, say), is refused (``update`` raises ``ValueError`` and the learner
is unchanged); ``load_state_dict`` checks the whole state before restoring it. Checked once
there, the gradient and the state make every other value of a round valid, so the step rule
and the projection run unchecked inside the learner (their public ``__call__`` and
``project`` check their arguments).

References:
    Chen, Zhang, Tu, Zhao & Zhang, "Optimistic online mirror descent for bridging stochastic
    and adversarial online convex optimization", ICML 2023 / JMLR 2024, arXiv:2302.04552.
    Rakhlin & Sridharan, "Online learning with predictable sequences", COLT 2013,
    arXiv:1208.3728 (optimistic mirror descent).
    Sachs, Hadiji, van Erven & Guzmán, "Between stochastic and adversarial online convex
    optimization: improved regret bounds via smoothness", NeurIPS 2022, arXiv:2202.07554
    (optimistic FTRL in the SEA model).
    Zinkevich, "Online convex programming and generalized infinitesimal gradient ascent",
    ICML 2003.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt.online._base import (
    Stateful,
    check_gradient,
    check_in_domain,
    check_nonnegative,
    check_start,
    check_update,
)
from stochopt.online.domains import Domain, all_finite, projector
from stochopt.online.steps import (
    InverseSqrtStep,
    InverseTimeStep,
    StepRule,
    VariationStep,
    step_size,
)

__all__ = ["OnlineGradientDescent", "OptimisticFTRL", "OptimisticOMD"]

_RULES = (InverseSqrtStep, VariationStep, InverseTimeStep)


class _Learner(Stateful):
    """The domain, the step rule and the round (``t``: the round about to be played)."""

    def __init__(self, domain: Domain, x0: Tensor, lr: StepRule) -> None:
        check_start(type(self).__name__, domain, x0)
        if not isinstance(lr, _RULES):
            raise TypeError(f"{type(self).__name__}: lr must be one of InverseSqrtStep, "
                            f"VariationStep, InverseTimeStep, got {show(lr)}")
        self.domain, self.lr = domain, lr
        self.t = 1

    def _eta(self, variation: Tensor) -> Tensor:
        """:math:`\\eta_t` for the learner's own (valid) round and variation, unchecked."""
        return step_size(self.lr, self.t, variation).unsqueeze(-1)  # (..., 1)

    def _project(self, y: Tensor) -> Tensor:
        """The domain's projection of a point computed from checked input, unchecked."""
        return projector(self.domain)(y)


class OnlineGradientDescent(_Learner):
    """Projected online gradient descent, :math:`x_{t+1} = \\Pi_X(x_t - \\eta_t g_t)`.

    Args:
        domain: :math:`X`.
        x0: :math:`x_1 \\in X`, shape ``(..., d)`` (leading dimensions: independent runs).
        lr: the rule of :math:`\\eta_t`; :class:`~stochopt.online.steps.InverseSqrtStep` for
            convex losses, ``InverseTimeStep(lam)`` for :math:`\\lambda`-strongly convex ones
            (a :class:`~stochopt.online.steps.VariationStep` sees :math:`V_{t-1} =
            \\sum_{s<t} \\|g_s\\|^2`, an AdaGrad-norm step).

    Example:
        >>> import torch
        >>> from stochopt.online import Ball, InverseSqrtStep
        >>> ogd = OnlineGradientDescent(Ball(2), torch.zeros(2, dtype=torch.float64),
        ...                             lr=InverseSqrtStep(diameter=2.0, gradient_bound=1.0))
        >>> ogd.update(torch.tensor([-1.0, 0.0], dtype=torch.float64)); ogd.play()
        tensor([1., 0.], dtype=torch.float64)
    """

    _state_names = ("x", "variation")

    def __init__(self, domain: Domain, x0: Tensor, *, lr: StepRule) -> None:
        super().__init__(domain, x0, lr)
        self.x = x0.detach().clone()
        self.variation = x0.new_zeros(x0.shape[:-1])  # sum_{s<t} ||g_s||^2

    def play(self) -> Tensor:
        """:math:`x_t`, shape ``(..., d)``."""
        return self.x.clone()

    def update(self, gradient: Tensor) -> None:
        """Take :math:`g_t = \\nabla f_t(x_t)` (shape ``(..., d)``) and move to round t+1."""
        owner = type(self).__name__
        g = check_gradient(owner, gradient, self.x, finite=False)
        eta = self._eta(self.variation)
        y = self.x - eta * g
        variation = self.variation + g.square().sum(-1)
        check_update(owner, gradient, y, variation)
        self.x = self._project(y)
        self.variation = variation
        self.t += 1

    def _check_state(self, owner: str, state: Mapping[str, Any]) -> None:
        check_in_domain(owner, "x", self.domain, state["x"])
        check_nonnegative(owner, "variation", state["variation"])


class OptimisticOMD(_Learner):
    """Optimistic online mirror descent with the Euclidean regularizer and the last gradient
    as hint (Chen et al. 2023): :math:`x_t = \\Pi_X(\\hat x_t - \\eta_t M_t)`,
    :math:`\\hat x_{t+1} = \\Pi_X(\\hat x_t - \\eta_t g_t)`, :math:`M_{t+1} = g_t`.

    The paper's step sizes, by regime (its Theorems for convex and strongly convex expected
    losses; the exp-concave one is :class:`~stochopt.online.ons.OptimisticONS`):

    * convex and :math:`L`-smooth: ``VariationStep(D, G, delta)``,
      :math:`\\eta_t = D/\\sqrt{\\delta + 4G^2 + \\sum_{s<t}\\|g_s - M_s\\|^2}`, regret
      :math:`O(\\sqrt{\\sigma^2_{1:T}} + \\sqrt{\\Sigma^2_{1:T}})`;
    * :math:`\\lambda`-strongly convex and smooth: ``InverseTimeStep(lam, scale=2.0)``,
      :math:`\\eta_t = 2/(\\lambda t)`, regret
      :math:`O(\\frac{\\sigma^2_{\\max} + \\Sigma^2_{\\max}}{\\lambda}
      \\log\\frac{\\sigma^2_{1:T} + \\Sigma^2_{1:T}}{\\sigma^2_{\\max} + \\Sigma^2_{\\max}})`. The
      factor 2 is our derivation (see :class:`~stochopt.online.steps.InverseTimeStep`), not
      checked against the paper's text.

    Both steps at round :math:`t` use the same :math:`\\eta_t`, computed from
    :math:`V_{t-1}` before :math:`g_t` is seen.

    Args:
        domain: :math:`X`.
        x0: :math:`\\hat x_1 \\in X`, shape ``(..., d)``.
        lr: the rule of :math:`\\eta_t`.

    Example:
        >>> import torch
        >>> from stochopt.online import Ball, VariationStep
        >>> omd = OptimisticOMD(Ball(2), torch.zeros(2, dtype=torch.float64),
        ...                     lr=VariationStep(diameter=2.0, gradient_bound=1.0, delta=1.0))
        >>> omd.play()  # M_1 = 0: x_1 = x_hat_1
        tensor([0., 0.], dtype=torch.float64)
        >>> omd.update(torch.tensor([-1.0, 0.0], dtype=torch.float64))  # eta_1 = 2/sqrt(5)
        >>> omd.x_hat, omd.play()  # x_2 = Pi(x_hat_2 - eta_2 M_2), eta_2 = 2/sqrt(6)
        (tensor([0.8944, 0.0000], dtype=torch.float64), tensor([1., 0.], dtype=torch.float64))
    """

    _state_names = ("x_hat", "hint", "variation")

    def __init__(self, domain: Domain, x0: Tensor, *, lr: StepRule) -> None:
        super().__init__(domain, x0, lr)
        self.x_hat = x0.detach().clone()
        self.hint = torch.zeros_like(self.x_hat)  # M_t
        self.variation = x0.new_zeros(x0.shape[:-1])  # V_{t-1} = sum_{s<t} ||g_s - M_s||^2

    def play(self) -> Tensor:
        """:math:`x_t = \\Pi_X(\\hat x_t - \\eta_t M_t)`, shape ``(..., d)``."""
        return self._project(self.x_hat - self._eta(self.variation) * self.hint)

    def update(self, gradient: Tensor) -> None:
        """:math:`\\hat x_{t+1} = \\Pi_X(\\hat x_t - \\eta_t g_t)`, :math:`M_{t+1} = g_t`."""
        owner = type(self).__name__
        g = check_gradient(owner, gradient, self.x_hat, finite=False)
        eta = self._eta(self.variation)
        y = self.x_hat - eta * g
        variation = self.variation + (g - self.hint).square().sum(-1)
        check_update(owner, gradient, y, variation)
        self.x_hat = self._project(y)
        self.variation = variation
        self.hint = g.clone()
        self.t += 1

    def _check_state(self, owner: str, state: Mapping[str, Any]) -> None:
        check_in_domain(owner, "x_hat", self.domain, state["x_hat"])
        check_nonnegative(owner, "variation", state["variation"])


class OptimisticFTRL(_Learner):
    """Optimistic follow-the-regularized-leader with :math:`\\psi_t = \\|x - x_1\\|^2/(2\\eta_t)`
    and the last gradient as hint:

    .. math::
        x_t = \\arg\\min_{x \\in X} \\Big\\langle \\sum_{s<t} g_s + M_t, x\\Big\\rangle
        + \\frac{\\|x - x_1\\|^2}{2\\eta_t} = \\Pi_X\\Big(x_1 - \\eta_t\\big(\\sum_{s<t} g_s + M_t
        \\big)\\Big).

    With ``VariationStep`` this is the convex-case learner of the SEA model's first analysis
    (Sachs et al. 2022), up to the step-size rule: theirs is a different adaptive rule
    (:math:`\\eta_t` driven by :math:`\\sum_{s<t} \\min\\{\\eta_s \\|g_s - M_s\\|^2, D\\|g_s -
    M_s\\|\\}`); we reuse optimistic OMD's rule so that the two learners differ only in the
    update.

    Args:
        domain: :math:`X`.
        x0: :math:`x_1 \\in X`, shape ``(..., d)``: the regularizer's centre.
        lr: the rule of :math:`\\eta_t`.
    """

    _state_names = ("gradient_sum", "hint", "variation")

    def __init__(self, domain: Domain, x0: Tensor, *, lr: StepRule) -> None:
        super().__init__(domain, x0, lr)
        self.x0 = x0.detach().clone()
        self.gradient_sum = torch.zeros_like(self.x0)  # sum_{s<t} g_s
        self.hint = torch.zeros_like(self.x0)
        self.variation = x0.new_zeros(x0.shape[:-1])

    def play(self) -> Tensor:
        """:math:`x_t`, shape ``(..., d)``."""
        eta = self._eta(self.variation)
        y = self.x0 - eta * (self.gradient_sum + self.hint)
        if not all_finite(y):  # update keeps the sum finite, not its product with eta_t
            raise ValueError("OptimisticFTRL.play: x_1 - eta_t (sum of gradients + M_t) "
                             "overflows: the gradients given to update are too large for the "
                             "step size")
        return self._project(y)

    def update(self, gradient: Tensor) -> None:
        """Add :math:`g_t` to the sum; :math:`M_{t+1} = g_t`."""
        owner = type(self).__name__
        g = check_gradient(owner, gradient, self.x0, finite=False)
        gradient_sum = self.gradient_sum + g
        variation = self.variation + (g - self.hint).square().sum(-1)
        check_update(owner, gradient, gradient_sum, variation)
        self.gradient_sum = gradient_sum
        self.variation = variation
        self.hint = g.clone()
        self.t += 1

    def _check_state(self, owner: str, state: Mapping[str, Any]) -> None:
        check_nonnegative(owner, "variation", state["variation"])
