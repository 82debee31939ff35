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
        assert opt.param_groups[1]["lr"] == 5.0 * opt.param_groups[0]["lr"]  # its own base
        opt.step()
        sched.step()
    assert seen == [schedule(t) for t in range(12)]  # the group at the optimizer's lr: exact
    state = sched.state_dict()
    assert "schedule" not in state
    twin = torch.optim.SGD([{"params": [w]}, {"params": [b], "lr": 5.0}], lr=1.0)
    resumed = ScheduleLR(twin, schedule)
    resumed.load_state_dict(state)
    twin.step()
    resumed.step()
    opt.step()
    sched.step()
    assert [g["lr"] for g in twin.param_groups] == [g["lr"] for g in opt.param_groups]
    assert math.isclose(opt.param_groups[0]["lr"], schedule(13))


def test_schedule_lr_keeps_each_groups_base_lr_as_torchs_lambda_lr_does() -> None:
    """Two groups at [1e-2, 1e-3] under a schedule of the optimizer's lr (1e-2): the lrs are
    torch's ``LambdaLR`` with the schedule as a factor of each group's base lr (the issue's
    [1e-2, 1e-3] became [3e-3, 3e-3] before)."""
    def groups() -> list[dict]:
        return [{"params": [torch.nn.Parameter(torch.zeros(2))]},
                {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-3}]

    schedule = Warmup(Cosine(3e-3, 20), 3)
    ours, theirs = torch.optim.AdamW(groups(), lr=1e-2), torch.optim.AdamW(groups(), lr=1e-2)
    sched = ScheduleLR(ours, schedule)
    reference = torch.optim.lr_scheduler.LambdaLR(theirs, lambda t: schedule(t) / 1e-2)
    assert [g["lr"] for g in ours.param_groups] == pytest.approx([3e-3 / 4, 3e-4 / 4])
    for _ in range(25):
        # the same products, associated differently: equal to float64 rounding
        assert [g["lr"] for g in ours.param_groups] == pytest.approx(
            [g["lr"] for g in theirs.param_groups], rel=1e-12)
        assert sched.base_lrs == reference.base_lrs == [1e-2, 1e-3]
        for opt, scheduler in ((ours, sched), (theirs, reference)):
            opt.step()
            scheduler.step()
