"""Bad input to the bilevel solvers and problems: a clear error naming the argument (never a
torch shape error from inside an oracle), raised before anything changes."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from stochopt.bilevel import (
    BOREP,
    BSVRB,
    SOBA,
    FlatParameters,
    MultiBlockQuadratic,
    MultiBlockRidge,
    PenaltyBilevel,
    QuadraticBilevel,
    StocBiO,
    implicit_hypergradient,
)
from stochopt.bilevel.applications import HyperCleaning, RegularizationTuning
from stochopt.errors import DivergenceError
from tests.contract import assert_same, raises_clearly

F64 = torch.float64
SOLVERS = [SOBA, StocBiO, PenaltyBilevel, BOREP]
P = QuadraticBilevel(3, 4)  # dim_x = 3, dim_y = 4


def _state(solver) -> dict:
    """What a solver's step changes: its tensors, its round and its generator."""
    tensors = {k: v.clone() for k, v in vars(solver).items() if isinstance(v, torch.Tensor)}
    return {**tensors, "iteration": solver.iteration, "generator": solver.generator.get_state(),
            "calls": dict(solver.problem.calls)}


def assert_unchanged(call, solver, names) -> None:
    before = _state(solver)
    with raises_clearly(*names):
        call()
    assert_same(before, _state(solver), "solver changed by a call that raised")


def _fast(cls):
    """A solver with the cheapest settings (BO-REP without its refinement phase)."""
    return {"refine_epochs": 0} if cls is BOREP else {}


@pytest.mark.parametrize("cls", SOLVERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("x0", "y0", "name", "text"), [
    (torch.zeros(5, dtype=F64), torch.zeros(4, dtype=F64), "x0", r"shape \(3\)"),
    (torch.zeros(1, 3, dtype=F64), torch.zeros(4, dtype=F64), "x0", r"shape \(3\)"),
    (torch.zeros(3, dtype=F64), torch.zeros(2, dtype=F64), "y0", r"shape \(4\)"),
    (torch.zeros(3), torch.zeros(4, dtype=F64), "x0", "dtype torch.float64"),
    (torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=F64), "x0", "floating"),
    (torch.full((3,), math.nan, dtype=F64), torch.zeros(4, dtype=F64), "x0", "finite"),
    ("x", torch.zeros(4, dtype=F64), "x0", "tensor"),
])
def test_a_wrongly_shaped_start_names_the_argument_and_the_shape(cls, x0, y0, name,
                                                                 text) -> None:
    with raises_clearly(name, match=text):
        cls(P, x0, y0, **_fast(cls))


@pytest.mark.parametrize("cls", SOLVERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("kwargs", "name"), [
    ({"seed": 1.5}, "seed"), ({"seed": -1}, "seed"), ({"seed": 2**64}, "seed"),
    ({"lr": math.inf}, "lr"), ({"lr": math.nan}, "lr"), ({"lr_y": "0.1"}, "lr_y"),
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.0}, "batch_size"),
])
def test_bad_constructor_arguments_are_refused(cls, kwargs, name) -> None:
    with raises_clearly(name):
        cls(P, P.x0(), P.y0(), **_fast(cls), **kwargs)


def test_solver_specific_arguments() -> None:
    start = (P, P.x0(), P.y0())
    for make, name in [
        (lambda: SOBA(*start, beta="a"), "beta"),
        (lambda: PenaltyBilevel(*start, decay=math.inf), "decay"),
        (lambda: PenaltyBilevel(*start, decay=math.nan), "decay"),
        (lambda: BOREP(*start, refine_epochs=1.5), "refine_epochs"),
        (lambda: BOREP(*start, radius=-1.0), "radius"),
        (lambda: BOREP(*start, hypergradient=["a"]), "hypergradient"),
        (lambda: StocBiO(*start, neumann_terms=0), "neumann_terms"),
        (lambda: SOBA("P", P.x0(), P.y0()), "problem"),
    ]:
        with raises_clearly(name):
            make()
    BOREP(*start, radius=math.inf, refine_epochs=0)  # the default radius: no projection


@pytest.mark.parametrize("cls", SOLVERS, ids=lambda c: c.__name__)
def test_run_checks_its_arguments_before_stepping(cls) -> None:
    solver = cls(P, P.x0(), P.y0(), **_fast(cls))
    for steps, callback, name in [(-1, None, "steps"), (1.5, None, "steps"),
                                  (1, 3, "callback")]:
        assert_unchanged(lambda s=steps, c=callback: solver.run(s, c), solver, names=[name])


def test_run_reports_non_finite_iterates_as_divergence() -> None:
    solver = SOBA(P, P.x0(), P.y0(), lr=1e200, batch_size=None)
    with pytest.raises(DivergenceError, match=r"SOBA: the iterates are no longer finite"):
        solver.run(20)


@functools.cache
def _multi_block():
    p = MultiBlockQuadratic(m=4, dim_x=3, dim_y=2, noise=1.0)
    return p, torch.zeros(3, dtype=F64), torch.zeros(4, 2, dtype=F64)


