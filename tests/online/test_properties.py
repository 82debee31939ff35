"""Property-based: corrupted state dicts and random gradients either work or raise a
documented exception naming what is wrong, and never leave the learner changed; random
arguments to the domains, step rules and environments work or name the argument."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.online import (
    Ball,
    InverseTimeStep,
    OptimisticFTRL,
    OptimisticOMD,
    OptimisticONS,
    SEAQuadratic,
    Simplex,
    VariationStep,
)
from tests.contract import PROPERTIES, assert_clear_error, assert_same

F64 = torch.float64
NUMBERS = st.sampled_from([0.0, -1.0, 0.5, 1e300, -1e300, math.nan, math.inf, 2.0])
VALUES = st.one_of(NUMBERS, st.sampled_from([0, 3, -2, "1", None, True, [0.5]]))


def _learner(kind: int):
    x0 = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=F64)  # two runs
    if kind == 0:
        return OptimisticOMD(Simplex(3), x0, lr=VariationStep(1.5, 1.0))
    if kind == 1:
        return OptimisticFTRL(Simplex(3), x0, lr=InverseTimeStep(1.0))
    return OptimisticONS(Ball(3), 0.5 * x0, beta=0.5)


def _corrupt(value, how: str, number: float):
    if how == "fill":
        return torch.full_like(value, number) if isinstance(value, torch.Tensor) else number
    if how == "dtype":
        return value.float() if isinstance(value, torch.Tensor) else float(value) + 0.5
    if how == "shape":
        return value[..., :-1] if isinstance(value, torch.Tensor) and value.ndim else [value]
    return value.tolist() if isinstance(value, torch.Tensor) else str(value)


@PROPERTIES
@given(kind=st.integers(0, 2), data=st.data())
def test_corrupted_state_dicts_are_refused_without_change(kind, data) -> None:
    learner = _learner(kind)
    learner.update(torch.tensor([[0.3, -0.1, 0.2], [0.0, 0.5, -0.5]], dtype=F64))
    state = learner.state_dict()
    for key in data.draw(st.lists(st.sampled_from(sorted(state)), min_size=1, max_size=3,
                                         unique=True)):
        how = data.draw(st.sampled_from(["fill", "dtype", "shape", "type", "drop"]))
        if how == "drop":
            state.pop(key, None)
        elif key in state:
            state[key] = _corrupt(state[key], how, data.draw(NUMBERS))
    before = learner.state_dict()
    try:
        learner.load_state_dict(state)
    except Exception as error:
        assert_clear_error(error, "keys", *state)
        assert_same(before, learner.state_dict(), "a refused state dict changed the learner")


@PROPERTIES
@given(kind=st.integers(0, 2), entries=st.lists(NUMBERS, min_size=6, max_size=6),
       dtype=st.sampled_from([F64, torch.float32]))
def test_random_gradients_work_or_change_nothing(kind, entries, dtype) -> None:
    learner = _learner(kind)
    gradient = torch.tensor(entries, dtype=dtype).reshape(2, 3)
    before = learner.state_dict()
    try:
        learner.update(gradient)
    except Exception as error:
        assert_clear_error(error, "gradient")
        assert_same(before, learner.state_dict(), "a refused gradient changed the learner")
        return
    assert all(bool(torch.isfinite(v).all()) for k, v in learner.state_dict().items()
               if k != "t")
    assert torch.isfinite(learner.play()).all()


@PROPERTIES
@given(data=st.data())
def test_step_rules_and_environments_work_or_name_the_argument(data) -> None:
    names = ["diameter", "gradient_bound", "delta"]
    kwargs = {n: data.draw(VALUES, label=n) for n in names}
    try:
        rule = VariationStep(**kwargs)
    except Exception as error:
        assert_clear_error(error, *names, "first step")
    else:
        assert math.isfinite(float(rule(1, torch.zeros((), dtype=F64))))
    env_names = ["radius", "noise", "amplitude", "period", "seed", "runs"]
    chosen = data.draw(st.lists(st.sampled_from(env_names), max_size=3, unique=True))
    env_kwargs = {n: data.draw(VALUES, label=n) for n in chosen}
    try:
        SEAQuadratic(2, rounds=3, **env_kwargs)
    except Exception as error:
        assert_clear_error(error, *env_kwargs)
