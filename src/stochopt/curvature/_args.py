"""Argument checks shared by the curvature functions: each names the function and the
argument, shows the bad value and says what is allowed (``TypeError`` for the wrong kind of
value, ``ValueError`` for a wrong value)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import show

__all__ = ["check_callable", "check_generator", "check_logits", "check_operator_output",
           "check_requires_grad", "check_scalar_loss", "check_tensors", "first_nonfinite",
           "tensor_list"]


def check_generator(owner: str, generator: Any, name: str = "generator") -> torch.Generator:
    """``generator`` if it is a ``torch.Generator``."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: {name} must be a torch.Generator (e.g. "
                        f"torch.Generator().manual_seed(0)), got {show(generator)}")
    return generator


def tensor_list(owner: str, name: str, values: Any, *, allow_none: bool = False
                ) -> list[Tensor | None]:
    """``values`` as a list of tensors (``None`` entries too if ``allow_none``)."""
    if isinstance(values, Tensor | str) or not isinstance(values, Sequence):
        raise TypeError(f"{owner}: {name} must be a list or tuple of tensors, got "
                        f"{show(values)}")
    for i, v in enumerate(values):
        if not (isinstance(v, Tensor) or (allow_none and v is None)):
            raise TypeError(f"{owner}: {name}[{i}] must be a tensor, got {show(v)}")
    return list(values)


def check_tensors(owner: str, like: Sequence[Tensor], like_name: str,
                  **others: Sequence[Any]) -> None:
    """Each sequence in ``others`` is a list of tensors, one per tensor of ``like``, shaped
    like it."""
    tensor_list(owner, like_name, like)
    for name, values in others.items():
        values = tensor_list(owner, name, values)
        if len(values) != len(like):
            raise ValueError(f"{owner}: {name} has {len(values)} tensors, {like_name} "
                             f"{len(like)}; give one per entry of {like_name}")
        for i, (v, p) in enumerate(zip(values, like)):
            if v.shape != p.shape:
                raise ValueError(f"{owner}: {name}[{i}] has shape {tuple(v.shape)}, "
                                 f"{like_name}[{i}] {tuple(p.shape)}")


def check_requires_grad(owner: str, params: Sequence[Tensor], name: str = "params") -> None:
    """Each of ``params`` requires grad (so that derivatives with respect to it exist)."""
    for i, p in enumerate(params):
        if not p.requires_grad:
            raise ValueError(f"{owner}: {name}[{i}] does not require grad, so no derivative "
                             f"with respect to it exists")


def check_logits(owner: str, logits: Any, *, graph: bool, finite: bool = True) -> Tensor:
    """``logits`` as a floating tensor of shape ``(..., V)`` with at least one prediction,
    with a gradient graph if ``graph`` and only finite values if ``finite``."""
    if not isinstance(logits, Tensor):
        raise TypeError(f"{owner}: logits must be a tensor of shape (..., V), got "
                        f"{show(logits)}")
    if not logits.is_floating_point():
        raise TypeError(f"{owner}: logits must be a floating-point tensor, got dtype "
                        f"{logits.dtype}")
    if logits.ndim == 0 or logits.numel() == 0:
        raise ValueError(f"{owner}: logits must have shape (..., V): at least one prediction "
                         f"over V >= 1 classes, got shape {tuple(logits.shape)}")
    if graph and not logits.requires_grad:
        raise ValueError(f"{owner}: logits have no gradient graph (they were detached or "
                         f"computed under torch.no_grad()); pass the model's outputs as "
                         f"the loss was computed from them")
    if finite and not bool(torch.isfinite(logits.detach()).all()):
        raise ValueError(f"{owner}: logits must be finite, got a NaN or infinite entry (no "
                         f"labels can be sampled from them)")
    return logits


def check_scalar_loss(owner: str, loss: Any, name: str = "loss") -> Tensor:
    """``loss`` as a floating tensor of one element with a gradient graph."""
    if not isinstance(loss, Tensor):
        raise TypeError(f"{owner}: {name} must be a scalar tensor with a gradient graph, got "
                        f"{show(loss)}")
    if loss.numel() != 1:
        raise ValueError(f"{owner}: {name} must be a scalar (one element), got shape "
                         f"{tuple(loss.shape)}; reduce it first (e.g. .mean())")
    if not (loss.is_floating_point() or loss.is_complex()):
        raise TypeError(f"{owner}: {name} must be a floating-point tensor, got dtype "
                        f"{loss.dtype}")
    if not loss.requires_grad:
        raise ValueError(f"{owner}: {name} has no gradient graph (it was detached or "
                         f"computed under torch.no_grad()); it must depend on the parameters")
    return loss


def check_operator_output(owner: str, value: Any, n: int) -> Tensor:
    """An operator's output: a tensor of shape ``(n,)``."""
    if not isinstance(value, Tensor) or value.shape != (n,):
        got = show(value) if not isinstance(value, Tensor) else f"shape {tuple(value.shape)}"
        raise ValueError(f"{owner}: operator must map vectors of shape ({n},) to shape "
                         f"({n},), got {got}")
    return value


def first_nonfinite(tensors: Sequence[Tensor | None]) -> int | None:
    """The index of the first tensor with a NaN or infinite entry, or ``None``; one device
    synchronization per device when all are finite."""
    flags: dict[torch.device, list[Tensor]] = {}
    for t in tensors:
        if t is not None and t.numel():
            flags.setdefault(t.device, []).append(torch.isfinite(_local(t)).all())
    if all(bool(torch.stack(f).all()) for f in flags.values()):
        return None
    for i, t in enumerate(tensors):
        if t is not None and t.numel() and not bool(torch.isfinite(_local(t)).all()):
            return i
    return None


def _local(t: Tensor) -> Tensor:
    """This rank's shard of a DTensor (its own values), else ``t``."""
    return t.to_local() if type(t).__name__ == "DTensor" else t


def check_callable(owner: str, name: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise TypeError(f"{owner}: {name} must be callable, got {show(value)}")
    return value
