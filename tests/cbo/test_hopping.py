"""Consensus hopping: one hop by hand with the same draws; the hop against the proximal step
prox_{tau f}(x), tau = alpha sigma^2 (in closed form on a quadratic with many samples, and in
the many-sample limit on a nonconvex Rastrigin as alpha grows); argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.cbo import ConsensusHopping, consensus_point, gaussian_particles


def _f(x: torch.Tensor) -> torch.Tensor:
    return (x**2).sum(-1) + torch.cos(2 * x[..., 1])


def test_one_hop_by_hand() -> None:
    samples = [[[0.2, 1.0], [-1.0, 0.5], [0.7, -0.4], [1.5, 1.5]]]  # (M, N, d) = (1, 4, 2)
    alpha, sigma = 3.0, 0.6
    energy = [p[0] ** 2 + p[1] ** 2 + math.cos(2 * p[1]) for p in samples[0]]
    w = [math.exp(-alpha * (e - min(energy))) for e in energy]
    c = [sum(wi * p[k] for wi, p in zip(w, samples[0])) / sum(w) for k in range(2)]
    xi = torch.randn(1, 4, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = [[[c[k] + sigma * float(z[k]) for k in range(2)] for z in xi[0]]]
    method = ConsensusHopping(sigma=sigma, alpha=alpha)
    new, info = method.step(_f, torch.tensor(samples, dtype=torch.float64), 0,
                            torch.Generator().manual_seed(3))
    # a few float64 operations on O(1) numbers: agreement to a few ulps
    torch.testing.assert_close(info.consensus, torch.tensor([c], dtype=torch.float64),
                               rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(new, torch.tensor(expected, dtype=torch.float64), rtol=1e-14,
                               atol=1e-15)
    assert method.step_size(alpha) == pytest.approx(alpha * sigma**2, rel=1e-15)


@pytest.mark.parametrize("alpha", [0.3, 1.0, 3.0])
def test_hop_on_a_quadratic_is_the_proximal_step(alpha: float) -> None:
    # f(y) = y'Ay/2: the Gibbs-weighted N(x, tau/alpha I) is Gaussian with mean
    # prox_{tau f}(x) = (I + tau A)^{-1} x at every alpha; only the sampling error remains
    a = torch.tensor([1.0, 4.0], dtype=torch.float64)
    x, tau = torch.tensor([1.0, 1.0], dtype=torch.float64), 0.1
    prox = x / (1 + tau * a)  # (0.909, 0.714): a step of length 0.30

    def quadratic(y: torch.Tensor) -> torch.Tensor:
        return 0.5 * (a * y**2).sum(-1)

    sigma = math.sqrt(tau / alpha)
    method = ConsensusHopping(sigma=sigma, alpha=alpha)

    def hop(n: int, seed: int) -> torch.Tensor:
        samples = gaussian_particles(x, sigma, n, runs=8, seed=seed)  # 8 independent hops
        return method.evaluate(quadratic, samples, 0).consensus  # (8, 2)

    step, exact = hop(200_000, 0) - x, prox - x
    cosine = torch.nn.functional.cosine_similarity(step, exact.expand_as(step), dim=-1)
    # importance weights exp(-alpha f) over N(x, sigma^2): log-weight variance alpha tau
    # |grad f|^2 <= 5.1, so ESS >= N e^-5.1 ~ 1200; the tilted law's sd is <= 0.58/sqrt(1.1)
    # per coordinate at alpha = 0.3 (ESS ~ 1e5 there) and 0.17 at alpha = 3, so the error is
    # ~0.007 at worst against a step of 0.30 (measured <= 0.0035 over the 8 hops)
    assert (cosine > 0.999).all()
    assert ((step - exact).norm(dim=-1) < 0.015).all()
    # and the sampling error shrinks with N (mean over the 8 hops)
    coarse = (hop(1_000, 1) - prox).norm(dim=-1).mean()
    fine = (hop(200_000, 1) - prox).norm(dim=-1).mean()
    assert fine < coarse / 4  # sqrt(200) ~ 14 expected


A = 2.5  # Riedl et al.'s Rastrigin: v^2 + 2.5 (1 - cos 2 pi v), per coordinate


def _rastrigin(y: torch.Tensor) -> torch.Tensor:
    return y**2 + A * (1 - torch.cos(2 * math.pi * y))


def _prox(x: torch.Tensor, tau: float) -> torch.Tensor:
    """argmin_y f(y) + (y - x)^2 / (2 tau) per entry: the best point of a 1e-3 grid, then
    Newton steps."""
    grid = x.unsqueeze(-1) + torch.linspace(-4, 4, 8001, dtype=torch.float64)
    y = grid.gather(-1, (_rastrigin(grid) + (grid - x.unsqueeze(-1)) ** 2 / (2 * tau))
                    .argmin(-1, keepdim=True)).squeeze(-1)
    for _ in range(20):
        grad = 2 * y + 2 * math.pi * A * torch.sin(2 * math.pi * y) + (y - x) / tau
        hess = 2 + 4 * math.pi**2 * A * torch.cos(2 * math.pi * y) + 1 / tau
        y = y - grad / hess
    return y


def _hop_in_the_many_sample_limit(x: torch.Tensor, tau: float, alpha: float) -> torch.Tensor:
    """x_alpha of N(x, tau/alpha) itself (N -> infinity), by quadrature on a 1e-4 grid: the
    density times the Gibbs weight is exp(-alpha [f(y) + (y - x)^2 / (2 tau)])."""
    offsets = torch.arange(-4.0, 4.0 + 5e-5, 1e-4, dtype=torch.float64)
    grid = x.unsqueeze(-1) + offsets  # (P, G)
    energy = _rastrigin(grid) + offsets**2 / (2 * tau)
    return consensus_point(grid.unsqueeze(-1), energy, alpha).squeeze(-1)


@pytest.mark.parametrize("tau", [0.01, 0.05])
def test_hop_tends_to_the_proximal_step_as_alpha_grows(tau: float) -> None:
    x = torch.tensor([-2.3, -0.7, 0.4, 1.6, 2.8], dtype=torch.float64)
    exact = _prox(x, tau) - x
    errors = []
    for alpha in (10.0, 100.0, 1000.0):
        step = _hop_in_the_many_sample_limit(x, tau, alpha) - x
        errors.append(float(((step - exact).abs() / exact.abs()).max()))
    # Laplace principle: the relative error falls like 1/alpha (measured 3.9e-2, 3.7e-3,
    # 3.7e-4 at tau = 0.01; 1.5e-2, 1.2e-3, 1.2e-4 at 0.05); the quadrature's own error
    # (1e-4 grid, peak width >= 7e-4) is far smaller
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 2e-3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"ConsensusHopping: sigma must be in \(0, inf\), got 0"):
        ConsensusHopping(sigma=0.0)
    with pytest.raises(ValueError, match=r"ConsensusHopping: alpha must be in \[0, inf\), got -2"):
        ConsensusHopping(alpha=-2.0)
    with pytest.raises(TypeError, match=r"ConsensusHopping: alpha must be a real number"):
        ConsensusHopping(alpha="big")  # type: ignore[arg-type]
