"""What the engine needs from torch.distributed: reductions over a process group, and knowing
when parameters are partitioned across ranks.

Two situations need a collective inside an optimizer (see ``Reduction`` in the engine):

* **partitioned parameters** (``ZeroRedundancyOptimizer``, or any hand-made split): each rank
  updates different tensors, so a statistic over a whole param group (AdaGrad-Norm's global
  squared gradient norm) is a sum of per-rank partial sums: ``shard_group=`` names the group
  that sums them;
* **replicated parameters with local estimates** (DDP with curvature optimizers): Hessian-vector
  products and resampled-label gradients bypass DDP's gradient hooks, so the estimates are
  averaged over ``process_group=`` to equal those of the whole batch.

Sharded DTensor parameters (FSDP2) need neither: their reductions are DTensor operations whose
partial results torch all-reduces itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_reduce", "built_by_zero", "check_process_group", "full_like_layout", "is_dtensor",
           "process_group", "world_size"]

_ZERO_MODULE = "torch.distributed.optim.zero_redundancy_optimizer"


def process_group(group: Any) -> Any:
    """``group``, with ``"world"`` standing for the default group (a name, unlike a group
    object, survives the pickling ZeroRedundancyOptimizer does to its param groups)."""
    return dist.group.WORLD if group == "world" else group


def check_process_group(owner: str, name: str, group: Any) -> Any:
    """``group`` if it names a process group: ``None``, ``"world"`` or a
    ``torch.distributed.ProcessGroup`` (``TypeError`` naming ``owner`` and ``name`` if not)."""
    if group is None or group == "world":
        return group
    kind = getattr(dist, "ProcessGroup", None)
    if kind is not None and isinstance(group, kind):
        return group
    raise TypeError(f"{owner}: {name} must be None, 'world' or a torch.distributed process "
                    f"group, got {group!r}"[:300])


def world_size(group: Any) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(process_group(group))


def all_reduce(tensors: Sequence[Tensor], group: Any, *, average: bool = False) -> None:
    """Sum (or average) ``tensors`` in place over ``group``, in one collective per dtype."""
    group = process_group(group)
    if world_size(group) == 1 or not tensors:
        return
    by_dtype: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault((t.dtype, t.device), []).append(t)
    for members in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in members])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        if average:
            flat /= world_size(group)
        for t, part in zip(members, flat.split([t.numel() for t in members])):
            t.detach().copy_(part.view_as(t))


def built_by_zero() -> bool:
    """Whether the optimizer being constructed is ``ZeroRedundancyOptimizer``'s local one
    (which sees only this rank's partition of the parameters)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == _ZERO_MODULE:
            return True
        frame = frame.f_back
    return False


def is_dtensor(t: Tensor) -> bool:
    return type(t).__name__ == "DTensor"


def full_like_layout(p: Tensor, shape: tuple[int, ...], value: float) -> Tensor:
    """A ``shape`` tensor of ``value`` laid out like ``p``: for a DTensor, sharded where ``p``
    is sharded along a dimension the new shape keeps (per-row state of a Shard(0) tensor),
    replicated otherwise (a per-tensor scalar)."""
    t = torch.full(shape, value, dtype=p.dtype, device=p.device)
    if not is_dtensor(p):
        return t
    from torch.distributed.tensor import Replicate, distribute_tensor

    placements = [pl if pl.is_shard() and pl.dim < len(shape) and shape[pl.dim] == p.shape[pl.dim]
                  else Replicate() for pl in p.placements]
    return distribute_tensor(t, p.device_mesh, placements)
