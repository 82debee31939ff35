"""diffGrad: hand-computed steps of the v2 rule, and the v1 aliasing bug stays fixed."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.optim import DiffGrad


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_first_steps_by_hand() -> None:
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-3, 0.01
    theta = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    opt = DiffGrad([theta], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    m = v = g_prev = 0.0
    expected = 2.0
    for t, raw in enumerate((0.5, -1.5, -1.4), start=1):
        theta.grad = torch.tensor([raw], dtype=torch.float64)
        opt.step()
        g = raw + wd * expected
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        xi = _sigmoid(abs(g_prev - g))
        g_prev = g
        expected -= lr * math.sqrt(1 - b2**t) / (1 - b1**t) * xi * m / (math.sqrt(v) + eps)
        assert theta.item() == pytest.approx(expected, rel=1e-14)
        assert opt.state[theta]["previous_grad"].item() == pytest.approx(g, rel=1e-15)


def test_friction_is_not_the_constant_one_half_of_the_v1_bug() -> None:
    # First step from g_prev = 0 with g = 2: m/sqrt(v) = (1-b1)/sqrt(1-b2) * sign(g), so with
    # eps = 0 the step is exactly lr * sigmoid(2) = 0.0881; v1's aliasing would give lr / 2.
    theta = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    opt = DiffGrad([theta], lr=0.1, eps=0.0)
    theta.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    assert -theta.item() == pytest.approx(0.1 * _sigmoid(2.0), rel=1e-12)
    # an unchanged gradient gives |g_prev - g| = 0, hence friction sigmoid(0) = 1/2
    before = theta.item()
    theta.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    m, v = opt.state[theta]["exp_avg"].item(), opt.state[theta]["exp_avg_sq"].item()
    step = 0.1 * math.sqrt(1 - 0.999**2) / (1 - 0.9**2) * 0.5 * m / math.sqrt(v)
    assert before - theta.item() == pytest.approx(step, rel=1e-12)
