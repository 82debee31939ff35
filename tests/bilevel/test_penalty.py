"""The first-order penalty method: its estimate converges to grad psi_sigma, it reaches
||grad Phi|| <= 1e-2 on the noisy quadratic problem (single and double loop) with gradient
oracles only."""

from __future__ import annotations

import pytest
import torch

from stochopt.bilevel import QuadraticBilevel
from stochopt.bilevel.penalty import PenaltyBilevel


def test_one_step_by_hand() -> None:
    p = QuadraticBilevel(dim_x=3, dim_y=4)
    x0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    y0 = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64)
    solver = PenaltyBilevel(p, x0, y0, lr=0.1, lr_y=0.2, sigma=0.5, decay=0.0, sigma_min=0.1,
                            smoothness_ratio=2.0, batch_size=None)
    solver.step()
    grad_y_g = p.H @ y0 - p.J @ x0 + p.c
    grad_y_f = p.A @ y0 + p.B.T @ x0 + p.a
    z = y0 - 0.2 * grad_y_g
    y = y0 - 0.2 / (1 + 0.5 * 2.0) * (0.5 * grad_y_f + grad_y_g)
    grad_x_g = lambda v: -p.J.T @ v + p.K @ x0  # noqa: E731
    d = p.rho * x0 + p.B @ y + (grad_x_g(y) - grad_x_g(z)) / 0.5
    torch.testing.assert_close(solver.z, z)
    torch.testing.assert_close(solver.y, y)
    torch.testing.assert_close(solver.x, x0 - 0.1 * d)


def test_estimate_converges_to_the_penalty_gradient_at_fixed_x() -> None:
    p = QuadraticBilevel()
    x = torch.full((p.dim_x,), 0.3, dtype=torch.float64)
    solver = PenaltyBilevel(p, x, torch.zeros(p.dim_y, dtype=torch.float64), lr=1e-300,
                            lr_y=0.1, sigma=0.05, sigma_min=0.05, batch_size=None)
    solver.run(600)
    torch.testing.assert_close(solver.m, p.penalty_gradient(x, 0.05), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize(("inner_steps", "steps", "decay", "lr"),
                         [(1, 1500, 0.6, 0.2), (4, 600, 0.7, 0.3)])  # single, double loop
def test_reaches_small_hypergradient_without_second_derivatives(inner_steps: int, steps: int,
                                                                decay: float, lr: float) -> None:
    """Measured over seeds 0-2: 0.006-0.008 (single) and 0.008-0.009 (double loop)."""
    p = QuadraticBilevel(noise=0.1)
    solver = PenaltyBilevel(p, p.x0(), p.y0(), lr=lr, lr_y=0.08, sigma=1.0, sigma_min=3e-3,
                            decay=decay, beta=0.2, inner_steps=inner_steps, batch_size=8)
    solver.run(steps)
    assert p.hypergradient(solver.x).norm() <= 1e-2
    assert set(p.calls) == {"grad_f", "grad_g"}  # no Hessian- or Jacobian-vector products


def test_sigma_schedule() -> None:
    p = QuadraticBilevel()
    solver = PenaltyBilevel(p, p.x0(), p.y0(), sigma=1.0, sigma_min=0.01, decay=0.5)
    sigmas = []
    for _ in range(3):
        sigmas.append(solver.sigma)
        solver.iteration += 1
    assert sigmas == [1.0, 2**-0.5, 3**-0.5]
    solver.iteration = 10**6
    assert solver.sigma == 0.01


def test_bad_arguments() -> None:
    p = QuadraticBilevel()
    with pytest.raises(ValueError, match=r"PenaltyBilevel: sigma_min must be > 0, got 0"):
        PenaltyBilevel(p, p.x0(), p.y0(), sigma_min=0)
    with pytest.raises(ValueError, match=r"PenaltyBilevel: decay must be in \[0, inf\), got -1"):
        PenaltyBilevel(p, p.x0(), p.y0(), decay=-1)
