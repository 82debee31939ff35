r"""BO-REP: bilevel optimization under unbounded smoothness (Hao, Gong & Liu, 2024).

The upper objective may have a Hessian that grows with its gradient, as in recurrent
networks; BO-REP answers with normalized momentum on :math:`x` and a lower variable kept close
to :math:`y^*(x)` by *initialization refinement* and *periodic updates*:

.. math::
    y_0 &\leftarrow \text{Epoch-SGD on } g(x_0, \cdot) \quad
        \text{(epochs double in length, the step halves)} \\
    y_k &\leftarrow N \text{ SGD steps on } g(x_k, \cdot) \text{ from } y_{k-1},
        \text{ projected on } \{\|y - y_{k-1}\| \le R\}, \text{ every } I \text{ iterations} \\
    z_k &\leftarrow z_{k-1} - \nu\big(\nabla^2_{yy} g(x_k, y_k; \xi)\, z_{k-1}
        - \nabla_y f(x_k, y_k; \zeta)\big) \\
    \hat\nabla\Phi_k &= \nabla_x f(x_k, y_k; \zeta) - \nabla^2_{xy} g(x_k, y_k; \xi)\, z_k \\
    m_k &= \beta m_{k-1} + (1 - \beta)\hat\nabla\Phi_k, \qquad
    x_{k+1} = x_k - \eta\, m_k / \|m_k\|

The hypergradient estimator is the linear-system variable :math:`z` of the official code
(``hypergradient="linear_system"``, default; its Hessian-vector product is taken before the
lower update, as there); ``"neumann"`` is the paper's estimator,
:math:`\nabla_x f - \nabla^2_{xy} g \cdot \frac1C \sum_{q<Q} (I - \nabla^2_{yy} g / C)^q
\nabla_y f` with fresh samples in each product.

Note:
    The official code has neither the refinement phase nor the radius :math:`R` (here
    ``refine_epochs=0``, ``radius=inf``), takes :math:`1 + N` lower steps per period with
    gradients accumulated across them (we take :math:`N` plain SGD steps), and regularizes
    its lower level by :math:`10^{-4}\|y\|_2` (a problem's choice here).

References:
    Hao, Gong & Liu, "Bilevel Optimization under Unbounded Smoothness: A New Algorithm and
    Convergence Analysis", ICLR 2024 (code: github.com/MingruiLiu-ML-Lab/
    Bilevel-Optimization-under-Unbounded-Smoothness).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochopt._checks import check_int, show
from stochopt.bilevel._base import Solver, check_positive, check_unit, require_finite
from stochopt.bilevel.problem import BilevelProblem

__all__ = ["BOREP"]

_ESTIMATORS = ("linear_system", "neumann")


class BOREP(Solver):
    """BO-REP with the official code's defaults for data hyper-cleaning.

    Args:
        problem, x0, y0, batch_size, seed: see :class:`~stochopt.bilevel._base.Solver`.
        lr: :math:`\\eta`, the normalized upper step (default 0.05).
        lr_y: the lower SGD step (default 0.05).
        lr_z: :math:`\\nu` (default 0.01).
        beta: :math:`\\beta`, momentum (default 0.9).
        period: :math:`I`, iterations between lower-level updates (default 2).
        inner_steps: :math:`N`, SGD steps per lower-level update (default 10).
        radius: :math:`R`, how far one update may move :math:`y` (default ``inf``).
        refine_epochs: Epoch-SGD epochs of the initialization refinement (default 3), the
            first of ``refine_steps`` steps (default 10) at ``lr_y``.
        hypergradient: ``"linear_system"`` or ``"neumann"`` (default ``"linear_system"``).
        neumann_terms, neumann_scale: :math:`Q` and :math:`C` of the Neumann estimator
            (default 10 and 10; :math:`C` must bound the lower Hessian's norm).
    """

    def __init__(self, problem: BilevelProblem, x0: Tensor, y0: Tensor, *, lr: float = 0.05,
                 lr_y: float = 0.05, lr_z: float = 0.01, beta: float = 0.9, period: int = 2,
                 inner_steps: int = 10, radius: float = float("inf"), refine_epochs: int = 3,
                 refine_steps: int = 10, hypergradient: str = "linear_system",
                 neumann_terms: int = 10, neumann_scale: float = 10.0,
                 batch_size: int | None = 1, seed: int = 0) -> None:
        for name, value in (("lr", lr), ("lr_y", lr_y), ("lr_z", lr_z),
                            ("neumann_scale", neumann_scale)):
            check_positive("BOREP", name, value)
        check_positive("BOREP", "radius", radius, infinite=True)
        for name, value in (("period", period), ("inner_steps", inner_steps),
                            ("refine_steps", refine_steps), ("neumann_terms", neumann_terms)):
            check_positive("BOREP", name, value, integer=True)
        check_unit("BOREP", "beta", beta)
        if hypergradient not in _ESTIMATORS:
            raise ValueError(f"BOREP: hypergradient must be one of {_ESTIMATORS}, got "
                             f"{show(hypergradient)}")
        check_int("BOREP", "refine_epochs", refine_epochs, low=0)
        super().__init__(problem, x0, y0, batch_size=batch_size, seed=seed)
        self.lr, self.lr_y, self.lr_z, self.beta = lr, lr_y, lr_z, beta
        self.period, self.inner_steps, self.radius = period, inner_steps, radius
        self.hypergradient, self.neumann_terms = hypergradient, neumann_terms
        self.neumann_scale = neumann_scale
        self.z = torch.zeros_like(self.y)
        self.m = torch.zeros_like(self.x)
        self.y = self._refine(refine_epochs, refine_steps)
        require_finite("BOREP", 0, self.y)  # the refinement diverged

    def _refine(self, epochs: int, steps: int) -> Tensor:
        """Epoch-SGD on :math:`g(x_0, \\cdot)`: each epoch restarts from the previous one's
        average iterate with twice the steps and half the step size."""
        y, lr = self.y, self.lr_y
        for epoch in range(epochs):
            total = torch.zeros_like(y)
            for _ in range(steps * 2**epoch):
                y = y - lr * self.problem.grad_y_g(self.x, y, self.batch("lower"))
                total += y
            y, lr = total / (steps * 2**epoch), lr / 2
        return y

    def _update_lower(self) -> None:
        start, y = self.y, self.y
        for _ in range(self.inner_steps):
            y = y - self.lr_y * self.problem.grad_y_g(self.x, y, self.batch("lower"))
            shift = y - start
            norm = float(shift.norm())
            if norm > self.radius:  # project on the ball around the previous iterate
                y = start + shift * (self.radius / norm)
        self.y = y

    def _neumann(self, fx: Tensor, fy: Tensor) -> Tensor:
        """The paper's estimator: :math:`\\nabla_x f - \\nabla^2_{xy} g \\cdot \\frac1C
        \\sum_{q<Q} (I - \\nabla^2_{yy} g / C)^q \\nabla_y f`, fresh samples per product."""
        p, x, y = self.problem, self.x, self.y
        term, total = fy, fy.clone()
        for _ in range(self.neumann_terms - 1):
            term = term - p.hvp_jvp_g(x, y, term, self.batch("lower"))[0] / self.neumann_scale
            total = total + term
        _, jv = p.hvp_jvp_g(x, y, total / self.neumann_scale, self.batch("lower"))
        return fx - jv

    def step(self) -> None:
        """One iteration in the official code's order: the Hessian-vector product at the
        current ``y``, the periodic lower update, then ``z`` and the estimate at the new ``y``."""
        p, x = self.problem, self.x
        if self.hypergradient == "linear_system":
            hz, _ = p.hvp_jvp_g(x, self.y, self.z, self.batch("lower"))
        if self.iteration % self.period == 0:
            self._update_lower()
        fx, fy = p.grad_f(x, self.y, self.batch("upper"))
        if self.hypergradient == "linear_system":
            self.z = self.z - self.lr_z * (hz - fy)
            estimate = fx - p.hvp_jvp_g(x, self.y, self.z, self.batch("lower"))[1]
        else:
            estimate = self._neumann(fx, fy)
        self.m = self.beta * self.m + (1 - self.beta) * estimate
        norm = float(self.m.norm())
        if norm > 0:
            self.x = x - self.lr * self.m / norm
