"""Hutchinson's diagonal estimator: probe distributions and convergence to diag(A)."""

from __future__ import annotations

import pytest
import torch

from stochopt.curvature import gaussian_like, hutchinson_diagonal, hvp, rademacher_like


def _spd(n: int = 12, seed: int = 0) -> torch.Tensor:
    """A symmetric matrix whose diagonal dominates its off-diagonal mass moderately."""
    g = torch.Generator().manual_seed(seed)
    b = torch.randn(n, n, generator=g, dtype=torch.float64) * 0.3
    return b @ b.T + torch.diag(torch.linspace(1.0, 5.0, n, dtype=torch.float64))


def _grads(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(A.shape[0], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(0.5 * x @ A @ x, [x], create_graph=True)
    return x, grad


def test_rademacher_probes_are_signs_with_mean_zero() -> None:
    z = rademacher_like(torch.empty(100_000), torch.Generator().manual_seed(0))
    assert set(z.unique().tolist()) == {-1.0, 1.0}
    assert abs(z.mean().item()) < 0.05
    z = gaussian_like(torch.empty(100_000, dtype=torch.float64), torch.Generator().manual_seed(0))
    assert abs(z.mean().item()) < 0.02 and abs(z.var().item() - 1) < 0.02


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_mean_of_1000_probes_is_within_5_percent_of_the_diagonal(distribution: str) -> None:
    A = _spd()
    x, grad = _grads(A)
    estimate = hutchinson_diagonal([grad], [x], generator=torch.Generator().manual_seed(1),
                                   distribution=distribution, samples=1000)[0]
    error = (estimate - torch.diagonal(A)).norm() / torch.diagonal(A).norm()
    assert error < 0.05, f"{distribution}: relative error {error:.3f}"


def test_a_diagonal_hessian_is_exact_with_one_rademacher_probe() -> None:
    A = torch.diag(torch.tensor([1.0, -2.0, 30.0], dtype=torch.float64))
    x, grad = _grads(A)
    estimate = hutchinson_diagonal([grad], [x], generator=torch.Generator().manual_seed(0))[0]
    assert torch.equal(estimate, torch.diagonal(A))


def test_same_generator_state_same_estimate_and_no_graph_kept() -> None:
    A = _spd()
    x, grad = _grads(A)
    first = hutchinson_diagonal([grad], [x], generator=torch.Generator().manual_seed(3),
                                retain_graph=True)
    again = hutchinson_diagonal([grad], [x], generator=torch.Generator().manual_seed(3))
    assert torch.equal(first[0], again[0])
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        hvp([grad], [x], [torch.ones_like(x)])  # the last call freed the graph


def test_samples_must_be_positive() -> None:
    A = _spd(3)
    x, grad = _grads(A)
    with pytest.raises(ValueError, match="samples must be >= 1, got 0"):
        hutchinson_diagonal([grad], [x], generator=torch.Generator(), samples=0)
