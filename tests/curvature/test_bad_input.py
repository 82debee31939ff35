"""Bad input to stochopt.curvature: every argument is checked before anything is computed or
drawn (a refused call leaves the generator where it was), with a message naming the function
and the argument."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from stochopt.curvature import (
    flatten,
    gauss_newton_bartlett,
    gaussian_like,
    hutchinson_diagonal,
    hvp,
    hvp_func,
    hvp_operator,
    lanczos,
    power_iteration,
    probe_like,
    rademacher_like,
    sample_labels,
    spectral_density,
    unflatten,
)
from tests.contract import raises_clearly

F64 = torch.float64
A = torch.diag(torch.arange(1.0, 6.0, dtype=F64))


def _op(v: torch.Tensor) -> torch.Tensor:
    return A @ v


def _cubic() -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.tensor([1.0, -2.0, 0.5], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad((w**3).sum(), [w], create_graph=True)
    return w, g


def _refused(call: Callable[[Any], Any], *names: str) -> None:
    """``call(generator)`` raises clearly and leaves the generator's state unchanged."""
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    with raises_clearly(*names):
        call(generator)
    assert torch.equal(generator.get_state(), state)


# ------------------------------------------------------------------------------ products
def test_hvp_checks_lengths_shapes_and_gradients() -> None:
    w, g = _cubic()
    with raises_clearly(match="hvp: vectors has 2 tensors, params 1"):
        hvp([g], [w], [torch.ones(3), torch.ones(3)])
    with raises_clearly(match=r"hvp: vectors\[0\] has shape \(4,\), params\[0\] \(3,\)"):
        hvp([g], [w], [torch.ones(4)])
    with raises_clearly(match=r"hvp: grads\[0\] must be a tensor, got None"):
        hvp([None], [w], [torch.ones(3)])
    with raises_clearly(match=r"hvp: params\[0\] does not require grad"):
        hvp([g], [w.detach()], [torch.ones(3)])
    with raises_clearly(match="hvp: params must be a list or tuple of tensors"):
        hvp([g], w, [torch.ones(3)])


def test_hvp_func_and_operator_check_the_loss() -> None:
    w = torch.ones(3, dtype=F64)
    with raises_clearly(match="hvp_func: loss_fn must return a scalar tensor, got shape"):
        hvp_func(lambda x: x**2, [w], [torch.ones(3, dtype=F64)])
    with raises_clearly(match="hvp_func: loss_fn must be callable"):
        hvp_func("loss", [w], [w])
    with raises_clearly(match=r"hvp_func: vectors\[0\] has shape"):
        hvp_func(lambda x: x.sum(), [w], [torch.ones(2)])
    x = torch.ones(3, requires_grad=True)
    unused = torch.ones(2, requires_grad=True)
    with raises_clearly(match=r"hvp_operator: loss does not depend on params\[1\]"):
        hvp_operator((x**2).sum(), [x, unused])
    with raises_clearly(match="hvp_operator: loss must be a scalar"):
        hvp_operator(x**2, [x])
    with raises_clearly(match="hvp_operator: loss has no gradient graph"):
        hvp_operator((x**2).sum().detach(), [x])
    operator = hvp_operator((x**2).sum(), [x])
    with raises_clearly(match=r"unflatten: vector must have shape \(3,\)"):
        operator(torch.ones(4))


def test_flatten_and_unflatten_check_their_tensors() -> None:
    with raises_clearly(match="flatten: tensors must hold at least one tensor"):
        flatten([])
    with raises_clearly(match=r"flatten: tensors\[1\] must be a tensor"):
        flatten([torch.ones(2), 3.0])
    with raises_clearly(match=r"unflatten: vector must have shape \(3,\) .*, got shape \(5,\)"):
        unflatten(torch.ones(5), [torch.ones(3)])


# ----------------------------------------------------------------------------- estimators
def test_hutchinson_checks_everything_before_drawing_a_probe() -> None:
    w, g = _cubic()
    _refused(lambda gen: hutchinson_diagonal([g], [w], generator=gen, samples=0), "samples")
    _refused(lambda gen: hutchinson_diagonal([g], [w], generator=gen, samples=1.5), "samples")
    _refused(lambda gen: hutchinson_diagonal([g], [w], generator=gen, distribution="x"),
             "distribution")
    _refused(lambda gen: hutchinson_diagonal([g], [w, w], generator=gen), "grads has 1")
    _refused(lambda gen: hutchinson_diagonal([g.detach()], [w], generator=gen), "no graph")
    with raises_clearly("generator must be a torch.Generator"):
        hutchinson_diagonal([g], [w], generator=None)


