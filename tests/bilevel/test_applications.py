"""The embedded applications: data as described, oracles consistent with the implicit
hypergradient, and a short BO-REP run that finds the corrupted labels."""

from __future__ import annotations

import pytest
import torch

from stochopt.bilevel import BOREP, implicit_hypergradient
from stochopt.bilevel.applications import HyperCleaning, RegularizationTuning


def test_hyper_cleaning_corrupts_the_stated_fraction_with_wrong_labels() -> None:
    clean = HyperCleaning(corruption=0.0)
    noisy = HyperCleaning(corruption=0.4)
    assert torch.equal(clean.a, noisy.a)  # the same split and images
    changed = clean.b != noisy.b
    assert torch.equal(changed, noisy.corrupted)  # every corrupted label is wrong
    assert 0.35 < float(noisy.corrupted.double().mean()) < 0.45  # 1000 draws of p = 0.4


def _solve_lower(p: RegularizationTuning, x: torch.Tensor) -> torch.Tensor:
    """Newton's method on the strongly convex lower problem (to machine precision)."""
    y = torch.zeros(p.dim_y, dtype=torch.float64)
    for _ in range(30):
        step = torch.linalg.solve(p.hessian_yy_g(x, y), p.grad_y_g(x, y))
        y = y - step
    return y


def test_regularization_tuning_hypergradient_matches_finite_differences() -> None:
    p = RegularizationTuning()
    x = torch.linspace(-3, 1, p.dim_x, dtype=torch.float64)
    y = _solve_lower(p, x)
    assert p.grad_y_g(x, y).abs().max() < 1e-12
    exact = implicit_hypergradient(p, x, y)
    h = 1e-5
    for j in (0, 7, 30):
        e = torch.zeros(p.dim_x, dtype=torch.float64)
        e[j] = h
        plus, minus = _solve_lower(p, x + e), _solve_lower(p, x - e)
        finite = (p.f(x + e, plus) - p.f(x - e, minus)) / (2 * h)
        assert float(finite) == pytest.approx(float(exact[j]), rel=1e-6, abs=1e-10)


def test_bo_rep_flags_corrupted_samples() -> None:
    p = HyperCleaning("linear")
    solver = BOREP(p, p.x0(), p.y0(), lr=5.0, lr_y=0.5, lr_z=0.05, refine_epochs=2,
                   refine_steps=50, batch_size=128)
    solver.run(50)
    assert p.detection_f1(solver.x) > 0.8  # measured 0.84 (guessing all clean scores 0)
    assert p.test_accuracy(solver.y) > 0.85
