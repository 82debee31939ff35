"""Property-based: random arguments to the curvature functions either work or raise a
documented exception naming the argument, and a refused call draws nothing from the
generator."""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.curvature import (
    gauss_newton_bartlett,
    hutchinson_diagonal,
    hvp,
    lanczos,
    power_iteration,
    spectral_density,
)
from tests.contract import PROPERTIES, assert_clear_error

F64 = torch.float64
A = torch.diag(torch.arange(1.0, 6.0, dtype=F64))
N = 5

#: integers in and out of range, and things that are not integers
COUNTS = st.one_of(st.integers(min_value=-2, max_value=8),
                   st.sampled_from([1.5, math.nan, math.inf, "3", None, True]))
REALS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from(["0.1", None, [1.0]]))
def _full(shape: tuple[int, ...], fill: float, dtype: torch.dtype) -> torch.Tensor:
    if not dtype.is_floating_point:
        return torch.ones(shape, dtype=dtype)
    return torch.full(shape, fill, dtype=dtype)


TENSORS = st.builds(_full,
                    st.sampled_from([(N,), (3,), (), (N, 1), (0,)]),
                    st.sampled_from([1.0, 0.0, math.nan, -math.inf]),
                    st.sampled_from([F64, torch.float32, torch.int64]))
GENERATORS = st.sampled_from(["gen", "gen", None, 0, "cuda"])


def _generator(kind: Any) -> Any:
    return torch.Generator().manual_seed(0) if kind == "gen" else kind


def _check(call: Any, generator: Any, names: tuple[str, ...]) -> Any:
    """``call()`` works or raises clearly, naming one of ``names``; a refused call leaves a
    generator where it was."""
    state = generator.get_state() if isinstance(generator, torch.Generator) else None
    try:
        return call()
    except Exception as error:
        assert_clear_error(error, *names)
        if state is not None:
            assert torch.equal(generator.get_state(), state), "the generator was advanced"
        return None


@PROPERTIES
@given(n=COUNTS, steps=COUNTS, vectors=COUNTS, iterations=COUNTS, tol=REALS,
       start=st.one_of(st.none(), TENSORS), kind=GENERATORS)
def test_spectral_functions_work_or_name_the_argument(n, steps, vectors, iterations, tol, start,
                                                      kind) -> None:
    op = lambda v: A[: v.shape[0], : v.shape[0]] @ v  # noqa: E731 (any n <= 5 is valid)
    names = ("n", "steps", "vectors", "iterations", "tol", "start", "generator", "operator")
    gen = _generator(kind)
    result = _check(lambda: lanczos(op, n, steps, generator=gen, start=start), gen, names)
    if result is not None:
        assert torch.isfinite(result.alpha).all()
    gen = _generator(kind)
    _check(lambda: spectral_density(op, n, steps, vectors=vectors, generator=gen), gen, names)
    gen = _generator(kind)
    _check(lambda: power_iteration(op, n, generator=gen, iterations=iterations, tol=tol), gen,
           names)


def _cubic() -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.tensor([1.0, -2.0, 0.5, 2.0, 1.0], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad((w**3).sum(), [w], create_graph=True)
    return w, g


@PROPERTIES
@given(vectors=st.lists(TENSORS, max_size=2), samples=COUNTS,
       distribution=st.sampled_from(["rademacher", "gaussian", "normal", 1]),
       detached=st.booleans(), kind=GENERATORS)
def test_products_and_estimators_work_or_name_the_argument(vectors, samples, distribution,
                                                           detached, kind) -> None:
    w, g = _cubic()
    g = g.detach() if detached else g
    _check(lambda: hvp([g], [w], vectors), None, ("vectors", "grads", "params", "graph"))
    gen = _generator(kind)
    _check(lambda: hutchinson_diagonal([g], [w], generator=gen, samples=samples,
                                       distribution=distribution, retain_graph=True), gen,
           ("samples", "distribution", "generator", "graph"))


@PROPERTIES
@given(shape=st.sampled_from([(4, 3), (3,), (), (0, 3), (2, 2, 3)]),
       fill=st.sampled_from([0.5, math.nan, math.inf]),
       dtype=st.sampled_from([F64, torch.float32, torch.int64]), detached=st.booleans(),
       kind=GENERATORS)
def test_gauss_newton_bartlett_works_or_names_the_logits(shape, fill, dtype, detached,
                                                         kind) -> None:
    w = torch.ones(3, requires_grad=True, dtype=F64)
    logits = (torch.full(shape, fill, dtype=F64) * w).to(dtype) if dtype.is_floating_point \
        else torch.zeros(shape, dtype=dtype)
    logits = logits.detach() if detached else logits
    gen = _generator(kind)
    estimates = _check(lambda: gauss_newton_bartlett(logits, [w], generator=gen), gen,
                       ("logits", "generator"))
    if estimates is not None:
        assert (estimates[0] >= 0).all() and torch.isfinite(estimates[0]).all()
