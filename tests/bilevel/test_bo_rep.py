"""BO-REP: its estimators converge to the exact hypergradient, it reaches ||grad Phi|| <= 1e-2
on the noisy quadratic problem, and normalized steps survive a steep upper objective."""

from __future__ import annotations

import pytest
import torch

from stochopt.bilevel import QuadraticBilevel
from stochopt.bilevel.bo_rep import BOREP


def test_neumann_estimator_converges_geometrically_in_its_terms() -> None:
    """With exact oracles the Q-term Neumann series errs by (1 - mu/C)^Q."""
    p = QuadraticBilevel()  # lower Hessian eigenvalues in [1, 10]
    x = torch.full((p.dim_x,), 0.3, dtype=torch.float64)
    errors = []
    for terms in (10, 40, 160):
        solver = BOREP(p, x, p.y_star(x), hypergradient="neumann", neumann_terms=terms,
                       neumann_scale=10.0, refine_epochs=0, batch_size=None)
        fx, fy = p.grad_f(x, solver.y)
        errors.append(float((solver._neumann(fx, fy) - p.hypergradient(x)).norm()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6 < errors[0]  # 0.9^160 = 5e-8 of the first term's size


def test_linear_system_estimator_converges_at_fixed_x() -> None:
    p = QuadraticBilevel()
    x = torch.full((p.dim_x,), 0.3, dtype=torch.float64)
    solver = BOREP(p, x, torch.zeros(p.dim_y, dtype=torch.float64), lr=1e-300, lr_y=0.1,
                   lr_z=0.1, beta=0.0, refine_epochs=0, batch_size=None)
    solver.run(600)
    torch.testing.assert_close(solver.m, p.hypergradient(x), rtol=1e-8, atol=1e-9)


def test_initialization_refinement_brings_y_near_y_star() -> None:
    p = QuadraticBilevel(noise=0.5)
    x, y = p.x0(), p.y0()
    far = float((y - p.y_star(x)).norm())
    solver = BOREP(p, x, y, lr_y=0.1, refine_epochs=4, refine_steps=20, batch_size=4)
    assert float((solver.y - p.y_star(x)).norm()) < 0.05 * far


def test_reaches_small_hypergradient_on_the_noisy_quadratic() -> None:
    p = QuadraticBilevel(noise=0.1)
    solver = BOREP(p, p.x0(), p.y0(), lr=0.03, lr_y=0.08, lr_z=0.1, batch_size=64)
    for lr in (0.03, 0.01, 0.003, 0.001, 0.0003):  # normalized steps: the step sets the floor
        solver.lr = lr
        solver.run(200)
    assert p.hypergradient(solver.x).norm() <= 1e-2


def test_neumann_variant_makes_progress_on_the_noisy_quadratic() -> None:
    """The paper's estimator is biased by (1 - mu/C)^Q: on a problem with mu/C = 1/2 twelve
    terms leave 2e-4 of it; a short run (it costs Q products per step) gains 20x."""
    p = QuadraticBilevel(noise=0.1, mu=5.0)
    solver = BOREP(p, p.x0(), p.y0(), lr=0.03, lr_y=0.08, hypergradient="neumann",
                   neumann_terms=12, batch_size=32)
    start = float(p.hypergradient(solver.x).norm())
    for lr in (0.03, 0.01):
        solver.lr = lr
        solver.run(150)
    assert float(p.hypergradient(solver.x).norm()) < start / 20


def test_bad_arguments() -> None:
    p = QuadraticBilevel()
    with pytest.raises(ValueError, match=r"BOREP: hypergradient must be one of"):
        BOREP(p, p.x0(), p.y0(), hypergradient="exact")
    with pytest.raises(ValueError, match=r"BOREP: beta must be in \[0, 1\), got 1"):
        BOREP(p, p.x0(), p.y0(), beta=1)
    with pytest.raises(TypeError, match=r"BOREP: period must be an integer, got 1.5"):
        BOREP(p, p.x0(), p.y0(), period=1.5)
