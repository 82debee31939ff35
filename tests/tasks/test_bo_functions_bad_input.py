"""Bad input to the Bayesian-optimization test functions: a wrong dimension, points of the
wrong shape, a negative noise, a generator that is not one; each is refused with the function
and the argument named (issue #20)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.tasks import Ackley, Branin, Hartmann6, Levy, Michalewicz
from tests.contract import PROPERTIES, assert_clear_error, raises_clearly

FUNCTIONS = [Branin(), Hartmann6(), Ackley(dim=3), Levy(dim=4), Michalewicz(dim=2)]


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f.name)
def test_points_of_the_wrong_dimension_are_refused(f) -> None:
    for shape in ((f.dim + 1,), (f.dim - 1,), (4, f.dim + 2), ()):
        with raises_clearly(f"{type(f).__name__}: x must hold points of shape (..., {f.dim})"):
            f(torch.zeros(shape))
    with raises_clearly(f"{type(f).__name__}: x must hold real numbers"):
        f(torch.zeros(f.dim, dtype=torch.bool))
    with raises_clearly(f"{type(f).__name__}: x must be a tensor"):
        f("point")


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f.name)
def test_lists_and_integer_points_are_evaluated_in_float64(f) -> None:
    point = [1] * f.dim
    expected = f(torch.ones(f.dim, dtype=torch.float64))
    assert f(point).dtype == torch.float64 and torch.equal(f(point), expected)
    assert torch.equal(f(torch.ones(2, f.dim, dtype=torch.int64)), expected.expand(2))


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Branin(dim=3), "Branin: dim must be 2"),
    (lambda: Hartmann6(dim=2), "Hartmann6: dim must be 6"),
    (lambda: Ackley(dim=0), "Ackley: dim must be >= 1"),
    (lambda: Ackley(dim=-2), "Ackley: dim must be >= 1"),
    (lambda: Ackley(dim=2.5), "Ackley: dim must be an integer"),
    (lambda: Levy(dim=True), "Levy: dim must be an integer"),
    (lambda: Michalewicz(m=0), "Michalewicz: m must be in [1, 2147483648], got 0"),
    (lambda: Michalewicz(m=1.5), "Michalewicz: m must be an integer"),
])
def test_a_bad_dimension_or_parameter_is_refused_when_built(make, words) -> None:
    with raises_clearly(words):
        make()


@pytest.mark.parametrize("noise_std", [-1.0, math.nan, math.inf, "0.1", True])
def test_observe_refuses_a_noise_that_is_not_a_standard_deviation(noise_std) -> None:
    with raises_clearly("Branin.observe: noise_std"):
        Branin().observe(torch.zeros(2), noise_std)


def test_observe_checks_its_generator_and_points() -> None:
    with raises_clearly("Branin.observe: generator"):
        Branin().observe(torch.zeros(2), 1.0, 3)
    with raises_clearly("Branin: x must hold points of shape (..., 2)"):
        Branin().observe(torch.zeros(3), 1.0)
    assert Branin().observe(torch.zeros(2), 0).dtype == torch.float32  # as torch computes it


@PROPERTIES
@given(f=st.sampled_from(FUNCTIONS),
       shape=st.lists(st.integers(0, 7), max_size=3).map(tuple),
       dtype=st.sampled_from([torch.float64, torch.float32, torch.int32, torch.bool]),
       fill=st.sampled_from([0.0, 0.5, -3.0, math.nan, math.inf]))
def test_any_points_give_values_of_the_batch_shape_or_a_clear_error(f, shape, dtype,
                                                                    fill) -> None:
    x = torch.full(shape, fill, dtype=torch.float64).to(dtype) if dtype.is_floating_point \
        else torch.zeros(shape, dtype=dtype)
    try:
        value = f(x)
    except Exception as error:
        assert_clear_error(error, "x must")
        return
    assert value.shape == shape[:-1]
