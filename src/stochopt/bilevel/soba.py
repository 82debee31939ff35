r"""SOBA and MA-SOBA: single-loop stochastic bilevel optimization with a linear-system variable.

Each iteration takes one stochastic step on each of three variables: the lower variable
:math:`y`, the solution :math:`z` of the linear system
:math:`\nabla^2_{yy} g\, z = \nabla_y f`, and :math:`x` along the hypergradient estimate

.. math::
    y &\leftarrow y - \gamma \nabla_y g(x, y; \xi) \\
    z &\leftarrow z - \nu \big(\nabla^2_{yy} g(x, y; \xi')\, z - \nabla_y f(x, y; \zeta)\big) \\
    h &= \nabla_x f(x, y; \zeta) - \nabla^2_{xy} g(x, y; \xi')\, z \\
    m &\leftarrow (1 - \beta) m + \beta h, \qquad x \leftarrow x - \alpha m

(all derivatives at the iterates before the step). ``beta=1`` is SOBA; ``beta < 1`` averages
the hypergradient estimates (MA-SOBA). No Hessian is ever formed: one Hessian-vector and one
Jacobian-vector product per iteration.

References:
    Dagréou, Ablin, Vaiter & Moreau, "A framework for bilevel optimization that enables
    stochastic and global variance reduction algorithms", NeurIPS 2022, arXiv:2201.13409.
    Chen, Xiao & Balasubramanian, "Optimal algorithms for stochastic bilevel optimization under
    relaxed smoothness conditions", 2023, arXiv:2306.12067 (MA-SOBA).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochopt.bilevel._base import Solver, check_fraction, check_positive
from stochopt.bilevel.problem import BilevelProblem

__all__ = ["SOBA"]


class SOBA(Solver):
    """SOBA (``beta=1``) and MA-SOBA (``beta < 1``).

    Args:
        problem, x0, y0, batch_size, seed: see :class:`~stochopt.bilevel._base.Solver`.
        lr: :math:`\\alpha`, the upper step size (default 0.01).
        lr_y: :math:`\\gamma` (default 0.1).
        lr_z: :math:`\\nu` (default 0.1).
        beta: :math:`\\beta` in (0, 1], weight of the newest estimate (default 1.0: SOBA).
    """

    def __init__(self, problem: BilevelProblem, x0: Tensor, y0: Tensor, *, lr: float = 0.01,
                 lr_y: float = 0.1, lr_z: float = 0.1, beta: float = 1.0,
                 batch_size: int | None = 1, seed: int = 0) -> None:
        for name, value in (("lr", lr), ("lr_y", lr_y), ("lr_z", lr_z)):
            check_positive("SOBA", name, value)
        check_fraction("SOBA", "beta", beta)
        super().__init__(problem, x0, y0, batch_size=batch_size, seed=seed)
        self.lr, self.lr_y, self.lr_z, self.beta = lr, lr_y, lr_z, beta
        self.z = torch.zeros_like(self.y)
        self.m = torch.zeros_like(self.x)

    def step(self) -> None:
        p, x, y = self.problem, self.x, self.y
        lower, upper = self.batch("lower"), self.batch("upper")
        grad_y_g = p.grad_y_g(x, y, lower)
        hz, jz = p.hvp_jvp_g(x, y, self.z, self.batch("lower"))
        fx, fy = p.grad_f(x, y, upper)
        h = fx - jz
        self.y = y - self.lr_y * grad_y_g
        self.z = self.z - self.lr_z * (hz - fy)
        self.m = (1 - self.beta) * self.m + self.beta * h
        self.x = x - self.lr * self.m
