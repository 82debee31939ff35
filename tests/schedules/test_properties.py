"""Property-based: random arguments to the schedules, ScheduleLR (construction, stepping,
``load_state_dict``) and refine either work, giving finite learning rates >= 0, or raise a
documented exception naming the argument, and leave the scheduler and optimizer unchanged."""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.schedules import (
    Constant,
    Cosine,
    InverseSqrt,
    InverseTime,
    LinearDecay,
    RefinedSchedule,
    ScheduleLR,
    StepDecay,
    Warmup,
    refine,
    scale_lr,
)
from tests.contract import PROPERTIES, assert_clear_error, assert_same, snapshot

VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-3, max_value=50),
    st.sampled_from([0, 1, 1e-320, 2**63, "1", None, True, [1, 2], (3, 5), "linear"]),
)
BUILDERS = {
    Constant: ("lr",), LinearDecay: ("peak", "total_steps"),
    Cosine: ("peak", "total_steps", "final"), StepDecay: ("peak", "milestones", "gamma"),
    InverseSqrt: ("eta", "horizon", "cap"), InverseTime: ("mu", "cap"),
    RefinedSchedule: ("shape", "peak"),
}


@PROPERTIES
@given(cls=st.sampled_from(list(BUILDERS)), data=st.data(),
       steps=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=4),
       warmup=st.one_of(st.integers(min_value=-2, max_value=20), st.just(1.5)))
def test_schedules_give_finite_rates_or_name_the_argument(cls, data, steps, warmup) -> None:
    names = BUILDERS[cls]
    required = names[:2] if cls in (LinearDecay, Cosine, StepDecay) else names[:1]
    chosen = [n for n in names if n in required or data.draw(st.booleans(), label=n)]
    kwargs = {name: data.draw(VALUES, label=name) for name in chosen}
    try:
        schedule = cls(**kwargs)
    except Exception as error:
        assert_clear_error(error, *chosen)
        return
    try:
        schedule = Warmup(schedule, warmup)
    except Exception as error:
        assert_clear_error(error, "steps")
    for step in steps:
        value = schedule(step)
        assert isinstance(value, float | int) and math.isfinite(value) and value >= 0, value


@PROPERTIES
@given(values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                 st.sampled_from(["x", None, -1])), max_size=6))
def test_schedule_lr_steps_or_changes_nothing(values: list[Any]) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    schedule = lambda t: values[t] if t < len(values) else 0.1  # noqa: E731
    try:
        sched = ScheduleLR(opt, schedule)
    except Exception as error:
        assert_clear_error(error, "schedule(0)")
        assert "initial_lr" not in opt.param_groups[0]
        return
    for _ in range(3):
        opt.step()  # no gradients: a no-op, in the order torch expects
        before = snapshot(opt), sched.state_dict()
        try:
            sched.step()
        except Exception as error:
            assert_clear_error(error, "schedule(")
            assert_same(before, (snapshot(opt), sched.state_dict()))
        lr = opt.param_groups[0]["lr"]
        assert math.isfinite(lr) and lr >= 0


STATE_VALUES = st.one_of(st.integers(min_value=-3, max_value=5), st.floats(allow_nan=True),
                         st.sampled_from(["1", None, [0.1]]))


@PROPERTIES
@given(edits=st.dictionaries(st.sampled_from(["last_epoch", "_step_count", "base_lrs",
                                              "schedule", "_last_lr"]),
                             STATE_VALUES, max_size=2),
       drop=st.sampled_from([None, "last_epoch", "_step_count"]))
def test_schedule_lr_load_state_dict_works_or_changes_nothing(edits, drop) -> None:
    saved = ScheduleLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0),
                       Constant(0.1)).state_dict()
    saved.update(edits)
    saved.pop(drop, None)
    sched = ScheduleLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0),
                       Cosine(1.0, 10))
    schedule, before = sched.schedule, sched.state_dict()
    try:
        sched.load_state_dict(saved)
    except Exception as error:
        assert_clear_error(error, "last_epoch", "_step_count", "schedule")
        assert_same(before, sched.state_dict())
    assert sched.schedule is schedule


@PROPERTIES
@given(norms=st.one_of(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30),
                       st.sampled_from([3, "norms", None, [[1.0, 2.0]], [1.0, "x"]])),
       method=st.sampled_from(["sgd", "adam", "lion"]),
       tau=st.one_of(st.floats(min_value=-1, max_value=2), st.just(math.nan)),
       resolution=st.one_of(st.integers(min_value=-1, max_value=300), st.just(10.0)),
       peak=st.floats(allow_nan=True, allow_infinity=True))
def test_refine_works_or_names_the_argument(norms, method, tau, resolution, peak) -> None:
    try:
        schedule = refine(norms, method=method, tau=tau, resolution=resolution, peak=peak)
    except Exception as error:
        assert_clear_error(error, "norms", "method", "tau", "resolution", "peak")
        return
    assert len(schedule.shape) == len(norms)
    assert all(0 <= v <= 1 for v in schedule.shape) and math.isfinite(schedule(0))


@PROPERTIES
@given(lr=VALUES, from_batch=VALUES, to_batch=VALUES,
       rule=st.sampled_from(["linear", "sqrt", "cube"]))
def test_scale_lr_works_or_names_the_argument(lr, from_batch, to_batch, rule) -> None:
    try:
        value = scale_lr(lr, from_batch, to_batch, rule)
    except Exception as error:
        assert_clear_error(error, "lr", "from_batch", "to_batch", "rule")
    else:
        assert math.isfinite(value) and value >= 0
