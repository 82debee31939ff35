"""Closed-form schedules and the torch adapter."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.schedules import (
    Constant,
    Cosine,
    InverseSqrt,
    InverseTime,
    LinearDecay,
    ScheduleLR,
    StepDecay,
    Warmup,
)


def test_values_by_hand() -> None:
    assert [LinearDecay(1.0, 4)(t) for t in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    cosine = Cosine(2.0, 4, final=0.5)
    assert cosine(0) == 2.0 and cosine(4) == 0.5 and cosine(2) == pytest.approx(1.25)
    assert [StepDecay(1.0, [2, 4], 0.5)(t) for t in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert [Warmup(Constant(0.3), 2)(t) for t in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert InverseSqrt(1.0, horizon=100)(7) == 0.1
    assert InverseSqrt(1.0)(3) == 0.5 and InverseSqrt(1.0, cap=0.2)(0) == 0.2
    assert InverseTime(mu=2.0)(1) == 0.25 and InverseTime(mu=2.0, cap=0.1)(0) == 0.1
    with pytest.raises(ValueError, match="total_steps must be a positive integer, got 0"):
        LinearDecay(1.0, 0)


def test_schedule_lr_sets_every_group_and_resumes_exactly() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w]}, {"params": [b], "lr": 5.0}], lr=1.0)
    schedule = Warmup(Cosine(0.1, 20), 5)
    sched = ScheduleLR(opt, schedule)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        assert opt.param_groups[1]["lr"] == opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    assert seen == pytest.approx([schedule(t) for t in range(12)])
    state = sched.state_dict()
    assert "schedule" not in state
    twin = torch.optim.SGD([w], lr=1.0)
    resumed = ScheduleLR(twin, schedule)
    resumed.load_state_dict(state)
    twin.step()
    resumed.step()
    opt.step()
    sched.step()
    assert twin.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert math.isclose(opt.param_groups[0]["lr"], schedule(13))
