"""StocBiO: the Neumann series converges to the implicit hypergradient, and the method
reaches ||grad Phi|| <= 1e-2 on the noisy quadratic problem."""

from __future__ import annotations

import pytest
import torch

from stochopt.bilevel import QuadraticBilevel
from stochopt.bilevel.stocbio import StocBiO


def test_series_error_falls_as_one_minus_eta_mu_to_the_q() -> None:
    p = QuadraticBilevel()  # lower Hessian eigenvalues in [1, 10]
    x = torch.full((p.dim_x,), 0.3, dtype=torch.float64)
    y = p.y_star(x)
    exact = torch.linalg.solve(p.H, p.grad_f(x, y)[1])
    errors = []
    for terms in (10, 40, 160):
        solver = StocBiO(p, x, y, neumann_lr=0.1, neumann_terms=terms, batch_size=None)
        errors.append(float((solver.neumann(p.grad_f(x, y)[1]) - exact).norm()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6 < errors[0]  # (1 - 0.1 * 1)^160 = 5e-8 of the first term's size


def test_reaches_small_hypergradient_on_the_noisy_quadratic() -> None:
    """On a lower level with condition number 2 twelve terms leave a (1 - 0.5)^12 = 2e-4
    bias (with condition 10 the truncation alone keeps ||grad Phi|| near 0.02). Measured over
    seeds 0-2: 0.0056-0.0067."""
    p = QuadraticBilevel(noise=0.1, mu=5.0)
    solver = StocBiO(p, p.x0(), p.y0(), lr=0.1, lr_y=0.08, inner_steps=3, neumann_lr=0.1,
                     neumann_terms=12, batch_size=8)
    for lr in (0.1, 0.03, 0.01):  # plain SGD on x: the step sets the noise floor
        solver.lr = lr
        solver.run(300)
    assert p.hypergradient(solver.x).norm() <= 1e-2


def test_bad_arguments() -> None:
    p = QuadraticBilevel()
    with pytest.raises(ValueError, match=r"StocBiO: neumann_lr must be > 0, got 0"):
        StocBiO(p, p.x0(), p.y0(), neumann_lr=0)
