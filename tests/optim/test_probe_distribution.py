"""The probe ``distribution`` of the Hutchinson curvature optimizers is the one asked for.

On a quadratic with a diagonal Hessian ``diag(a)`` the Hutchinson product is
``z * (H z) = a * z**2`` coordinate by coordinate, so the first curvature state, divided by
``a``, is a sample of ``z**2`` with one independent draw per coordinate: exactly 1 everywhere
for Rademacher probes, chi-squared with one degree of freedom for Gaussian ones. An
optimizer that ignored ``distribution`` (always Rademacher, always Gaussian, or another law
of unit variance) fails one of the two tests.
"""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.optim import AdaHessian, SophiaH

#: coordinates, each an independent draw of z**2
N = 20_000
#: Kolmogorov-Smirnov bound for Gaussian probes: sqrt(ln(2 / alpha) / (2 N)) = 0.019 for
#: alpha = 1e-6 (the Dvoretzky-Kiefer-Wolfowitz inequality), so a correct implementation fails
#: with probability below 1e-6 whatever the seed. Rademacher probes give 0.68 (every z**2 is
#: 1), uniform probes of unit variance 0.11: both far above it.
KS_BOUND = 0.02
#: the mean of N draws of z**2 has standard deviation sqrt(2 / N) = 0.01: 5 of them
MEAN_BOUND = 5 * math.sqrt(2 / N)


def chi2_1_ks_distance(samples: torch.Tensor) -> float:
    r"""Kolmogorov-Smirnov distance between the empirical law of ``samples`` (1-d) and
    chi-squared with one degree of freedom, the law of :math:`z^2` for :math:`z \sim N(0,1)`,
    whose CDF is :math:`\operatorname{erf}(\sqrt{x/2})`."""
    x = samples.double().sort().values
    n = x.numel()
    cdf = torch.special.erf((x / 2).sqrt())
    rank = torch.arange(1, n + 1, dtype=torch.float64)
    return max(float((rank / n - cdf).max()), float((cdf - (rank - 1) / n).max()))


def _quadratic() -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` (positive, not constant) and ``x`` for ``f(x) = sum(a * x**2) / 2``."""
    a = torch.linspace(0.5, 2.0, N, dtype=torch.float64)
    x = torch.linspace(-1.0, 1.0, N, dtype=torch.float64).requires_grad_()
    return a, x


def _sophia_h_squared_probes(distribution: str) -> torch.Tensor:
    """``z**2`` per coordinate, read from SophiaH's first curvature state
    ``h_1 = (1 - beta2) * z * (H z)`` (the paper's EMA from ``h_0 = 0``)."""
    a, x = _quadratic()
    opt = SophiaH([x], lr=1e-3, distribution=distribution, seed=3)
    assert opt.curvature_due
    opt.backward(0.5 * (a * x * x).sum())
    opt.step()
    beta2 = opt.param_groups[0]["betas"][1]
    return opt.state[x]["hessian"] / (1 - beta2) / a


def _adahessian_squared_probes(distribution: str) -> torch.Tensor:
    """``z**2`` per coordinate, read from AdaHessian's first state
    ``v_1 = (1 - beta2) |z * (H z)|**2``."""
    a, x = _quadratic()
    opt = AdaHessian([x], distribution=distribution, seed=3)
    opt.backward(0.5 * (a * x * x).sum())
    opt.step()
    beta2 = opt.param_groups[0]["betas"][1]
    return (opt.state[x]["exp_hessian_diag_sq"] / (1 - beta2)).sqrt() / a


READERS = {"SophiaH": _sophia_h_squared_probes, "AdaHessian": _adahessian_squared_probes}


@pytest.mark.parametrize("optimizer", READERS)
def test_rademacher_probes_give_the_exact_diagonal(optimizer: str) -> None:
    z2 = READERS[optimizer]("rademacher")
    torch.testing.assert_close(z2, torch.ones_like(z2), rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("optimizer", READERS)
def test_gaussian_probes_are_standard_normal(optimizer: str) -> None:
    z2 = READERS[optimizer]("gaussian")
    assert abs(float(z2.mean()) - 1.0) < MEAN_BOUND  # E[z z^T] = I: unit variance
    assert chi2_1_ks_distance(z2) < KS_BOUND
