r"""StocBiO: a double-loop stochastic bilevel method with a Neumann-series hypergradient.

Each iteration runs :math:`T` SGD steps on the lower objective (warm-started), then estimates
the hypergradient with a truncated Neumann series for :math:`(\nabla^2_{yy} g)^{-1}`, every
product on a fresh batch, and takes a plain gradient step on :math:`x`:

.. math::
    y &\leftarrow y - \beta\, \nabla_y g(x, y; \xi_t), \quad t = 1..T \\
    v &= \eta \textstyle\sum_{q=0}^{Q-1} \prod_{j \le q} (I - \eta\, \nabla^2_{yy} g(x, y;
        \xi_j))\, \nabla_y f(x, y; \zeta) \\
    x &\leftarrow x - \alpha \big(\nabla_x f(x, y; \zeta) - \nabla^2_{xy} g(x, y; \xi')\, v\big)

(the empty product for :math:`q = 0` is the identity, so :math:`v \to (\nabla^2_{yy} g)^{-1}
\nabla_y f` as :math:`Q \to \infty` when :math:`\eta L \le 1`).

Note:
    The AccBO repository's StocBiO baseline (used in the BO-REP comparisons) omits the
    :math:`q = 0` term; the series here keeps it, as the estimator needs it to be consistent.

References:
    Ji, Yang & Liang, "Bilevel Optimization: Convergence Analysis and Enhanced Design", ICML
    2021, arXiv:2010.07962 (StocBiO).
"""

from __future__ import annotations

from torch import Tensor

from stochopt.bilevel._base import Solver, check_positive
from stochopt.bilevel.problem import BilevelProblem

__all__ = ["StocBiO"]


class StocBiO(Solver):
    """StocBiO with the AccBO repository's hyper-cleaning settings as defaults.

    Args:
        problem, x0, y0, batch_size, seed: see :class:`~stochopt.bilevel._base.Solver`.
        lr: :math:`\\alpha`, the upper step (default 0.01).
        lr_y: :math:`\\beta`, the lower SGD step (default 2e-3).
        inner_steps: :math:`T` (default 3).
        neumann_lr: :math:`\\eta` (default 0.01); neumann_terms: :math:`Q` (default 3).
    """

    def __init__(self, problem: BilevelProblem, x0: Tensor, y0: Tensor, *, lr: float = 0.01,
                 lr_y: float = 2e-3, inner_steps: int = 3, neumann_lr: float = 0.01,
                 neumann_terms: int = 3, batch_size: int | None = 1, seed: int = 0) -> None:
        for name, value in (("lr", lr), ("lr_y", lr_y), ("neumann_lr", neumann_lr)):
            check_positive("StocBiO", name, value)
        for name, value in (("inner_steps", inner_steps), ("neumann_terms", neumann_terms)):
            check_positive("StocBiO", name, value, integer=True)
        super().__init__(problem, x0, y0, batch_size=batch_size, seed=seed)
        self.lr, self.lr_y, self.inner_steps = lr, lr_y, inner_steps
        self.neumann_lr, self.neumann_terms = neumann_lr, neumann_terms

    def neumann(self, fy: Tensor) -> Tensor:
        """:math:`v`, the series' approximation of :math:`(\\nabla^2_{yy} g)^{-1} \\nabla_y f`."""
        p, x, y = self.problem, self.x, self.y
        term, total = fy, fy.clone()
        for _ in range(self.neumann_terms - 1):
            term = term - self.neumann_lr * p.hvp_jvp_g(x, y, term, self.batch("lower"))[0]
            total = total + term
        return self.neumann_lr * total

    def step(self) -> None:
        p = self.problem
        for _ in range(self.inner_steps):
            self.y = self.y - self.lr_y * p.grad_y_g(self.x, self.y, self.batch("lower"))
        fx, fy = p.grad_f(self.x, self.y, self.batch("upper"))
        _, jv = p.hvp_jvp_g(self.x, self.y, self.neumann(fy), self.batch("lower"))
        self.x = self.x - self.lr * (fx - jv)