def test_probes_check_their_arguments() -> None:
    _refused(lambda gen: probe_like(torch.ones(2), gen, "uniform"), "probe_like: distribution")
    _refused(lambda gen: rademacher_like([1.0], gen), "rademacher_like: t must be a tensor")
    with raises_clearly("gaussian_like: generator"):
        gaussian_like(torch.ones(2), 0)


def test_gauss_newton_bartlett_checks_the_logits_before_drawing_labels() -> None:
    w = torch.ones(3, 4, requires_grad=True)
    logits = torch.ones(5, 3) @ w
    _refused(lambda gen: gauss_newton_bartlett(logits.detach(), [w], generator=gen),
             "logits have no gradient graph")
    _refused(lambda gen: gauss_newton_bartlett(logits[0, 0], [w], generator=gen),
             "logits must have shape (..., V)")
    _refused(lambda gen: gauss_newton_bartlett(logits[:0], [w], generator=gen),
             "logits must have shape (..., V)")
    _refused(lambda gen: gauss_newton_bartlett(logits * math.nan, [w], generator=gen),
             "logits must be finite")
    _refused(lambda gen: gauss_newton_bartlett(logits, [w.detach()], generator=gen),
             "params[0] does not require grad")
    _refused(lambda gen: gauss_newton_bartlett(logits, w, generator=gen), "params must be a list")
    _refused(lambda gen: sample_labels(torch.full((2, 3), math.inf), gen), "logits must be finite")
    _refused(lambda gen: sample_labels(torch.ones(2, 3, dtype=torch.long), gen),
             "logits must be a floating-point tensor")
    with raises_clearly("sample_labels: generator"):
        sample_labels(torch.ones(2, 3), None)
    assert gauss_newton_bartlett(logits, [], generator=torch.Generator()) == []


# ------------------------------------------------------------------------------- spectra
@pytest.mark.parametrize(("call", "names"), [
    (lambda gen: power_iteration(_op, 0, generator=gen), ("power_iteration: n must be >= 1",)),
    (lambda gen: power_iteration(_op, 5, generator=3), ("generator must be a torch.Generator",)),
    (lambda gen: power_iteration(_op, 5, generator=gen, iterations=0), ("iterations",)),
    (lambda gen: power_iteration(_op, 5, generator=gen, tol=-1.0), ("tol",)),
    (lambda gen: power_iteration(_op, 5, generator=gen, dtype=torch.int64), ("dtype",)),
    (lambda gen: power_iteration(3, 5, generator=gen), ("operator must be callable",)),
    (lambda gen: lanczos(_op, 0, 1, generator=gen), ("lanczos: n must be >= 1",)),
    (lambda gen: lanczos(_op, 5, 1.5, generator=gen), ("lanczos: steps must be an integer",)),
    (lambda gen: lanczos(_op, 5, 6, generator=gen), ("steps must be in [1, n=5], got 6",)),
    (lambda gen: lanczos(_op, 5, 2, generator=gen, start=torch.ones(3)), ("start",)),
    (lambda gen: lanczos(_op, 5, 2, generator=gen, start=torch.zeros(5)),
     ("start must be a non-zero vector",)),
    (lambda gen: lanczos(_op, 5, 2, generator=gen, start=torch.full((5,), math.nan)),
     ("start must be finite",)),
    (lambda gen: spectral_density(_op, 5, 2, vectors=0, generator=gen), ("vectors",)),
    (lambda gen: spectral_density(_op, 5, 9, vectors=2, generator=gen), ("steps",)),
])
def test_spectral_functions_check_arguments_before_drawing(call, names) -> None:
    _refused(call, *names)


@pytest.mark.parametrize("bad", [lambda v: v[:3], lambda v: v * math.nan, lambda v: [1.0],
                                 lambda v: torch.ones(7)])
def test_a_bad_operator_output_is_named(bad) -> None:
    generator = torch.Generator().manual_seed(0)
    with raises_clearly("operator"):
        power_iteration(bad, 5, generator=generator)
    with raises_clearly("operator"):
        lanczos(bad, 5, 3, generator=generator)


def test_a_zero_operator_has_eigenvalue_zero_and_a_finite_vector() -> None:
    value, vector = power_iteration(lambda v: 0 * v, 4, generator=torch.Generator())
    assert value == 0.0 and torch.isfinite(vector).all() and vector.norm() == pytest.approx(1)


def test_smoothed_density_checks_grid_and_width() -> None:
    density = spectral_density(_op, 5, 3, vectors=2, generator=torch.Generator().manual_seed(0))
    with raises_clearly("width"):
        density.smoothed(torch.linspace(0, 6, 4), 0.0)
    with raises_clearly("grid"):
        density.smoothed(torch.ones(2, 2), 0.5)
    values = density.smoothed(torch.linspace(0, 6, 4), 0.5)  # float32 grid: cast to the nodes'
    assert values.dtype == F64 and torch.isfinite(values).all()
