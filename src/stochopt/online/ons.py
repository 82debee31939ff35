r"""Optimistic OMD with an online-Newton-step regularizer, for exp-concave losses on a ball.

With :math:`\psi_t(x) = \tfrac12\|x\|^2_{U_t}` (so :math:`B_{\psi_t}(x, y) = \tfrac12
\|x - y\|^2_{U_t}`), :math:`U_t = \delta I + \tfrac{\beta}{2}\sum_{s<t}(g_s - M_s)(g_s - M_s)^\top`
and the hint :math:`M_t = g_{t-1}` (:math:`M_1 = 0`):

.. math::
    x_t &= \arg\min_{x \in X} \langle M_t, x\rangle + \tfrac12\|x - \hat x_t\|^2_{U_t}
         = \Pi^{U_t}_X\big(\hat x_t - U_t^{-1} M_t\big) \\
    \hat x_{t+1} &= \arg\min_{x \in X} \langle g_t, x\rangle + \tfrac12\|x - \hat x_t\|^2_{U_t}
         = \Pi^{U_t}_X\big(\hat x_t - U_t^{-1} g_t\big)

where :math:`\Pi^{U}_X(y) = \arg\min_{x \in X}\|x - y\|_U` (exact on a ball:
:meth:`~stochopt.online.domains.Ball.project` with ``metric=U``). For :math:`\alpha`-exp-concave
expected losses with :math:`\|\nabla f\| \le G` on a domain of diameter :math:`D`, the paper takes
:math:`\beta = \tfrac12\min\{1/(4GD), \alpha\}` (:func:`exp_concave_beta`; the constant of
Hazan et al.'s lemma :math:`f(y) \ge f(x) + \langle\nabla f(x), y - x\rangle + \tfrac{\beta}{2}
\langle\nabla f(x), y - x\rangle^2`) and obtains :math:`O(\frac{d}{\beta}\log(\sigma^2_{1:T} +
\Sigma^2_{1:T}))` regret.

Not verified against the paper's text (its PDF was not available to us): that :math:`U_t` sums
the hint errors :math:`g_s - M_s` with weight :math:`\beta/2` and that both steps of round
:math:`t` use :math:`U_t` (the form given in our research notes); the default
:math:`\delta = 1`. Hazan et al.'s ONS corresponds to :math:`\delta = 2/(\beta D^2)` in this
parametrization, a smaller first step.

References:
    Chen, Zhang, Tu, Zhao & Zhang, "Optimistic online mirror descent for bridging stochastic
    and adversarial online convex optimization", ICML 2023 / JMLR 2024, arXiv:2302.04552.
    Hazan, Agarwal & Kale, "Logarithmic regret algorithms for online convex optimization",
    Machine Learning 2007 (online Newton step; the exp-concavity lemma).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stochopt.online._base import Stateful, check_gradient, check_start
from stochopt.online.domains import Ball

__all__ = ["OptimisticONS", "exp_concave_beta"]


def exp_concave_beta(alpha: float, gradient_bound: float, diameter: float) -> float:
    """:math:`\\beta = \\tfrac12\\min\\{1/(4GD), \\alpha\\}` for :math:`\\alpha`-exp-concave losses
    with gradients bounded by :math:`G` on a domain of diameter :math:`D`.

    Args:
        alpha: :math:`\\alpha > 0`.
        gradient_bound: :math:`G > 0`.
        diameter: :math:`D > 0`.

    Example:
        >>> exp_concave_beta(1.0, 1.0, 2.0)
        0.0625
    """
    for name, value in (("alpha", alpha), ("gradient_bound", gradient_bound),
                        ("diameter", diameter)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 < value < math.inf):
            raise ValueError(f"exp_concave_beta: {name} must be in (0, inf), got {value!r}")
    return 0.5 * min(1.0 / (4 * gradient_bound * diameter), alpha)


class OptimisticONS(Stateful):
    """Optimistic OMD with the regularizer :math:`\\tfrac12\\|x\\|^2_{U_t}` (see the module).

    Args:
        domain: :math:`X`, a :class:`~stochopt.online.domains.Ball`.
        x0: :math:`\\hat x_1 \\in X`, shape ``(..., d)`` (leading dimensions: independent runs).
        beta: :math:`\\beta > 0`, e.g. :func:`exp_concave_beta`.
        delta: :math:`\\delta > 0` (default 1.0).

    Example:
        >>> import torch
        >>> from stochopt.online import Ball
        >>> ons = OptimisticONS(Ball(2, radius=1.0), torch.zeros(2, dtype=torch.float64),
        ...                     beta=0.5, delta=2.0)
        >>> ons.update(torch.tensor([-1.0, 0.0], dtype=torch.float64))  # U_1 = 2 I
        >>> ons.x_hat  # Pi^U(x_hat_1 - U_1^{-1} g_1), inside the ball
        tensor([0.5000, 0.0000], dtype=torch.float64)
        >>> ons.metric  # U_2 = 2 I + (beta / 2) g g^T
        tensor([[2.2500, 0.0000],
                [0.0000, 2.0000]], dtype=torch.float64)
    """

    _state_names = ("x_hat", "hint", "metric")

    def __init__(self, domain: Ball, x0: Tensor, *, beta: float, delta: float = 1.0) -> None:
        if not isinstance(domain, Ball):
            raise TypeError(f"OptimisticONS: domain must be a Ball (the U_t-norm projection "
                            f"is exact there), got {domain!r}")
        for name, value in (("beta", beta), ("delta", delta)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    0 < value < math.inf):
                raise ValueError(f"OptimisticONS: {name} must be in (0, inf), got {value!r}")
        check_start("OptimisticONS", domain, x0)
        self.domain, self.beta, self.delta = domain, float(beta), float(delta)
        self.t = 1
        self.x_hat = x0.detach().clone()
        self.hint = torch.zeros_like(self.x_hat)  # M_t
        eye = torch.eye(domain.dim, dtype=x0.dtype, device=x0.device)
        self.metric = (delta * eye).expand(*x0.shape[:-1], -1, -1).clone()  # U_t, (..., d, d)

    def _step(self, direction: Tensor) -> Tensor:
        """:math:`\\Pi^{U_t}_X(\\hat x_t - U_t^{-1} v)` for ``direction`` :math:`v`."""
        newton = torch.linalg.solve(self.metric, direction.unsqueeze(-1)).squeeze(-1)
        return self.domain.project(self.x_hat - newton, metric=self.metric)

    def play(self) -> Tensor:
        """:math:`x_t = \\Pi^{U_t}_X(\\hat x_t - U_t^{-1} M_t)`, shape ``(..., d)``."""
        return self._step(self.hint)

    def update(self, gradient: Tensor) -> None:
        """:math:`\\hat x_{t+1}` with :math:`U_t`; then :math:`U_{t+1}` and
        :math:`M_{t+1} = g_t`."""
        check_gradient("OptimisticONS", gradient, self.x_hat)
        self.x_hat = self._step(gradient)
        error = gradient - self.hint  # g_t - M_t, (..., d)
        self.metric = self.metric + 0.5 * self.beta * error.unsqueeze(-1) * error.unsqueeze(-2)
        self.hint = gradient.clone()
        self.t += 1
