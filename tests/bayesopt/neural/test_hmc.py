"""HMC samples a known Gaussian; dual averaging follows Hoffman & Gelman's recursion."""

from __future__ import annotations

import math

import torch

from stochopt.bayesopt.neural import HMCBNN, DualAveraging, hmc
from stochopt.bayesopt.neural.hmc import autograd_value_and_grad

COV = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)
MEAN = torch.tensor([1.0, -2.0], dtype=torch.float64)
PRECISION = torch.linalg.inv(COV)


def _log_density(theta: torch.Tensor) -> torch.Tensor:
    r = theta - MEAN
    return -0.5 * r @ PRECISION @ r


def test_hmc_recovers_the_mean_and_covariance_of_a_correlated_gaussian() -> None:
    draws, info = hmc(_log_density, torch.zeros(2, dtype=torch.float64), burn_in=300,
                      samples=4000, step=0.3, path_length=1.5,
                      generator=torch.Generator().manual_seed(0))
    # HMC draws with about 5 leapfrog steps are nearly independent: with 4000 of them the
    # standard errors are ~0.016 (mean) and ~0.02 (covariance); 0.08 allows for correlation
    assert torch.allclose(draws.mean(0), MEAN, atol=0.08)
    assert torch.allclose(torch.cov(draws.T), COV, atol=0.08)
    # the averaged step of dual averaging is a little conservative: acceptance near, and
    # usually above, its 0.8 target
    assert 0.7 < info["acceptance"] < 0.95


def test_metropolis_correction_keeps_the_target_with_a_coarse_step() -> None:
    draws, info = hmc(_log_density, torch.zeros(2, dtype=torch.float64), burn_in=0,
                      samples=4000, step=0.9, path_length=0.9,
                      generator=torch.Generator().manual_seed(1))
    assert info["acceptance"] < 0.9  # proposals are rejected...
    assert torch.allclose(draws.mean(0), MEAN, atol=0.1)  # ...and the target survives
    assert torch.allclose(draws.var(0), COV.diagonal(), atol=0.12)


def test_dual_averaging_matches_the_recursion_written_out() -> None:
    adapt = DualAveraging(0.02)
    acceptances = [0.1, 0.95, 0.6, 0.99, 0.3]
    mu, h_bar, log_bar = math.log(0.2), 0.0, 0.0
    for m, alpha in enumerate(acceptances, start=1):
        step = adapt.update(alpha)
        h_bar = (1 - 1 / (m + 10)) * h_bar + (0.8 - alpha) / (m + 10)
        log_step = mu - math.sqrt(m) / 0.05 * h_bar
        log_bar = m**-0.75 * log_step + (1 - m**-0.75) * log_bar
        assert math.isclose(step, math.exp(log_step), rel_tol=1e-12)
    assert math.isclose(adapt.final, math.exp(log_bar), rel_tol=1e-12)


def test_the_surrogates_written_out_gradient_equals_autograd() -> None:
    X = torch.rand(12, 3, dtype=torch.float64)
    y = X.sum(1).sin()
    model = HMCBNN(0.01, widths=(7, 5), burn_in=2, samples=2, thin=1, pretrain_steps=2,
                   dtype=torch.float64)
    model.fit(X, y, torch.tensor([[0.0, 1.0]] * 3, dtype=torch.float64))
    theta = torch.randn(flatten_size(model), generator=torch.Generator().manual_seed(3),
                        dtype=torch.float64)
    value, grad = model._value_and_grad(theta)
    expected_value, expected_grad = autograd_value_and_grad(model._log_density)(theta)
    torch.testing.assert_close(value, expected_value, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def flatten_size(model: HMCBNN) -> int:
    return sum(p[0].numel() for p in model.shapes)