@pytest.mark.parametrize(("x0", "y0", "name"), [
    (torch.zeros(5, dtype=F64), torch.zeros(4, 2, dtype=F64), "x0"),
    (torch.zeros(3, dtype=F64), torch.zeros(4, 3, dtype=F64), "y0"),
    (torch.zeros(3, dtype=F64), torch.zeros(2, dtype=F64), "y0"),
    (torch.zeros(3, dtype=F64), torch.zeros(5, 2, dtype=F64), "y0"),
])
def test_bsvrb_checks_the_blocks_starting_points(x0, y0, name) -> None:
    p, _, _ = _multi_block()
    with raises_clearly(name, match=r"shape \(4, 2\)|shape \(3\)"):
        BSVRB(p, x0, y0)


def test_bsvrb_arguments_and_run() -> None:
    p, x0, y0 = _multi_block()
    for kwargs, name in [({"seed": 0.5}, "seed"), ({"gamma": -1.0}, "gamma"),
                         ({"gamma": "x"}, "gamma"), ({"alpha": "x"}, "alpha"),
                         ({"variance_reduction": "no"}, "variance_reduction"),
                         ({"lr": math.inf}, "lr")]:
        with raises_clearly(name):
            BSVRB(p, x0, y0, **kwargs)
    with raises_clearly("problem"):
        BSVRB(P, x0, y0)
    solver = BSVRB(p, x0, y0)
    assert_unchanged(lambda: solver.run(-1), solver, names=["steps"])
    assert_unchanged(lambda: solver.run("3"), solver, names=["steps"])


def test_problem_arguments() -> None:
    for make, name in [
        (lambda: QuadraticBilevel(0, 3), "dim_x"),
        (lambda: QuadraticBilevel(3, 3, mu=10.0, L=1.0), "L"),
        (lambda: QuadraticBilevel(3, 3, mu=-1.0), "mu"),
        (lambda: QuadraticBilevel(3, 3, noise=-1.0), "noise"),
        (lambda: QuadraticBilevel(3, 3, seed=1.5), "seed"),
        (lambda: MultiBlockQuadratic(0), "m"),
        (lambda: MultiBlockQuadratic(3, seed=2**63 - 2), "seed"),
        (lambda: MultiBlockRidge(0), "m"),
        (lambda: MultiBlockRidge(3, 0), "d"),
        (lambda: MultiBlockRidge(3, 2, 0), "n"),
        (lambda: MultiBlockRidge(3, 2, 5, seed="a"), "seed"),
        (lambda: FlatParameters("x"), "module"),
    ]:
        with raises_clearly(name):
            make()


def test_problem_methods_check_points_batches_and_samples() -> None:
    ridge = MultiBlockRidge(3, 2, 5)
    gen = torch.Generator()
    for call, name in [
        (lambda: P.y_star(torch.zeros(4, dtype=F64)), "x"),
        (lambda: P.hypergradient(torch.zeros(2, dtype=F64)), "x"),
        (lambda: P.penalty_gradient(P.x0(), 0.0), "sigma"),
        (lambda: P.f(torch.zeros(4, dtype=F64), torch.zeros(3, dtype=F64)), "x"),
        (lambda: P.grad_f(P.x0(), torch.zeros(3, dtype=F64)), "y"),
        (lambda: P.hvp_jvp_g(P.x0(), P.y0(), torch.zeros(2, dtype=F64)), "v"),
        (lambda: P.sample("middle", gen, 2), "level"),
        (lambda: P.sample("lower", gen, 0), "size"),
        (lambda: P.sample("lower", 3, 2), "generator"),
        (lambda: P.f(P.x0(), P.y0(), batch="b"), "batch"),
        (lambda: ridge.y_star(torch.zeros(3, dtype=F64)), "x"),
        (lambda: ridge.objective(torch.zeros(3, dtype=F64)), "x"),
        (lambda: ridge.sample_block(7, "lower", gen, 2), "block"),
        (lambda: ridge.sample_block(1, "lower", gen, 0), "size"),
        (lambda: ridge.f(torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64), None), "batch"),
        (lambda: implicit_hypergradient(P, torch.zeros(5, dtype=F64), P.y0()), "x"),
        (lambda: implicit_hypergradient("P", P.x0(), P.y0()), "problem"),
        (lambda: FlatParameters(torch.nn.Linear(2, 1)).call(torch.zeros(5), None), "flat"),
    ]:
        with raises_clearly(name):
            call()


def test_an_objective_that_returns_a_vector_is_named() -> None:
    class Vector(QuadraticBilevel):
        def f(self, x, y, batch=None):
            return x.repeat(2)

    p = Vector(3, 4)
    with raises_clearly("f", match="one value"):
        p.grad_f(p.x0(), p.y0())


def test_application_arguments_are_checked_before_the_data_is_used() -> None:
    for make, name in [
        (lambda: HyperCleaning(corruption=math.nan), "corruption"),
        (lambda: HyperCleaning(l2=-1.0), "l2"),
        (lambda: HyperCleaning(seed=0.5), "seed"),
        (lambda: HyperCleaning(train=0), "train"),
        (lambda: HyperCleaning(val=-5), "val"),
        (lambda: HyperCleaning(train=1700, val=300), "train + val"),
        (lambda: RegularizationTuning(train=1), "train"),
        (lambda: RegularizationTuning(train=500, val=150), "train + val"),
        (lambda: RegularizationTuning(seed=0.5), "seed"),
    ]:
        with raises_clearly(name):
            make()
    p = RegularizationTuning()
    with raises_clearly("y"):
        p.test_loss(torch.zeros(5, dtype=F64))
    with raises_clearly("level"):
        p.sample("both", torch.Generator(), 2)
