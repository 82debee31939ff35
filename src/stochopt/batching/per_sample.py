"""Per-sample gradients with ``torch.func`` (one vectorized pass, no Python loop)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["flat_per_sample", "per_sample_gradients"]


def per_sample_gradients(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                         inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """The gradient of ``loss_fn(model(x_i), y_i)`` for each example ``i``, per parameter.

    Args:
        model: a module whose trainable parameters are differentiated.
        loss_fn: loss of a batch (it sees a batch of one example).
        inputs: the batch, ``(B, ...)``.
        targets: its targets, ``(B, ...)``.

    Returns:
        ``{name: tensor of shape (B, *param.shape)}`` for every trainable parameter.
    """
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def one(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = torch.func.functional_call(model, (params, buffers), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    return torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(params, inputs, targets)


def flat_per_sample(grads: dict[str, Tensor]) -> Tensor:
    """Per-sample gradients as one matrix ``(B, P)``."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)
