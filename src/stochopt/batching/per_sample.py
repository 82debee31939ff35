"""Per-sample gradients with ``torch.func`` (one vectorized pass, no Python loop)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from stochopt._checks import show

__all__ = ["flat_per_sample", "per_sample_gradients"]


def per_sample_gradients(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor],
                         inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """The gradient of ``loss_fn(model(x_i), y_i)`` for each example ``i``, per parameter.

    Args:
        model: a module with at least one trainable parameter, differentiated.
        loss_fn: loss of a batch (it sees a batch of one example), returning a scalar.
        inputs: the batch, ``(B, ...)``, ``B >= 1``.
        targets: its targets, ``(B, ...)``.

    Returns:
        ``{name: tensor of shape (B, *param.shape)}`` for every trainable parameter.

    Raises:
        TypeError, ValueError: a bad argument (checked first), or a ``loss_fn`` that does not
            return a scalar. Errors of the model's own forward pass are the model's.
    """
    owner = "per_sample_gradients"
    if not isinstance(model, nn.Module):
        raise TypeError(f"{owner}: model must be a torch.nn.Module, got {show(model)}")
    if not callable(loss_fn):
        raise TypeError(f"{owner}: loss_fn must be callable, got {show(loss_fn)}")
    _batch_size(owner, inputs=inputs, targets=targets)
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(f"{owner}: model has no parameter that requires grad")
    buffers = dict(model.named_buffers())

    def one(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = torch.func.functional_call(model, (params, buffers), (x.unsqueeze(0),))
        loss = loss_fn(out, y.unsqueeze(0))
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            got = f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else show(loss)
            raise ValueError(f"{owner}: loss_fn must return a scalar loss for a batch of one "
                             f"example, got {got}; reduce it (e.g. .mean())")
        return loss.reshape(())

    return torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(params, inputs, targets)


def _batch_size(owner: str, **tensors: Any) -> int:
    """The common leading size ``B >= 1`` of ``tensors``."""
    sizes = {}
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{owner}: {name} must be a tensor of shape (B, ...), got {show(t)}")
        if t.ndim == 0 or t.shape[0] == 0:
            raise ValueError(f"{owner}: {name} must have shape (B, ...) with B >= 1, got "
                             f"{tuple(t.shape)}")
        sizes[name] = t.shape[0]
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise ValueError(f"{owner}: {' and '.join(sizes)} must hold the same number of "
                         f"examples B (their first size), got {shown}")
    return next(iter(sizes.values()))


def flat_per_sample(grads: Mapping[str, Tensor]) -> Tensor:
    """Per-sample gradients as one matrix ``(B, P)``.

    Raises:
        TypeError, ValueError: ``grads`` is not a non-empty mapping of tensors of shape
            ``(B, ...)`` with one ``B``.
    """
    owner = "flat_per_sample"
    if not isinstance(grads, Mapping):
        raise TypeError(f"{owner}: grads must be a dict of per-sample gradients (name -> "
                        f"tensor of shape (B, ...)), got {show(grads)}")
    if not grads:
        raise ValueError(f"{owner}: grads must hold at least one parameter's gradients, got "
                         f"an empty dict")
    _batch_size(owner, **{str(k): v for k, v in grads.items()})
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)
