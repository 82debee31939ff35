"""SOBA / MA-SOBA: the hypergradient estimate converges to the exact one; the method reaches
||grad Phi|| <= 1e-2 on the noisy quadratic problem; bad arguments are refused."""

from __future__ import annotations

import pytest
import torch

from stochopt.bilevel import QuadraticBilevel
from stochopt.bilevel.soba import SOBA


def test_one_step_by_hand() -> None:
    p = QuadraticBilevel(dim_x=3, dim_y=4)
    x0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    y0 = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64)
    solver = SOBA(p, x0, y0, lr=0.1, lr_y=0.2, lr_z=0.3, beta=0.5, batch_size=None)
    solver.z = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    z0 = solver.z.clone()
    solver.step()
    grad_y_g = p.H @ y0 - p.J @ x0 + p.c
    grad_y_f = p.A @ y0 + p.B.T @ x0 + p.a
    grad_x_f = p.rho * x0 + p.B @ y0
    h = grad_x_f - (-p.J.T) @ z0  # grad^2_xy g = -J^T
    torch.testing.assert_close(solver.y, y0 - 0.2 * grad_y_g)
    torch.testing.assert_close(solver.z, z0 - 0.3 * (p.H @ z0 - grad_y_f))
    torch.testing.assert_close(solver.x, x0 - 0.1 * 0.5 * h)


def test_estimate_converges_to_the_exact_hypergradient_at_fixed_x() -> None:
    p = QuadraticBilevel()
    x, y = p.x0(), p.y0()
    x = x + 0.3
    solver = SOBA(p, x, y, lr=1e-300, lr_y=0.1, lr_z=0.1, batch_size=None)
    solver.run(400)  # y -> y*(x), z -> H^{-1} grad_y f: linear rates (1 - 0.1 mu)^k
    estimate = solver.m  # beta = 1: the last estimate itself
    torch.testing.assert_close(estimate, p.hypergradient(x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("beta", [1.0, 0.2])  # SOBA, MA-SOBA
def test_reaches_small_hypergradient_on_the_noisy_quadratic(beta: float) -> None:
    p = QuadraticBilevel(noise=0.1)
    solver = SOBA(p, p.x0(), p.y0(), lr=0.05, lr_y=0.1, lr_z=0.1, beta=beta, batch_size=8)
    for lr in (0.05, 0.0167, 0.0056):
        solver.lr = lr
        solver.run(500)
    assert p.hypergradient(solver.x).norm() <= 1e-2
    assert p.calls["hvp"] == 1500  # one Hessian- and Jacobian-vector product per iteration


def test_bad_arguments() -> None:
    p = QuadraticBilevel()
    with pytest.raises(ValueError, match=r"SOBA: lr must be > 0, got -1"):
        SOBA(p, p.x0(), p.y0(), lr=-1)
    with pytest.raises(ValueError, match=r"SOBA: beta must be in \(0, 1\], got 0"):
        SOBA(p, p.x0(), p.y0(), beta=0)
    with pytest.raises(TypeError, match=r"SOBA: batch_size must be an integer, got 2.5"):
        SOBA(p, p.x0(), p.y0(), batch_size=2.5)
