"""Gauss-Newton-Bartlett: label resampling and convergence to the Gauss-Newton diagonal."""

from __future__ import annotations

import torch

from stochopt.curvature import gauss_newton_bartlett, sample_labels


def test_sampled_labels_follow_the_softmax() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20_000, 3)
    labels = sample_labels(logits, torch.Generator().manual_seed(0))
    frequency = torch.bincount(labels, minlength=3).double() / 20_000
    torch.testing.assert_close(frequency, torch.softmax(logits[0].double(), 0), atol=0.01,
                               rtol=0.0)
    again = sample_labels(logits, torch.Generator().manual_seed(0))
    assert torch.equal(labels, again)


def test_mean_estimate_is_the_gauss_newton_diagonal_and_non_negative() -> None:
    # softmax regression, logits = X W: the Gauss-Newton matrix of the mean cross-entropy has
    # diagonal GN[i, c] = mean_b x_bi^2 p_bc (1 - p_bc)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    W = (0.5 * torch.randn(5, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    p = torch.softmax(X @ W.detach(), dim=1)  # (B, V)
    exact = (X**2).T @ (p * (1 - p)) / 16  # (5, 4)
    sampler = torch.Generator().manual_seed(1)
    total = torch.zeros_like(exact)
    for _ in range(1000):
        (estimate,) = gauss_newton_bartlett(X @ W, [W], generator=sampler, retain_graph=False)
        assert (estimate >= 0).all()
        total += estimate
    error = (total / 1000 - exact).norm() / exact.norm()
    assert error < 0.05, f"relative error {error:.3f}"
