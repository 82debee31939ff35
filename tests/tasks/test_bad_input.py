"""Bad input to the tasks: test functions given points of the wrong dimension (refused, never
reshaped), bad constructor arguments, unknown task names, bad seeds and batch sizes."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.errors import UnsupportedError
from stochopt.tasks import (
    TASKS,
    Beale,
    FunctionTask,
    IllConditionedQuadratic,
    Metric,
    Rastrigin,
    Rosenbrock,
    get_task,
)
from tests.contract import raises_clearly

F64 = torch.float64
FUNCTIONS = [Rosenbrock(), Rosenbrock(dim=4), Beale(), Rastrigin(dim=4),
             IllConditionedQuadratic(dim=4)]


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f"{f.name}-{f.dim}")
@pytest.mark.parametrize("shape", [(3,), (2, 10, 3), (5,), ()])
def test_points_of_the_wrong_dimension_are_refused(f, shape) -> None:
    x = torch.zeros(shape, dtype=F64)
    if shape and shape[-1] == f.dim:
        return
    with raises_clearly("x", match=rf"\(\.\.\., {f.dim}\)"):
        f(x)


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f"{f.name}-{f.dim}")
def test_points_of_another_kind(f) -> None:
    with raises_clearly("x"):
        f("points")
    with raises_clearly("x", match="real"):
        f(torch.zeros(f.dim, dtype=torch.bool))
    integer = f(torch.ones(f.dim, dtype=torch.long))  # evaluated in float64
    assert integer.dtype == F64 and integer == f(torch.ones(f.dim, dtype=F64))
    assert f(torch.full((f.dim,), math.nan, dtype=F64)).isnan()  # NaN propagates


@pytest.mark.parametrize(("make", "name"), [
    (lambda: Rastrigin(dim=0), "dim"), (lambda: Rastrigin(dim=2.0), "dim"),
    (lambda: Rastrigin(amplitude=-1.0), "amplitude"),
    (lambda: Rastrigin(amplitude=math.nan), "amplitude"),
    (lambda: Rosenbrock(b=0.0), "b"), (lambda: Rosenbrock(a=math.inf), "a"),
    (lambda: Beale(dim=3), "dim"),
    (lambda: IllConditionedQuadratic(condition=0.5), "condition"),
    (lambda: IllConditionedQuadratic(condition=math.inf), "condition"),
    (lambda: IllConditionedQuadratic(seed=-1), "seed"),
    (lambda: IllConditionedQuadratic(dim=0), "dim"),
    (lambda: Rastrigin().observe(torch.zeros(2, dtype=F64), -1.0), "noise_std"),
    (lambda: Rastrigin().observe(torch.zeros(2, dtype=F64), 1.0, 3), "generator"),
    (lambda: Metric("m", higher_is_better=1, target=0.5), "higher_is_better"),
    (lambda: Metric("m", higher_is_better=True, target=math.nan), "target"),
    (lambda: TASKS["charlm"].metric.reached("a"), "value"),
])
def test_function_arguments(make, name) -> None:
    with raises_clearly(name):
        make()


def test_a_minimizer_without_closed_form_is_unsupported() -> None:
    with pytest.raises(UnsupportedError, match=r"a=2\.0, dim=3"):
        _ = Rosenbrock(dim=3, a=2.0).minimizer


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"start": [1.0, 2.0, 3.0]}, "start"), ({"start": [1.0, math.nan]}, "start"),
    ({"noise": -1.0}, "noise"), ({"jitter": math.inf}, "jitter"),
    ({"function": lambda x: x}, "function"), ({"name": 3}, "name"), ({"name": ""}, "name"),
])
def test_function_task_arguments(kwargs, name) -> None:
    args = {"name": "r", "function": Rastrigin(dim=2), "start": [1.0, 2.0], **kwargs}
    with raises_clearly(name):
        FunctionTask(**args)


@pytest.mark.parametrize("name", ["rastrigin", "digits-mlp", "breast-cancer-logreg", "charlm"])
@pytest.mark.parametrize(("seed", "batch_size", "arg"), [
    (1.5, None, "seed"), (-1, None, "seed"), (2**64, None, "seed"), ("0", None, "seed"),
    (0, 0, "batch_size"), (0, 2.5, "batch_size"), (0, -1, "batch_size"),
])
def test_build_checks_the_seed_and_batch_size(name, seed, batch_size, arg) -> None:
    with raises_clearly(arg):
        TASKS[name].build(seed, batch_size=batch_size)


def test_a_task_without_minibatches_refuses_a_batch_size() -> None:
    with raises_clearly("batch_size", match="no minibatches"):
        TASKS["rosenbrock"].build(0, batch_size=32)


def test_an_unknown_task_is_a_value_error_listing_the_names() -> None:
    with raises_clearly("mnist", match="available: digits-mlp"):
        get_task("mnist")
    with raises_clearly("name"):
        get_task(3)  # type: ignore[arg-type]
    assert get_task("beale") is TASKS["beale"]
