"""Shared fixtures for optimizer tests: mixed-shape parameters and fixed gradient streams."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

#: 0-d, empty, 1-d, 2-d (made non-contiguous), 4-d (a conv kernel)
SHAPES: tuple[tuple[int, ...], ...] = ((), (0,), (5,), (3, 4), (2, 3, 2, 2))


def make_params(dtype: torch.dtype = torch.float64, seed: int = 0) -> list[Tensor]:
    """Leaf parameters of :data:`SHAPES`; the 2-d one is a transposed (strided) view."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in SHAPES:
        if len(shape) == 2:
            t = torch.randn(shape[::-1], generator=gen, dtype=torch.float64).t()
        else:
            t = torch.randn(shape, generator=gen, dtype=torch.float64)
        params.append(t.to(dtype).detach().requires_grad_())
    assert not params[3].is_contiguous()
    return params


def clone_params(params: Sequence[Tensor]) -> list[Tensor]:
    """Copies with the same values *and* strides."""
    return [torch.empty_strided(p.shape, p.stride(), dtype=p.dtype).copy_(p.detach())
            .requires_grad_() for p in params]


def grad_stream(params: Sequence[Tensor], steps: int, seed: int = 1,
                frozen: tuple[int, range] | None = None) -> list[list[Tensor | None]]:
    """``steps`` lists of random gradients, one per parameter, with the parameters' strides.

    ``frozen=(i, steps)`` gives parameter ``i`` no gradient (``None``) during those steps.
    """
    gen = torch.Generator().manual_seed(seed)
    stream = []
    for t in range(steps):
        grads: list[Tensor | None] = []
        for i, p in enumerate(params):
            g = torch.empty_like(p).copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
            grads.append(None if frozen and i == frozen[0] and t in frozen[1] else g)
        stream.append(grads)
    return stream


def curvature_of(g: Tensor) -> Tensor:
    """A stand-in diagonal curvature estimate for tests: ``g * |g|`` elementwise (on real and
    imaginary parts), odd in ``g`` so that maximizing with ``g`` equals minimizing with
    ``-g``, and negative in places, as Hutchinson estimates are."""
    if g.is_complex():
        return torch.complex(curvature_of(g.real), curvature_of(g.imag))
    return g * g.abs() + 0.01 * g


def estimates_for(opt: torch.optim.Optimizer,
                  grads: Sequence[Tensor | None]) -> list[Tensor | None] | None:
    """The stand-in estimates when ``opt`` is a curvature optimizer due for a refresh."""
    if not getattr(opt, "curvature_due", False):
        return None
    return [None if g is None else curvature_of(g) for g in grads]


def run(opt: torch.optim.Optimizer, params: Sequence[Tensor],
        stream: Sequence[Sequence[Tensor | None]]) -> None:
    """Step ``opt`` once per entry of ``stream``, setting each parameter's gradient (and, for
    curvature optimizers on refresh steps, the stand-in estimates)."""
    for grads in stream:
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.clone()
        estimates = estimates_for(opt, grads)
        if estimates is not None:
            opt.set_curvature(estimates)
        opt.step()


def as_numpy(params: Sequence[Tensor]) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in params]


def assert_same_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer,
                      params_a: Sequence[Tensor], params_b: Sequence[Tensor],
                      exact: bool = True, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Parameters and every state tensor agree (bitwise when ``exact``)."""
    for i, (pa, pb) in enumerate(zip(params_a, params_b)):
        pairs = [("param", pa.detach(), pb.detach())]
        sa, sb = a.state.get(pa, {}), b.state.get(pb, {})
        assert sa.keys() == sb.keys(), f"param {i}: state keys {sa.keys()} != {sb.keys()}"
        pairs += [(k, sa[k], sb[k]) for k in sa]
        for name, x, y in pairs:
            if exact:
                assert torch.equal(x, y), f"param {i}, {name}: not bitwise equal"
            else:
                torch.testing.assert_close(x, y, rtol=rtol, atol=atol,
                                           msg=lambda m, i=i, n=name: f"param {i}, {n}: {m}")


def assert_steps_like_official(ours: torch.optim.Optimizer, official: torch.optim.Optimizer,
                               params: Sequence[Tensor], twins: Sequence[Tensor],
                               grads: Iterable[Sequence[Tensor | None]], *,
                               maximize: bool) -> None:
    """Step ``ours`` (on ``params``) and an official optimizer (on ``twins``) on the same
    gradients (``None``: frozen that step); the official code has no ``maximize``, so it
    minimizes the negated gradient instead. Parameters agree after every step and every
    official state but the step count at the end, to float64 rounding (rtol 1e-12)."""
    sign = -1.0 if maximize else 1.0
    for step_grads in grads:
        for p, q, g in zip(params, twins, step_grads):
            p.grad, q.grad = (None, None) if g is None else (g.clone(), sign * g)
        ours.step()
        official.step()
        for p, q in zip(params, twins):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=1e-15)
    for p, q in zip(params, twins):
        for name, value in official.state[q].items():
            if name != "step":
                torch.testing.assert_close(ours.state[p][name], value, rtol=1e-12, atol=1e-15)
