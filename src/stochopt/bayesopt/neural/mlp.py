"""Stacks of small tanh MLPs evaluated together: ``E`` networks' layers are batched into one
``baddbmm`` per layer, which is what ensembles and posterior samples need."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["flat_mlp_vjp", "flatten", "init_mlp", "mlp_features", "mlp_features_vjp",
           "mlp_forward", "mlp_vjp", "unflatten"]

Params = list[Tensor]  # [W1 (E, d, h1), b1 (E, 1, h1), ..., W_out (E, h_L, 1), b_out (E, 1, 1)]


def init_mlp(members: int, d: int, widths: Sequence[int], generator: torch.Generator,
             head: bool = True, dtype: torch.dtype = torch.float64) -> Params:
    """PyTorch's ``nn.Linear`` initialization, :math:`U(\\pm 1/\\sqrt{\\text{fan-in}})` for
    weights and biases, for ``members`` networks ``d -> widths -> 1`` (no output layer when
    ``head`` is false); drawn in float64, then cast to ``dtype``."""
    sizes = [d, *widths, 1] if head else [d, *widths]
    params: Params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1 / math.sqrt(fan_in)
        for shape in ((members, fan_in, fan_out), (members, 1, fan_out)):
            u = torch.rand(shape, generator=generator, dtype=torch.float64)
            params.append(((2 * u - 1) * bound).to(dtype))
    return params


def mlp_features(params: Params, X: Tensor) -> Tensor:
    """The last hidden layer of every network for inputs ``(m, d)``: ``(E, m, width)``;
    ``params`` holds only hidden layers."""
    h = X.to(params[0].dtype).expand(params[0].shape[0], *X.shape)
    for W, b in zip(params[0::2], params[1::2], strict=True):
        h = torch.tanh(torch.baddbmm(b, h, W))
    return h


def mlp_forward(params: Params, X: Tensor) -> Tensor:
    """Outputs of every network for inputs ``(m, d)``: ``(E, m)``."""
    h = mlp_features(params[:-2], X)
    return torch.baddbmm(params[-1], h, params[-2])[..., 0]


def mlp_features_vjp(params: Params, X: Tensor) -> tuple[Tensor, Callable[[Tensor], Params]]:
    r""":func:`mlp_features` ``(E, m, width)`` for hidden layers ``params``, and the map from
    a cotangent of the features to the gradient with respect to every parameter:
    backpropagation written out. With :math:`a_l = \tanh(a_{l-1} W_l + b_l)`:
    :math:`\partial W_l = a_{l-1}^\top g_l`, :math:`\partial b_l = 1^\top g_l`, where
    :math:`g_l = \bar a_l \odot (1 - a_l^2)` and :math:`\bar a_{l-1} = g_l W_l^\top`."""
    weights, biases = params[0::2], params[1::2]
    activations = [X.to(weights[0].dtype).expand(weights[0].shape[0], *X.shape)]
    for W, b in zip(weights, biases, strict=True):
        activations.append(torch.tanh(torch.baddbmm(b, activations[-1], W)))

    def vjp(cotangent: Tensor) -> Params:
        grads: Params = []
        for layer in range(len(weights) - 1, -1, -1):
            g = torch.ops.aten.tanh_backward(cotangent, activations[layer + 1])
            grads[:0] = [torch.bmm(activations[layer].transpose(1, 2), g),
                         g.sum(1, keepdim=True)]
            if layer:
                cotangent = torch.bmm(g, weights[layer].transpose(1, 2))
        return grads

    return activations[-1], vjp


def mlp_vjp(params: Params, X: Tensor) -> tuple[Tensor, Callable[[Tensor], Params]]:
    """Outputs ``(E, m)`` of every network for inputs ``(m, d)`` (as :func:`mlp_forward`),
    and the map from a cotangent ``v`` ``(E, m)`` to the gradient of ``<v, outputs>`` with
    respect to every parameter (shaped like ``params``): backpropagation written out (see
    :func:`mlp_features_vjp`), for samplers and ensembles that take ~10^4 gradients of small
    networks, where autograd's bookkeeping costs a third of the time."""
    features, features_vjp = mlp_features_vjp(params[:-2], X)
    W_out, b_out = params[-2], params[-1]
    out = torch.baddbmm(b_out, features, W_out)[..., 0]

    def vjp(v: Tensor) -> Params:
        g = v[..., None]  # the output layer is linear
        return [*features_vjp(torch.bmm(g, W_out.transpose(1, 2))),
                torch.bmm(features.transpose(1, 2), g), g.sum(1, keepdim=True)]

    return out, vjp


def _flat_layers(theta: Tensor, sizes: Sequence[int]) -> list[tuple[Tensor, Tensor]]:
    """Views ``(W (fan_in, fan_out), b (fan_out,))`` into ``theta``, in :func:`flatten`'s
    order, for the network ``sizes[0] -> ... -> sizes[-1]``."""
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    pieces = theta.split([n for fan_in, fan_out in pairs for n in (fan_in * fan_out, fan_out)])
    return [(W.view(shape), b) for W, b, shape in zip(pieces[0::2], pieces[1::2], pairs,
                                                      strict=True)]


def flat_mlp_vjp(theta: Tensor, sizes: Sequence[int], X: Tensor
                 ) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """:func:`mlp_vjp` for one network (``E = 1``) held as the vector ``theta`` (laid out
    as :func:`flatten` lays it out) with layer widths ``sizes`` (input, hidden..., 1):
    outputs ``(m,)`` and ``v (m,) ->`` the gradient of ``<v, outputs>`` as a vector. Plain
    matrix products on views of ``theta``, gradients written into one buffer: samplers take
    ~10^4 of these per fit, where the batched form's reshapes cost a third of the time."""
    layers = _flat_layers(theta, sizes)
    activations = [X.to(theta.dtype)]
    for W, b in layers[:-1]:
        activations.append(torch.tanh(torch.addmm(b, activations[-1], W)))
    out = torch.addmm(layers[-1][1], activations[-1], layers[-1][0])[:, 0]

    def vjp(v: Tensor) -> Tensor:
        grad = torch.empty_like(theta)
        g = v[:, None]
        for layer, (dW, db) in reversed(list(enumerate(_flat_layers(grad, sizes)))):
            if layer < len(layers) - 1:
                # tanh_backward(g, a) = g * (1 - a^2), the derivative through a = tanh(.)
                g = torch.ops.aten.tanh_backward(torch.mm(g, layers[layer + 1][0].T),
                                                 activations[layer + 1])
            torch.mm(activations[layer].T, g, out=dW)
            torch.sum(g, 0, out=db)
        return grad

    return out, vjp


def flatten(params: Params) -> Tensor:
    """One network's parameters (``E = 1``) as a vector."""
    return torch.cat([p.reshape(-1) for p in params])


def unflatten(theta: Tensor, like: Params) -> Params:
    """Inverse of :func:`flatten` for ``theta`` ``(P,)``, or ``(S, P)`` to stack ``S``
    networks shaped like ``like`` (``E = 1``)."""
    theta = theta.reshape(-1, theta.shape[-1])
    out, start = [], 0
    for p in like:
        size = p[0].numel()
        out.append(theta[:, start:start + size].reshape(theta.shape[0], *p.shape[1:]))
        start += size
    return out
