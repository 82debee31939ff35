"""Bad input to stochopt.schedules: schedules check their arguments at construction (so none
returns an infinite or NaN learning rate) and their step when called; ScheduleLR, SLQLearner
and GradNormRecorder change nothing when a call raises."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from stochopt.schedules import (
    Constant,
    Cosine,
    GradNormRecorder,
    InverseSqrt,
    InverseTime,
    LinearDecay,
    RefinedSchedule,
    ScheduleLR,
    SLQLearner,
    StepDecay,
    Warmup,
    heavy_ball,
    refine,
    scale_lr,
)
from tests.contract import assert_same, assert_unchanged, raises_clearly, snapshot


@pytest.mark.parametrize(("build", "kind", "match"), [
    (lambda: Constant(math.inf), ValueError, r"Constant: lr must be in \[0, inf\), got inf"),
    (lambda: Constant("0.1"), TypeError, "Constant: lr must be a real number"),
    (lambda: Constant(-0.1), ValueError, "Constant: lr must be in"),
    (lambda: LinearDecay(math.nan, 10), ValueError, "LinearDecay: peak must be in"),
    (lambda: LinearDecay(1.0, 0), ValueError, "LinearDecay: total_steps must be a positive"),
    (lambda: LinearDecay(1.0, 1.5), TypeError, "LinearDecay: total_steps must be a positive"),
    (lambda: Cosine(1.0, 10, final=math.inf), ValueError, "Cosine: final must be in"),
    (lambda: Cosine(1.0, -3), ValueError, "Cosine: total_steps must be a positive integer"),
    (lambda: StepDecay(1.0, "12"), TypeError, "StepDecay: milestones must be a list"),
    (lambda: StepDecay(1.0, [2, -1]), ValueError, r"StepDecay: milestones\[1\] must be >= 0"),
    (lambda: StepDecay(1.0, [2.5]), TypeError, r"StepDecay: milestones\[0\] must be an integer"),
    (lambda: StepDecay(1.0, [2], gamma=math.inf), ValueError, "StepDecay: gamma must be in"),
    (lambda: StepDecay(1e300, [1, 2], gamma=1e10), ValueError,
     r"StepDecay: peak \* gamma\*\*len\(milestones\) must be finite"),
    (lambda: StepDecay(1.0, [1, 2], gamma=1e300), ValueError, "must be finite"),
    (lambda: RefinedSchedule((1e300, 0.5), peak=1e10), ValueError,
     r"RefinedSchedule: peak \* max\(shape\) must be finite"),
    (lambda: InverseSqrt(math.inf), ValueError, "InverseSqrt: eta must be in"),
    (lambda: InverseSqrt(1.0, horizon=0), ValueError, "InverseSqrt: horizon must be a positive"),
    (lambda: InverseSqrt(1.0, cap=0.0), ValueError, r"InverseSqrt: cap must be in \(0, inf\]"),
    (lambda: InverseTime(0.0), ValueError, r"InverseTime: mu must be in \(0, inf\)"),
    (lambda: InverseTime(1e-320), ValueError, "InverseTime: mu must be large enough"),
    (lambda: Warmup(Constant(1.0), -3), ValueError, "Warmup: steps must be >= 0"),
    (lambda: Warmup(Constant(1.0), 1.5), TypeError, "Warmup: steps must be an integer"),
    (lambda: Warmup(3, 2), TypeError, "Warmup: schedule must be a callable"),
    (lambda: RefinedSchedule((1.0, math.nan)), ValueError, r"RefinedSchedule: shape\[1\]"),
    (lambda: RefinedSchedule((1.0,), peak=-1.0), ValueError, "RefinedSchedule: peak"),
    (lambda: RefinedSchedule(3), TypeError, "RefinedSchedule: shape must be a sequence"),
])
def test_schedules_refuse_bad_arguments(build, kind, match) -> None:
    with pytest.raises(kind, match=match):
        build()


@pytest.mark.parametrize("schedule", [
    Constant(0.1), LinearDecay(1.0, 4), Cosine(1.0, 4), StepDecay(1.0, [2]), InverseSqrt(1.0),
    InverseTime(1.0), Warmup(Constant(1.0), 2), RefinedSchedule((1.0, 0.5)),
], ids=lambda s: type(s).__name__)
def test_schedules_refuse_bad_steps(schedule) -> None:
    with raises_clearly(match="step must be an integer >= 0, got -1"):
        schedule(-1)
    with raises_clearly(match="step must be an integer >= 0, got 1.5"):
        schedule(1.5)
    assert math.isfinite(schedule(np.int64(3)))


def test_step_decay_keeps_its_milestones_as_a_tuple() -> None:
    schedule = StepDecay(1.0, [2, 4], 0.5)
    assert schedule.milestones == (2, 4) and hash(schedule) == hash(StepDecay(1.0, (2, 4), 0.5))


# ----------------------------------------------------------------------------- ScheduleLR
def _sgd() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5)


@pytest.mark.parametrize(("args", "names"), [
    ((3, Constant(0.1)), ("optimizer must be a torch.optim.Optimizer",)),
    (("opt", 0.1), ("schedule must be a callable",)),
    (("opt", Constant(0.1), 1.5), ("last_epoch must be an integer",)),
    (("opt", Constant(0.1), -2), ("last_epoch must be >= -1",)),
    (("opt", Constant(0.1), 5), ("have no 'initial_lr'",)),
    (("opt", lambda t: math.inf), ("schedule(0) must be a finite learning rate",)),
    (("opt", lambda t: -1.0), ("schedule(0) must be a finite learning rate",)),
    (("opt", lambda t: "fast"), ("schedule(0) must be a finite learning rate",)),
])
def test_schedule_lr_refuses_bad_arguments_and_leaves_the_optimizer(args, names) -> None:
    opt = _sgd()
    args = tuple(opt if a == "opt" else a for a in args)
    assert_unchanged(lambda: ScheduleLR(*args), opt, names=names)
    assert "initial_lr" not in opt.param_groups[0]


def test_schedule_lr_step_that_raises_changes_nothing() -> None:
    opt = _sgd()
    sched = ScheduleLR(opt, lambda t: [0.1, 0.2, math.nan][t])
    opt.step()
    sched.step()
    before = snapshot(opt), sched.state_dict()
    with raises_clearly(match=r"schedule\(2\) must be a finite learning rate >= 0, got nan"):
        sched.step()
    assert_same(before, (snapshot(opt), sched.state_dict()))
    with raises_clearly(match="epoch must be an integer"):
        sched.step(1.5)


def test_schedule_lr_accepts_a_tensor_valued_schedule() -> None:
    opt = _sgd()
    ScheduleLR(opt, lambda t: torch.tensor(0.25, dtype=torch.float64))
    assert opt.param_groups[0]["lr"] == 0.25


@pytest.mark.parametrize(("edit", "names"), [
    (lambda d: d.pop("last_epoch"), ("no 'last_epoch'",)),
    (lambda d: d.update(last_epoch="3"), ("last_epoch",)),
    (lambda d: d.update(last_epoch=-5), ("last_epoch",)),
    (lambda d: d.update(_step_count=-1), ("_step_count",)),
    (lambda d: d.update(schedule=Constant(9.0)), ("holds schedule",)),
])
def test_schedule_lr_load_state_dict_checks_first(edit, names) -> None:
    opt = _sgd()
    sched = ScheduleLR(opt, Constant(0.1))
    saved = dict(sched.state_dict())
    edit(saved)
    twin = ScheduleLR(_sgd(), Cosine(1.0, 10))
    before = twin.state_dict(), twin.schedule
    with raises_clearly(*names):
        twin.load_state_dict(saved)
    assert_same(before[0], twin.state_dict())
    assert twin.schedule is before[1]
    with raises_clearly("state_dict must be a dict"):
        twin.load_state_dict([1, 2])


# --------------------------------------------------------------------------------- refine
@pytest.mark.parametrize(("kwargs", "kind", "match"), [
    ({"norms": 3}, TypeError, "norms must be at least two positive finite values, got 3"),
    ({"norms": "12"}, TypeError, "norms must be at least two"),
    ({"norms": [1.0, "x"]}, TypeError, "norms must be at least two"),
    ({"norms": [1.0, math.inf]}, ValueError, "norms must be at least two positive finite"),
    ({"norms": [[1.0, 2.0]]}, ValueError, "norms must be at least two"),
    ({"tau": -0.1}, ValueError, r"refine: tau must be in \[0, 1\]"),
    ({"tau": 5}, ValueError, r"refine: tau must be in \[0, 1\]"),
    ({"resolution": 1}, ValueError, "refine: resolution must be >= 2"),
    ({"resolution": 10.5}, TypeError, "refine: resolution must be an integer"),
    ({"peak": math.nan}, ValueError, "refine: peak must be in"),
    ({"norms": [1e-200, 1e-199]}, ValueError, "too far apart"),
])
def test_refine_refuses_bad_arguments(kwargs: dict[str, Any], kind: type, match: str) -> None:
    kwargs = {"norms": [1.0, 2.0, 3.0], **kwargs}
    with pytest.raises(kind, match=match):
        refine(**kwargs)


def test_refine_accepts_a_tensor_of_norms_and_a_wide_filter() -> None:
    schedule = refine(torch.linspace(2.0, 1.0, 50), tau=1.0, resolution=500)
    assert len(schedule.shape) == 50 and 0.9 < max(schedule.shape) <= 1.0


# ---------------------------------------------------------------------- scaling, learners
def test_scale_lr_and_heavy_ball_check_their_arguments() -> None:
    with raises_clearly(match="scale_lr: from_batch must be a positive integer, got True"):
        scale_lr(0.1, True, 2)
    with raises_clearly(match="scale_lr: lr must be a real number"):
        scale_lr("a", 1, 2)
    with raises_clearly(match="scale_lr: lr must be in"):
        scale_lr(math.inf, 1, 2)
    with raises_clearly(match=r"heavy_ball: lambda_max must be in \(0, inf\), got inf"):
        heavy_ball(1.0, math.inf)
    with raises_clearly(match="heavy_ball: lambda_min must be a real number"):
        heavy_ball("a", 1.0)


def _learner_setup() -> tuple[torch.nn.Parameter, torch.optim.SGD]:
    x = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    return x, torch.optim.SGD([x], lr=0.1, momentum=0.0)


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"period": 1.5}, ("period must be an integer",)),
    ({"period": 0}, ("period must be >= 1",)),
    ({"lanczos_steps": 0}, ("lanczos_steps",)),
    ({"min_ratio": 0.0}, ("min_ratio",)),
    ({"min_ratio": 2.0}, ("min_ratio",)),
    ({"generator": 3}, ("generator must be a torch.Generator",)),
    ({"params": []}, ("params must hold at least one tensor",)),
    ({"params": [torch.ones(2)]}, ("params[0] does not require grad",)),
    ({"params": [3.0]}, ("params[0] must be a tensor",)),
    ({"optimizer": "sgd"}, ("optimizer must be a torch.optim.Optimizer",)),
    ({"optimizer": "adam"}, ("have no 'lr' and 'momentum'",)),
])
def test_slq_learner_refuses_bad_arguments(kwargs: dict[str, Any], names) -> None:
    x, opt = _learner_setup()
    if kwargs.get("optimizer") == "adam":
        kwargs["optimizer"] = torch.optim.Adam([x])
    arguments = {"optimizer": opt, "params": [x], **kwargs}
    with raises_clearly(*names):
        SLQLearner(arguments.pop("optimizer"), arguments.pop("params"), **arguments)


@pytest.mark.parametrize(("loss_fn", "names"), [
    (lambda x: -(x**2).sum(), ("no positive eigenvalue",)),
    (lambda x: x**2, ("loss_fn() must be a scalar",)),
    (lambda x: (x**2).sum().detach(), ("loss_fn() has no gradient graph",)),
    (lambda x: (x**2).sum() * math.nan, ("operator returned a NaN",)),
])
def test_a_refresh_that_raises_counts_no_call_and_sets_no_group(loss_fn, names) -> None:
    x, opt = _learner_setup()
    learner = SLQLearner(opt, [x], period=2)
    assert_unchanged(lambda: learner.maybe_update(lambda: loss_fn(x)), opt, names=names)
    assert learner.calls == 0 and learner.history == [] and opt.param_groups[0]["lr"] == 0.1
    unused = torch.nn.Parameter(torch.ones(2))
    other = SLQLearner(torch.optim.SGD([x, unused], lr=0.1, momentum=0.0), [x, unused])
    with raises_clearly(r"does not depend on params[1]"):
        other.estimate(lambda: (x**2).sum())


def test_grad_norm_recorder_checks_params_and_gradients() -> None:
    with raises_clearly("params must hold at least one tensor that requires grad"):
        GradNormRecorder([torch.ones(2)])
    with raises_clearly(r"params[0] must be a tensor"):
        GradNormRecorder([3])
    with raises_clearly("params must be an iterable"):
        GradNormRecorder(3)
    w = torch.nn.Parameter(torch.ones(2))
    recorder = GradNormRecorder([w])
    assert_unchanged(recorder.record, recorder, names=("no parameter has a gradient",))
    w.grad = torch.tensor([math.nan, 1.0])
    recorder.record()  # recorded as it is; refine refuses it
    assert math.isnan(recorder.l2[0])
    with raises_clearly("norms must be at least two positive finite values"):
        refine(recorder.l2 * 2)


def test_schedule_lr_refuses_a_group_base_lr_without_a_ratio_to_the_optimizers() -> None:
    opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))]},
                           {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1}], lr=0.0)
    assert_unchanged(lambda: ScheduleLR(opt, Constant(0.1)), opt,
                     names=("param group 1 has base lr 0.1", "optimizer's lr is 0.0"))
    assert all("initial_lr" not in g for g in opt.param_groups)


@pytest.mark.parametrize(("scales", "names"), [
    ([1.0], ("lr_scales'] must be a list of 2 ratios",)),
    ("ab", ("lr_scales'] must be a list of 2 ratios",)),
    ([1.0, -0.5], ("lr_scales'][1]",)),
    ([1.0, math.nan], ("lr_scales'][1]",)),
])
def test_schedule_lr_load_state_dict_checks_the_lr_scales(scales, names) -> None:
    def two_groups() -> torch.optim.SGD:
        return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))]},
                                {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1}],
                               lr=0.5)

    saved = {**ScheduleLR(two_groups(), Constant(0.1)).state_dict(), "lr_scales": scales}
    twin = ScheduleLR(two_groups(), Cosine(1.0, 10))
    before = twin.state_dict()
    with raises_clearly(*names):
        twin.load_state_dict(saved)
    assert_same(before, twin.state_dict())
