r"""Penalty methods for bilevel optimization, fully first order (Kwon et al., 2023).

With :math:`\sigma > 0`, the penalty function

.. math::
    \psi_\sigma(x) = \min_y \Big( f(x, y) + \frac{g(x, y) - g^*(x)}{\sigma} \Big)

approaches :math:`\Phi(x) = f(x, y^*(x))` as :math:`\sigma \to 0` (its gradient within
:math:`O(\sigma)`), and its gradient needs only first derivatives:

.. math::
    \nabla\psi_\sigma(x) = \nabla_x f(x, y^*_\sigma) +
        \frac{\nabla_x g(x, y^*_\sigma) - \nabla_x g(x, y^*)}{\sigma},
    \qquad y^*_\sigma = \arg\min_y \sigma f + g.

The method tracks both minimizers with gradient steps, :math:`z \approx y^*` and
:math:`y \approx y^*_\sigma`, and steps :math:`x` along the estimate (with momentum
:math:`\beta`), while :math:`\sigma_k = \max(\sigma_{\min}, \sigma_0 (k+1)^{-c})` shrinks:

.. math::
    z &\leftarrow z - \gamma\, \nabla_y g(x, z; \xi) \\
    y &\leftarrow y - \gamma_\sigma \big(\sigma_k \nabla_y f(x, y; \zeta) + \nabla_y g(x, y;
        \xi)\big), \quad \gamma_\sigma = \gamma / (1 + \sigma_k L_f / L_g) \\
    d &= \nabla_x f(x, y; \zeta) + \big(\nabla_x g(x, y; \xi) - \nabla_x g(x, z;
        \xi')\big) / \sigma_k \\
    m &\leftarrow (1 - \beta) m + \beta d, \qquad x \leftarrow x - \alpha_k m,
        \quad \alpha_k = \alpha\, \sigma_k / \sigma_0

``inner_steps = T > 1`` runs T steps of both lower iterates per upper step (the double-loop
variant). No Hessian- or Jacobian-vector products are used.

References:
    Kwon, Kwon, Wright & Nowak, "On Penalty Methods for Nonconvex Bilevel Optimization and
    First-Order Stochastic Approximation", ICLR 2024, arXiv:2309.01753.
    Kwon, Kwon, Wright & Nowak, "A Fully First-Order Method for Stochastic Bilevel
    Optimization" (F2SA), ICML 2023, arXiv:2301.10945.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochopt._checks import check_real
from stochopt.bilevel._base import Solver, check_fraction, check_positive
from stochopt.bilevel.problem import BilevelProblem

__all__ = ["PenaltyBilevel"]


class PenaltyBilevel(Solver):
    """The first-order penalty method (single loop, or double loop with ``inner_steps``).

    Args:
        problem, x0, y0, batch_size, seed: see :class:`~stochopt.bilevel._base.Solver`.
        lr: :math:`\\alpha`, the upper step at :math:`\\sigma_0` (default 0.01).
        lr_y: :math:`\\gamma`, the lower step (default 0.1).
        sigma: :math:`\\sigma_0` (default 1.0).
        sigma_min: :math:`\\sigma_{\\min}`, the target accuracy's penalty (default 1e-2).
        decay: :math:`c`, the penalty's decay exponent (default 0.5).
        beta: :math:`\\beta` in (0, 1], weight of the newest estimate (default 1.0).
        inner_steps: :math:`T`, lower steps per upper step (default 1).
        smoothness_ratio: :math:`L_f / L_g`, which shrinks the penalized step as
            :math:`\\sigma` weighs ``f`` in (default 1.0).
    """

    def __init__(self, problem: BilevelProblem, x0: Tensor, y0: Tensor, *, lr: float = 0.01,
                 lr_y: float = 0.1, sigma: float = 1.0, sigma_min: float = 1e-2,
                 decay: float = 0.5, beta: float = 1.0, inner_steps: int = 1,
                 smoothness_ratio: float = 1.0, batch_size: int | None = 1,
                 seed: int = 0) -> None:
        for name, value in (("lr", lr), ("lr_y", lr_y), ("sigma", sigma),
                            ("sigma_min", sigma_min), ("smoothness_ratio", smoothness_ratio)):
            check_positive("PenaltyBilevel", name, value)
        check_positive("PenaltyBilevel", "inner_steps", inner_steps, integer=True)
        check_fraction("PenaltyBilevel", "beta", beta)
        check_real("PenaltyBilevel", "decay", decay, low_open=False)
        super().__init__(problem, x0, y0, batch_size=batch_size, seed=seed)
        self.lr, self.lr_y, self.sigma0, self.sigma_min = lr, lr_y, sigma, sigma_min
        self.decay, self.beta, self.inner_steps = decay, beta, inner_steps
        self.smoothness_ratio = smoothness_ratio
        self.z = self.y.clone()
        self.m = torch.zeros_like(self.x)

    @property
    def sigma(self) -> float:
        """:math:`\\sigma_k` at the current iteration."""
        return max(self.sigma_min, self.sigma0 * (self.iteration + 1) ** -self.decay)

    def step(self) -> None:
        p, x, sigma = self.problem, self.x, self.sigma
        lr_penalized = self.lr_y / (1 + sigma * self.smoothness_ratio)
        for _ in range(self.inner_steps):
            lower = self.batch("lower")  # one sample for both iterates (their noise cancels)
            self.z = self.z - self.lr_y * p.grad_y_g(x, self.z, lower)
            _, fy = p.grad_f(x, self.y, self.batch("upper"))
            gy = p.grad_y_g(x, self.y, lower)
            self.y = self.y - lr_penalized * (sigma * fy + gy)
        fx, _ = p.grad_f(x, self.y, self.batch("upper"))
        lower = self.batch("lower")
        gx_y, _ = p.grad_g(x, self.y, lower)
        gx_z, _ = p.grad_g(x, self.z, lower)
        d = fx + (gx_y - gx_z) / sigma
        self.m = (1 - self.beta) * self.m + self.beta * d
        self.x = x - self.lr * (sigma / self.sigma0) * self.m
