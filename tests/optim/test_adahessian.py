"""AdaHessian: the official rule with real Hutchinson estimates, and kernel averaging."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.optim import AdaHessian


def test_first_steps_by_hand_on_a_diagonal_quadratic() -> None:
    # f = sum(a x^2 / 2): Rademacher probes give z * Hz = a exactly, so D = |a|
    a = torch.tensor([2.0, -0.5, 8.0], dtype=torch.float64)
    x = torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64, requires_grad=True)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-4
    opt = AdaHessian([x], lr=lr, betas=(b1, b2), eps=eps)
    expected = x.detach().clone()
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    for t in (1, 2):
        opt.zero_grad()
        opt.backward(0.5 * (a * x * x).sum())
        g = a * expected
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * a * a
        denom = v.sqrt() / math.sqrt(1 - b2**t) + eps
        expected = expected - lr * m / (1 - b1**t) / denom
        torch.testing.assert_close(x.detach(), expected, rtol=1e-14, atol=0.0)


def test_convolution_kernels_are_averaged_over_spatial_positions() -> None:
    kernel4 = torch.zeros(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    kernel3 = torch.zeros(2, 3, 4, dtype=torch.float64, requires_grad=True)
    matrix = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    params = [kernel4, kernel3, matrix]
    opt = AdaHessian(params, betas=(0.9, 0.5))
    estimates = [torch.arange(p.numel(), dtype=torch.float64).view(p.shape) - 3 for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    opt.set_curvature(estimates)
    opt.step()
    for p, d in zip(params, estimates):
        D = d.abs()
        if D.ndim >= 3:
            D = D.mean(dim=tuple(range(2, D.ndim)), keepdim=True).expand_as(D)
        torch.testing.assert_close(opt.state[p]["exp_hessian_diag_sq"], 0.5 * D * D)


def test_hessian_power_and_defaults() -> None:
    x = torch.zeros(1, requires_grad=True)
    opt = AdaHessian([x])
    group = opt.param_groups[0]
    assert (group["lr"], group["eps"], group["hessian_power"], group["update_period"]) == (
        0.15, 1e-4, 1.0, 1)
    with pytest.raises(ValueError, match=r"hessian_power must be in \[0, 1\], got 2"):
        AdaHessian([x], hessian_power=2)
