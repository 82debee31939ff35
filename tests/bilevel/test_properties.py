"""Property-based: random arguments to the bilevel solvers either work or raise a documented
exception naming an argument, and a ``run`` that raises for its arguments changes nothing."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.bilevel import (
    BOREP,
    BSVRB,
    SOBA,
    MultiBlockQuadratic,
    PenaltyBilevel,
    QuadraticBilevel,
    StocBiO,
)
from tests.contract import PROPERTIES, assert_clear_error, assert_same

F64 = torch.float64
P = QuadraticBilevel(3, 4)
MULTI = MultiBlockQuadratic(m=3, dim_x=2, dim_y=2)

#: numbers and non-numbers, in and out of every range the solvers use
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0, 1, 2, -1, 0.5, 1.0, 1e-3, 2**63, "1", None, True, [1.0]]),
    st.integers(min_value=-3, max_value=5),
)
DTYPES = st.sampled_from([F64, torch.float32, torch.int64])


def _tensor(shape, dtype, fill):
    if dtype.is_floating_point:
        return torch.full(shape, float(fill), dtype=dtype)
    return torch.zeros(shape, dtype=dtype)


POINTS = st.builds(_tensor, st.lists(st.integers(0, 5), max_size=2).map(tuple), DTYPES,
                   st.sampled_from([0.0, 0.5, float("nan"), float("inf")]))
NAMES = {
    SOBA: ["lr", "lr_y", "lr_z", "beta", "batch_size", "seed"],
    StocBiO: ["lr", "lr_y", "inner_steps", "neumann_lr", "neumann_terms", "batch_size", "seed"],
    PenaltyBilevel: ["lr", "lr_y", "sigma", "sigma_min", "decay", "beta", "inner_steps",
                     "smoothness_ratio", "batch_size", "seed"],
    BOREP: ["lr", "lr_y", "lr_z", "beta", "period", "inner_steps", "radius", "refine_steps",
            "hypergradient", "neumann_terms", "neumann_scale", "batch_size", "seed"],
}


def _kwargs(data, names):
    chosen = data.draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
    return {name: data.draw(VALUES, label=name) for name in chosen}


@PROPERTIES
@given(cls=st.sampled_from(list(NAMES)), data=st.data())
def test_solver_constructors_work_or_name_the_argument(cls, data) -> None:
    kwargs = _kwargs(data, NAMES[cls])
    x0 = data.draw(st.one_of(st.just(P.x0()), POINTS), label="x0")
    y0 = data.draw(st.one_of(st.just(P.y0()), POINTS), label="y0")
    extra = {"refine_epochs": 0} if cls is BOREP else {}
    try:
        solver = cls(P, x0, y0, **extra, **kwargs)
    except Exception as error:  # classified by the contract
        assert_clear_error(error, "x0", "y0", *kwargs)
        return
    try:
        solver.run(1)
    except Exception as error:  # a step may diverge, and must say so
        assert_clear_error(error, "finite")


def _state(solver) -> dict:
    tensors = {k: v.clone() for k, v in vars(solver).items() if isinstance(v, torch.Tensor)}
    return {**tensors, "iteration": solver.iteration, "generator": solver.generator.get_state()}


@PROPERTIES
@given(steps=VALUES, callback=st.sampled_from([None, 3, "f", print]))
def test_run_with_bad_arguments_changes_nothing(steps, callback) -> None:
    solver = SOBA(P, P.x0(), P.y0())
    is_count = isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0
    if is_count and (callback is None or callable(callback)):
        return  # a valid call: nothing to check here
    before = _state(solver)
    try:
        solver.run(steps, callback)
    except Exception as error:
        assert_clear_error(error, "steps", "callback")
    else:
        raise AssertionError(f"run({steps!r}, {callback!r}) was accepted")
    assert_same(before, _state(solver), "run changed the solver before raising")


@PROPERTIES
@given(data=st.data())
def test_bsvrb_constructor_works_or_names_the_argument(data) -> None:
    names = ["version", "blocks", "batch_size", "lr", "lr_y", "lr_v", "alpha", "beta", "gamma",
             "mu", "radius", "variance_reduction", "seed"]
    kwargs = _kwargs(data, names)
    x0 = data.draw(st.one_of(st.just(torch.zeros(2, dtype=F64)), POINTS), label="x0")
    y0 = data.draw(st.one_of(st.just(torch.zeros(3, 2, dtype=F64)), POINTS), label="y0")
    try:
        BSVRB(MULTI, x0, y0, **kwargs)
    except Exception as error:
        assert_clear_error(error, "x0", "y0", *kwargs)
