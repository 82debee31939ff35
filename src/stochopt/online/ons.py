r"""Optimistic OMD with an online-Newton-step regularizer, for exp-concave losses on a ball.

A gradient with a NaN or infinite entry (or so large that :math:`U_{t+1}` or the point
:math:`\hat x_t - U_t^{-1} g_t` would overflow) is refused: ``update`` raises ``ValueError`` and
the learner is unchanged. The learner's own projections then skip the checks of
:meth:`~stochopt.online.domains.Ball.project` (:math:`U_t` is positive definite by
construction).

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

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_real, show
from stochopt.online._base import (
    Stateful,
    check_gradient,
    check_in_domain,
    check_positive_definite,
    check_start,
    check_update,
)
from stochopt.online.domains import Ball, projector

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
        check_real("exp_concave_beta", name, value)
    beta = 0.5 * min(1.0 / (4 * gradient_bound * diameter), alpha)
    if not beta > 0:
        raise ValueError(f"exp_concave_beta: 1 / (4 gradient_bound diameter) underflows to 0 "
                         f"for gradient_bound={gradient_bound!r}, diameter={diameter!r}")
    return beta


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
                            f"is exact there), got {show(domain)}")
        for name, value in (("beta", beta), ("delta", delta)):
            check_real("OptimisticONS", name, value)
        check_start("OptimisticONS", domain, x0)
        self.domain, self.beta, self.delta = domain, float(beta), float(delta)
        self.t = 1
        self.x_hat = x0.detach().clone()
        self.hint = torch.zeros_like(self.x_hat)  # M_t
        eye = torch.eye(domain.dim, dtype=x0.dtype, device=x0.device)
        self.metric = (delta * eye).expand(*x0.shape[:-1], -1, -1).clone()  # U_t, (..., d, d)

    def _target(self, direction: Tensor) -> Tensor:
        """:math:`\\hat x_t - U_t^{-1} v` for ``direction`` :math:`v`."""
        try:
            newton = torch.linalg.solve(self.metric, direction.unsqueeze(-1)).squeeze(-1)
        except torch.linalg.LinAlgError as error:  # possible only for a tiny delta
            raise ValueError(f"OptimisticONS: U_t is numerically singular; delta={self.delta!r} "
                             f"is too small for these gradients, use a larger delta") from error
        return self.x_hat - newton

    def _project(self, y: Tensor) -> Tensor:
        """:math:`\\Pi^{U_t}_X(y)` for a point computed from checked input: unchecked (``U_t``
        is symmetric positive definite by construction) unless a subclass of
        :class:`~stochopt.online.domains.Ball` overrides ``project``."""
        return projector(self.domain)(y, metric=self.metric)

    def play(self) -> Tensor:
        """:math:`x_t = \\Pi^{U_t}_X(\\hat x_t - U_t^{-1} M_t)`, shape ``(..., d)``."""
        return self._project(self._target(self.hint))

    def update(self, gradient: Tensor) -> None:
        """:math:`\\hat x_{t+1}` with :math:`U_t`; then :math:`U_{t+1}` and
        :math:`M_{t+1} = g_t`."""
        g = check_gradient("OptimisticONS", gradient, self.x_hat, finite=False)
        error = g - self.hint  # g_t - M_t, (..., d)
        metric = self.metric + 0.5 * self.beta * error.unsqueeze(-1) * error.unsqueeze(-2)
        y = self._target(g)
        check_update("OptimisticONS", gradient, metric, y,
                     too_large="U_{t+1} = U_t + (beta / 2) (g_t - M_t)(g_t - M_t)^T or the "
                     "point hat x_t - U_t^{-1} g_t would not be finite")
        self.x_hat = self._project(y)
        self.metric = metric
        self.hint = g.clone()
        self.t += 1

    def _check_state(self, owner: str, state: Mapping[str, Any]) -> None:
        check_in_domain(owner, "x_hat", self.domain, state["x_hat"])
        check_positive_definite(owner, "metric", state["metric"])
