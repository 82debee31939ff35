"""Hessian-vector products on quadratics with a known Hessian."""

from __future__ import annotations

import pytest
import torch

from stochopt.curvature import flatten, hvp, hvp_func, hvp_operator, unflatten


def _quadratic(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a + a.T  # symmetric, indefinite


def test_double_backward_and_forward_over_reverse_give_a_v() -> None:
    A = _quadratic()
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    v = torch.randn(6, dtype=torch.float64)
    (grad,) = torch.autograd.grad(0.5 * x @ A @ x, [x], create_graph=True)
    torch.testing.assert_close(hvp([grad], [x], [v])[0], A @ v, rtol=1e-12, atol=1e-12)
    product = hvp_func(lambda y: 0.5 * y @ A @ y, [x.detach()], [v])[0]
    torch.testing.assert_close(product, A @ v, rtol=1e-12, atol=1e-12)


def test_several_parameters_and_unused_ones() -> None:
    A = _quadratic(4)
    x = torch.randn(2, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, dtype=torch.float64, requires_grad=True)
    unused = torch.randn(3, dtype=torch.float64, requires_grad=True)
    z = torch.cat([x, y])
    grads = torch.autograd.grad(0.5 * z @ A @ z + 0 * unused.sum(), [x, y, unused],
                                create_graph=True)
    v = [torch.ones(2, dtype=torch.float64), -torch.ones(2, dtype=torch.float64),
         torch.ones(3, dtype=torch.float64)]
    products = hvp(grads, [x, y, unused], v)
    torch.testing.assert_close(flatten(products[:2]), A @ flatten(v[:2]), rtol=1e-12, atol=1e-12)
    assert torch.equal(products[2], torch.zeros(3, dtype=torch.float64))


def test_gradients_without_graph_are_refused() -> None:
    x = torch.randn(3, requires_grad=True)
    (x**2).sum().backward()
    with pytest.raises(ValueError, match="the gradients have no graph; compute them with"):
        hvp([x.grad], [x], [torch.ones(3)])


def test_operator_and_flat_round_trip() -> None:
    A = _quadratic(5)
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    op = hvp_operator(0.5 * x @ A @ x, [x])
    e = torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(torch.stack([op(e[i]) for i in range(5)]), A, rtol=1e-12,
                               atol=1e-12)
    parts = [torch.ones(2, 3), torch.zeros(4)]
    assert [t.shape for t in unflatten(flatten(parts), parts)] == [(2, 3), (4,)]
