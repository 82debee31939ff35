"""Power iteration, Lanczos and stochastic Lanczos quadrature on matrices with known spectra."""

from __future__ import annotations

import pytest
import torch

from stochopt.curvature import lanczos, power_iteration, spectral_density


def _matrix(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(seed)))
    return q @ torch.diag(eigenvalues) @ q.T


def test_power_iteration_finds_the_top_eigenvalue() -> None:
    A = _matrix(torch.linspace(0.5, 10.0, 40, dtype=torch.float64))
    value, vector = power_iteration(lambda v: A @ v, 40, generator=torch.Generator().manual_seed(1),
                                    iterations=2000, tol=1e-12)
    assert value == pytest.approx(10.0, rel=1e-6)
    torch.testing.assert_close(A @ vector, value * vector, atol=1e-3, rtol=0.0)


def test_lanczos_recovers_the_extreme_eigenvalues() -> None:
    eigenvalues = torch.cat([torch.tensor([-3.0, 50.0], dtype=torch.float64),
                             torch.linspace(0.0, 5.0, 98, dtype=torch.float64)])
    A = _matrix(eigenvalues)
    result = lanczos(lambda v: A @ v, 100, 40, generator=torch.Generator().manual_seed(2))
    ritz, weights = result.ritz()
    assert ritz[0].item() == pytest.approx(-3.0, rel=1e-8)
    assert ritz[-1].item() == pytest.approx(50.0, rel=1e-8)
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert result.alpha.shape == (40,) and result.beta.shape == (39,)


def test_lanczos_stops_when_the_krylov_space_is_exhausted() -> None:
    A = _matrix(torch.tensor([1.0, 1.0, 2.0, 2.0, 7.0, 7.0], dtype=torch.float64))
    result = lanczos(lambda v: A @ v, 6, 6, generator=torch.Generator().manual_seed(0))
    assert len(result.alpha) == 3  # three distinct eigenvalues
    torch.testing.assert_close(result.ritz()[0], torch.tensor([1.0, 2.0, 7.0],
                                                              dtype=torch.float64))


def test_slq_density_matches_the_spectrum_moments() -> None:
    eigenvalues = torch.linspace(1.0, 9.0, 60, dtype=torch.float64)
    A = _matrix(eigenvalues, seed=3)
    density = spectral_density(lambda v: A @ v, 60, 20, vectors=30,
                               generator=torch.Generator().manual_seed(4))
    assert density.weights.sum().item() == pytest.approx(1.0, abs=1e-10)
    mean = (density.nodes * density.weights).sum().item()
    assert mean == pytest.approx(eigenvalues.mean().item(), rel=0.05)
    grid = torch.linspace(-5.0, 15.0, 2001, dtype=torch.float64)
    integral = torch.trapezoid(density.smoothed(grid, width=0.3), grid).item()
    assert integral == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match=r"steps must be in \[1, n=60\], got 61"):
        lanczos(lambda v: A @ v, 60, 61, generator=torch.Generator())
