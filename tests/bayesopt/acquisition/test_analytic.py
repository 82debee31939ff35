"""Expected improvement: closed form vs Monte Carlo, gradients, and log-EI where EI underflows."""

from __future__ import annotations

import math

import torch

from stochopt.bayesopt import Posterior, expected_improvement, log_expected_improvement, log_h


def test_closed_form_matches_a_large_monte_carlo_estimate() -> None:
    mean = torch.tensor([0.0, 1.0, -0.5, 2.0], dtype=torch.float64)
    std = torch.tensor([1.0, 0.5, 2.0, 0.3], dtype=torch.float64)
    post = Posterior(mean, std.square())
    best = 0.7
    draws = mean + std * torch.randn(1_000_000, 4, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(0))
    improvement = (best - draws).clamp(min=0)
    mc, se = improvement.mean(0), improvement.std(0) / 1000
    ei = expected_improvement(post, best)
    assert ((ei - mc).abs() < 4 * se).all()
    # Frazier's worked check: mean improvement Delta = sigma = 1 gives 1.0833
    one = expected_improvement(Posterior(torch.tensor([0.0], dtype=torch.float64),
                                         torch.tensor([1.0], dtype=torch.float64)), 1.0)
    assert abs(one.item() - (1 * 0.8413447460685429 + 0.24197072451914337)) < 1e-12


def test_gradient_matches_finite_differences() -> None:
    mean = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    var = torch.tensor([0.8, 0.05], dtype=torch.float64, requires_grad=True)
    expected_improvement(Posterior(mean, var), 0.1).sum().backward()

    def total(m: torch.Tensor, v: torch.Tensor) -> float:
        return expected_improvement(Posterior(m, v), 0.1).sum().item()

    h = 1e-6
    m0, v0 = mean.detach(), var.detach()
    for i in range(2):
        step = torch.zeros(2, dtype=torch.float64)
        step[i] = h
        d_mean = (total(m0 + step, v0) - total(m0 - step, v0)) / (2 * h)
        d_var = (total(m0, v0 + step) - total(m0, v0 - step)) / (2 * h)
        assert abs(d_mean - mean.grad[i].item()) < 1e-6
        assert abs(d_var - var.grad[i].item()) < 1e-6


def test_log_ei_is_finite_where_ei_underflows() -> None:
    post = Posterior(torch.tensor([45.0], dtype=torch.float64),
                     torch.tensor([1.0], dtype=torch.float64))
    assert expected_improvement(post, 5.0).item() == 0.0  # z = -40: exp(-800) underflows
    log_ei = log_expected_improvement(post, 5.0).item()
    z = -40.0
    asymptotic = (-0.5 * z * z - 0.5 * math.log(2 * math.pi) - 2 * math.log(40)
                  + math.log1p(-3 / z**2 + 15 / z**4 - 105 / z**6))
    assert math.isfinite(log_ei) and abs(log_ei - asymptotic) < 1e-9


def test_log_h_agrees_with_the_direct_formula_where_that_is_accurate() -> None:
    z = torch.linspace(-8, 6, 141, dtype=torch.float64)
    direct = torch.log(z * 0.5 * torch.special.erfc(-z / math.sqrt(2))
                       + torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))
    torch.testing.assert_close(log_h(z), direct, rtol=1e-9, atol=1e-12)
    far = log_h(torch.tensor([-1e9, -1e4], dtype=torch.float64))
    assert torch.isfinite(far).all() and far[0] < far[1]
