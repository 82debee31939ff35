"""LR/batch scaling rules and the SLQ heavy-ball learner."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.schedules import SLQLearner, heavy_ball, scale_lr


def test_scaling_rules() -> None:
    assert scale_lr(0.1, 32, 128) == pytest.approx(0.4)
    assert scale_lr(0.1, 32, 128, rule="sqrt") == pytest.approx(0.2)
    assert scale_lr(0.1, 128, 32, rule="sqrt") == pytest.approx(0.05)
    with pytest.raises(ValueError, match="rule must be one of"):
        scale_lr(0.1, 1, 2, rule="cubic")
    with pytest.raises(ValueError, match="to_batch must be a positive integer, got 0"):
        scale_lr(0.1, 1, 0)


def test_heavy_ball_formula() -> None:
    params = heavy_ball(1.0, 100.0)
    assert params.lr == pytest.approx(4 / 11**2)
    assert params.momentum == pytest.approx((9 / 11) ** 2)


def test_learner_recovers_the_optimal_heavy_ball_on_a_known_spectrum() -> None:
    eigenvalues = torch.linspace(0.5, 50.0, 12, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(0)))
    A = q @ torch.diag(eigenvalues) @ q.T
    x = torch.nn.Parameter(torch.ones(12, dtype=torch.float64))
    opt = torch.optim.SGD([x], lr=1.0, momentum=0.0)
    learner = SLQLearner(opt, [x], period=50, lanczos_steps=12, min_ratio=1e-6)
    loss = lambda: 0.5 * x @ A @ x  # noqa: E731
    found = learner.maybe_update(loss)
    expected = heavy_ball(0.5, 50.0)
    assert found.lr == pytest.approx(expected.lr, rel=1e-8)
    assert found.momentum == pytest.approx(expected.momentum, rel=1e-8)
    assert opt.param_groups[0]["lr"] == found.lr
    # with those parameters heavy ball contracts at rate (sqrt(k)-1)/(sqrt(k)+1) per step, up
    # to a factor linear in the step count; gradient descent at 1/lambda_max would need ~2300
    for _ in range(100):
        opt.zero_grad()
        loss().backward()
        opt.step()
        assert learner.maybe_update(loss) is None or len(learner.history) <= 5
    rate = (math.sqrt(100) - 1) / (math.sqrt(100) + 1)
    assert x.detach().norm() < 100 * rate**100 * math.sqrt(12)
