"""Property-based: random arguments to the test functions and function tasks, and random
points, either work (one value per point) or raise a documented exception naming the
argument."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.tasks import FunctionTask, IllConditionedQuadratic, Rastrigin, Rosenbrock
from tests.contract import PROPERTIES, assert_clear_error

F64 = torch.float64
VALUES = st.one_of(
    st.sampled_from([0, 1, 2, 3, -1, 0.5, 1.0, 1e3, math.nan, math.inf, -math.inf, "1", None,
                     True, 2**70]),
    st.floats(-100, 100),
)
CONSTRUCTORS = {
    Rosenbrock: ["dim", "a", "b"],
    Rastrigin: ["dim", "amplitude"],
    IllConditionedQuadratic: ["dim", "condition", "seed"],
}


@PROPERTIES
@given(cls=st.sampled_from(list(CONSTRUCTORS)), data=st.data(),
       shape=st.lists(st.integers(0, 4), max_size=3).map(tuple))
def test_functions_work_or_name_the_argument(cls, data, shape) -> None:
    names = data.draw(st.lists(st.sampled_from(CONSTRUCTORS[cls]), max_size=3, unique=True))
    kwargs = {n: data.draw(VALUES, label=n) for n in names}
    if isinstance(kwargs.get("dim"), int) and kwargs["dim"] > 50:
        kwargs["dim"] = 50  # a large, valid dimension: nothing more to learn, only slower
    try:
        f = cls(**kwargs)
    except Exception as error:
        assert_clear_error(error, *kwargs)
        return
    x = torch.zeros(shape, dtype=F64)
    try:
        value = f(x)
    except Exception as error:
        assert_clear_error(error, "x")
        assert not shape or shape[-1] != f.dim
        return
    assert shape and shape[-1] == f.dim and value.shape == shape[:-1]


@PROPERTIES
@given(start=st.lists(VALUES, max_size=3), noise=VALUES, jitter=VALUES, seed=VALUES)
def test_function_tasks_work_or_name_the_argument(start, noise, jitter, seed) -> None:
    try:
        task = FunctionTask("t", Rastrigin(dim=2), start=start, noise=noise, jitter=jitter)
    except Exception as error:
        assert_clear_error(error, "start", "noise", "jitter")
        return
    try:
        problem = task.build(seed)
    except Exception as error:
        assert_clear_error(error, "seed")
        return
    assert torch.isfinite(problem.train_loss())
