"""Stacked MLPs equal separate ``nn.Sequential`` networks with the same weights."""

from __future__ import annotations

import torch
from torch import nn

from stochopt.bayesopt.neural.mlp import (
    flat_mlp_vjp,
    flatten,
    init_mlp,
    mlp_features,
    mlp_features_vjp,
    mlp_forward,
    mlp_vjp,
    unflatten,
)


def test_stacked_forward_equals_each_sequential_network() -> None:
    params = init_mlp(3, 4, (8, 5), torch.Generator().manual_seed(0))
    X = torch.rand(7, 4, dtype=torch.float64)
    out = mlp_forward(params, X)
    for e in range(3):
        layers = [nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 1)]
        net = nn.Sequential(*layers).double()
        with torch.no_grad():
            for layer, W, b in zip(layers[0::2], params[0::2], params[1::2], strict=True):
                layer.weight.copy_(W[e].T)
                layer.bias.copy_(b[e, 0])
            assert torch.allclose(out[e], net(X)[:, 0], atol=1e-14)


def test_initialization_bounds_follow_fan_in() -> None:
    params = init_mlp(2, 16, (64,), torch.Generator().manual_seed(1))
    assert params[0].abs().max() <= 0.25 and params[0].abs().max() > 0.24
    assert params[2].abs().max() <= 1 / 8


def test_flatten_round_trips_and_stacks_samples() -> None:
    params = init_mlp(1, 3, (4,), torch.Generator().manual_seed(2))
    theta = flatten(params)
    back = unflatten(theta, params)
    assert all(torch.equal(a, b) for a, b in zip(back, params, strict=True))
    stacked = unflatten(torch.stack([theta, 2 * theta]), params)
    X = torch.rand(5, 3, dtype=torch.float64)
    assert torch.allclose(mlp_forward(stacked, X)[0], mlp_forward(params, X)[0])
    assert stacked[0].shape == (2, 3, 4)


def test_written_out_backpropagation_equals_autograd() -> None:
    params = init_mlp(3, 3, (6, 5, 4), torch.Generator().manual_seed(2))
    X, v = torch.rand(9, 3, dtype=torch.float64), torch.randn(3, 9, dtype=torch.float64)
    leaves = [p.clone().requires_grad_() for p in params]
    expected = torch.autograd.grad((mlp_forward(leaves, X) * v).sum(), leaves)
    out, vjp = mlp_vjp(params, X)
    torch.testing.assert_close(out, mlp_forward(params, X), rtol=0, atol=1e-14)
    for got, want in zip(vjp(v), expected, strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_flat_backpropagation_equals_autograd_on_the_stacked_network() -> None:
    sizes = (3, 6, 5, 4, 1)
    params = init_mlp(1, 3, sizes[1:-1], torch.Generator().manual_seed(4))
    theta = flatten(params).requires_grad_()
    X, v = torch.rand(9, 3, dtype=torch.float64), torch.randn(9, dtype=torch.float64)
    (expected,) = torch.autograd.grad(
        (mlp_forward(unflatten(theta, params), X)[0] * v).sum(), theta)
    out, vjp = flat_mlp_vjp(theta.detach(), sizes, X)
    torch.testing.assert_close(out, mlp_forward(params, X)[0], rtol=0, atol=1e-14)
    torch.testing.assert_close(vjp(v), expected, rtol=1e-12, atol=1e-14)


def test_features_backpropagation_equals_autograd() -> None:
    params = init_mlp(2, 3, (6, 5), torch.Generator().manual_seed(5), head=False)
    X = torch.rand(7, 3, dtype=torch.float64)
    cotangent = torch.randn(2, 7, 5, dtype=torch.float64)
    leaves = [p.clone().requires_grad_() for p in params]
    expected = torch.autograd.grad((mlp_features(leaves, X) * cotangent).sum(), leaves)
    features, vjp = mlp_features_vjp(params, X)
    torch.testing.assert_close(features, mlp_features(params, X), rtol=0, atol=1e-14)
    for got, want in zip(vjp(cotangent), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
