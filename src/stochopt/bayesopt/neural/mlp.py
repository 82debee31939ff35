"""Stacks of small tanh MLPs evaluated together: ``E`` networks' layers are batched into one
``baddbmm`` per layer, which is what ensembles and posterior samples need."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["flatten", "init_mlp", "mlp_features", "mlp_forward", "unflatten"]

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
