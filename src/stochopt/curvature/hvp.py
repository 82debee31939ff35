"""Hessian-vector products: by double backward through an existing gradient graph, or by
forward-over-reverse differentiation of a function with ``torch.func``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt.curvature._args import (
    check_callable,
    check_requires_grad,
    check_scalar_loss,
    check_tensors,
    tensor_list,
)

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

    Raises:
        TypeError, ValueError: lists of other lengths than ``params``, tensors of other
            shapes than their parameter's, or gradients without a graph.
    """
    check_tensors("hvp", params, "params", grads=grads, vectors=vectors)
    check_requires_grad("hvp", params)
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
    ``torch.func.grad``); builds no graph that outlives the call.

    Raises:
        TypeError, ValueError: ``vectors`` not shaped like ``params``, or a ``loss_fn`` that
            does not return a scalar.
    """
    check_callable("hvp_func", "loss_fn", loss_fn)
    check_tensors("hvp_func", params, "params", vectors=vectors)

    def scalar_loss(*args: Tensor) -> Tensor:
        loss = loss_fn(*args)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            got = f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else show(loss)
            raise ValueError(f"hvp_func: loss_fn must return a scalar tensor, got {got}")
        return loss.reshape(())

    argnums = tuple(range(len(params)))
    gradient = torch.func.grad(scalar_loss, argnums=argnums)
    _, products = torch.func.jvp(gradient, tuple(params), tuple(vectors))
    return list(products)


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one vector, shape ``(sum numel,)``."""
    if not tensor_list("flatten", "tensors", tensors):
        raise ValueError("flatten: tensors must hold at least one tensor, got an empty list")
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a vector into tensors shaped like ``like`` (the inverse of :func:`flatten`)."""
    like = tensor_list("unflatten", "like", like)
    total = sum(t.numel() for t in like)
    if not isinstance(vector, Tensor) or vector.shape != (total,):
        got = f"shape {tuple(vector.shape)}" if isinstance(vector, Tensor) else show(vector)
        raise ValueError(f"unflatten: vector must have shape ({total},) (the total size of "
                         f"like), got {got}")
    parts = vector.split([t.numel() for t in like])
    return [part.view_as(t) for part, t in zip(parts, like)]


def hvp_operator(loss: Tensor, params: Sequence[Tensor]) -> Callable[[Tensor], Tensor]:
    """The Hessian of ``loss`` as a function of flat vectors ``(n,) -> (n,)``.

    The gradient graph lives as long as the returned function; drop it to free memory.

    Raises:
        TypeError, ValueError: ``loss`` is not a scalar with a graph, or does not depend on
            one of ``params``.
    """
    check_scalar_loss("hvp_operator", loss)
    params = tensor_list("hvp_operator", "params", params)
    check_requires_grad("hvp_operator", params)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    unused = [i for i, g in enumerate(grads) if g is None]
    if unused:
        raise ValueError(f"hvp_operator: loss does not depend on params{unused}; pass only "
                         f"the parameters it is computed from")

    def operator(v: Tensor) -> Tensor:
        return flatten(hvp(grads, params, unflatten(v, params))).detach()

    return operator

