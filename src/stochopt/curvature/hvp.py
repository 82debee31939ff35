"""Hessian-vector products: by double backward through an existing gradient graph, or by
forward-over-reverse differentiation of a function with ``torch.func``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["flatten", "hvp", "hvp_func", "hvp_operator", "unflatten"]


def hvp(grads: Sequence[Tensor], params: Sequence[Tensor], vectors: Sequence[Tensor],
        retain_graph: bool = True) -> list[Tensor]:
    r""":math:`H v` from gradients that carry their graph (``backward(create_graph=True)``
    or ``autograd.grad(..., create_graph=True)``): the gradient of :math:`\langle g, v\rangle`.

    Args:
        grads: gradients of the loss with respect to ``params``, with ``grad_fn``.
        params: the parameters, each shape ``(*s_i)``.
        vectors: one tensor per parameter, shape ``(*s_i)``.
        retain_graph: keep the graph for further products (default True).

    Returns:
        One tensor per parameter, shape ``(*s_i)``; zeros where the loss does not depend on it.
        A gradient without a graph is constant in the parameters (its Hessian rows are zero),
        but if none has one they were computed without ``create_graph``, which is an error.
    """
    live = [i for i, g in enumerate(grads) if g.grad_fn is not None]
    if not live:
        raise ValueError(
            "hvp: the gradients have no graph; compute them with "
            "loss.backward(create_graph=True) or torch.autograd.grad(..., create_graph=True)")
    products = torch.autograd.grad([grads[i] for i in live], list(params),
                                   grad_outputs=[vectors[i] for i in live],
                                   retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if hv is None else hv for p, hv in zip(params, products)]


def hvp_func(loss_fn: Callable[..., Tensor], params: Sequence[Tensor],
             vectors: Sequence[Tensor]) -> list[Tensor]:
    """:math:`H v` of ``loss_fn(*params)`` by forward-over-reverse (``torch.func.jvp`` of
    ``torch.func.grad``); builds no graph that outlives the call."""
    argnums = tuple(range(len(params)))
    gradient = torch.func.grad(loss_fn, argnums=argnums)
    _, products = torch.func.jvp(gradient, tuple(params), tuple(vectors))
    return list(products)


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one vector, shape ``(sum numel,)``."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a vector into tensors shaped like ``like`` (the inverse of :func:`flatten`)."""
    parts = vector.split([t.numel() for t in like])
    return [part.view_as(t) for part, t in zip(parts, like)]


def hvp_operator(loss: Tensor, params: Sequence[Tensor]) -> Callable[[Tensor], Tensor]:
    """The Hessian of ``loss`` as a function of flat vectors ``(n,) -> (n,)``.

    The gradient graph lives as long as the returned function; drop it to free memory.
    """
    params = list(params)
    grads = torch.autograd.grad(loss, params, create_graph=True)

    def operator(v: Tensor) -> Tensor:
        return flatten(hvp(grads, params, unflatten(v, params))).detach()

    return operator
