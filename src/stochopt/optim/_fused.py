"""The fused path's plan: which compiled graph serves which parameter, so that an optimizer
compiles once, whatever its param groups and whichever parameters have gradients.

The fused path runs the engine's ``_apply`` under ``torch.compile``. Compiled over a group's
whole list of parameters, as it first was, the graph is unrolled over that list: tracing it
takes seconds per hundred tensors (on every first step, since tracing is not cached on disk),
each param group needs its own graph, and a parameter that has no gradient at some step
changes the list and compiles again. Here the list is cut into *buckets* of :data:`BUCKET`
parameters instead, each parameter seen as a 1-d view, and every size is a symbol
(``mark_dynamic``): one graph serves every bucket of the same *layout* (the rule, its static
hyperparameters, the parameter, gradient and state dtypes), in every group, at every step. A
missing gradient only changes which parameters fill the buckets; the last bucket of a group is
filled up with small dummy parameters that nothing reads.

Tracing one bucket costs the same for ten tensors or ten thousand, so with inductor's on-disk
caches warm (its FX graph cache and AOT autograd cache, on by default) the first step is mostly
that one trace. Rules that read a tensor's shape (reductions over rows or whole tensors) keep
it: their buckets hold one parameter, and their layout includes each tensor's rank. What fits
neither (fewer than two values, where torch specializes sizes 0 and 1; 8-bit state; tensor
subclasses such as DTensor; a parameter whose state is laid out differently) is returned to
the engine, which runs it as before.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stochopt.optim._storage import StateStorage

__all__ = ["BUCKET", "Bucket", "ViewCache", "plan"]

#: parameters per compiled call on the flat layout: the trace is unrolled over them, so more
#: means a longer first step and fewer calls (each ~50 µs of guards and dispatch) per step
BUCKET = 8


@dataclass
class Bucket:
    """One compiled call: ``members`` index the engine's lists; ``params``, ``inputs`` and
    ``states`` are the views the graph reads and writes, padded to the layout's size."""

    key: tuple[Hashable, ...]
    flat: bool
    members: list[int]
    params: list[Tensor]
    inputs: list[Tensor]
    states: list[dict[str, Tensor]]


def _plain(t: Tensor) -> bool:
    return type(t) in (Tensor, torch.nn.Parameter)


def _flat_views(names: list[str], p: Tensor, x: Tensor, state: dict[str, Tensor]
                ) -> tuple[Tensor, Tensor, dict[str, Tensor]] | None:
    """``p``, ``x`` and the states as 1-d views in one element order (the order of ``p`` in
    memory, so a transposed or channels-last parameter is flattened without a copy); the
    gradient may be copied (it is only read). ``None`` where a state cannot be viewed so.
    Views of detached tensors: graph inputs that never require grad, and fresh objects, so
    that :func:`mark_dynamic` leaves the user's tensors unmarked."""
    if any(state[name].shape != p.shape for name in names):
        return None
    order = sorted(range(p.ndim), key=lambda d: -p.stride(d))
    views = []
    for t in (p, *(state[name] for name in names)):
        t = t.detach().permute(order)
        if not t.is_contiguous():
            return None
        views.append(t.view(-1))
    return views[0], x.detach().permute(order).reshape(-1), dict(zip(names, views[1:]))


class ViewCache:
    """Each parameter's flat views (its own and its states'), made on its first step and kept
    while the tensors are the same objects at the same addresses, shapes and strides (a state
    replaced by ``load_state_dict``, a parameter whose ``.data`` was swapped or moved, is viewed
    afresh). Only the gradient, a new tensor at most steps, is viewed at every step. An entry
    goes when its parameter is freed (a ``WeakKeyDictionary`` would compare tensors with
    ``==``)."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Any, ...]] = {}

    def views(self, names: list[str], p: Tensor, x: Tensor, state: dict[str, Tensor]
              ) -> tuple[Tensor, Tensor, dict[str, Tensor]] | None:
        """:func:`_flat_views` of the arguments, from the cache where it holds them."""
        tensors = (p, *(state[name] for name in names))
        signature = tuple((id(t), t.data_ptr(), t.shape, t.stride()) for t in tensors)
        entry = self._entries.get(id(p))
        if entry is not None and entry[0] == signature:
            _, order, p_view, state_views = entry
            return p_view, x.detach().permute(order).reshape(-1), state_views
        views = _flat_views(names, p, x, state)
        if views is not None:
            if entry is None:
                weakref.finalize(p, self._entries.pop, id(p), None)
            order = sorted(range(p.ndim), key=lambda d: -p.stride(d))
            self._entries[id(p)] = (signature, order, views[0], views[2])
        return views


def _static(h: Any) -> tuple[Hashable, ...]:
    """The hyperparameters a graph is specialized on (flags, choices: not tensors)."""
    return tuple((name, value if isinstance(value, Hashable) else repr(value))
                 for name, value in zip(h._fields, h) if not isinstance(value, Tensor))


def plan(rule: Any, storage: StateStorage, params: list[Tensor], inputs: list[Tensor],
         states: list[dict[str, Tensor]], h: Any, coefficient_type: type,
         splittable: bool, cache: ViewCache) -> tuple[list[Bucket], list[int]]:
    """The buckets of the parameters the bucketed graphs serve, and the indices of the others.

    ``splittable``: whether the rule may see each parameter as a 1-d view (its update reads
    no shape); if not, every bucket holds one parameter in its own shape. ``cache`` keeps the
    views from step to step.
    """
    base = (rule, coefficient_type._fields, _static(h))
    open_buckets: dict[tuple[Hashable, ...], Bucket] = {}
    buckets, rest = [], []
    for i, (p, x, state) in enumerate(zip(params, inputs, states, strict=True)):
        names = storage.names(state)
        if (p.numel() < 2 or not all(_plain(t) for t in (p, x, *state.values()))
                or any(storage.is_quantized(state, name) for name in names)
                or x.shape != p.shape):
            rest.append(i)
            continue
        dtypes = (p.dtype, x.dtype, tuple((name, state[name].dtype) for name in names))
        views = cache.views(names, p, x, state) if splittable else None
        if views is not None:
            key = (*base, "flat", p.device, dtypes)
            bucket = open_buckets.get(key)
            if bucket is None or len(bucket.members) == BUCKET:
                bucket = open_buckets[key] = Bucket(key, True, [], [], [], [])
                buckets.append(bucket)
            _add(bucket, i, *views)
            continue
        if splittable or not p.is_contiguous():
            rest.append(i)  # a state laid out unlike its parameter
            continue
        ranks = tuple(tuple(n >= 2 for n in t.shape) for t in (p, *state.values()))
        bucket = Bucket((*base, "shaped", p.device, dtypes, ranks), False, [], [], [], [])
        # 0-d states as 1-element views: torch 2.13 drops in-place updates of 0-d float64
        # CPU graph inputs
        _add(bucket, i, p.detach(), x.detach(),
             {name: state[name].detach().view(state[name].shape or (1,)) for name in names})
        buckets.append(bucket)
    return buckets, rest


def _add(bucket: Bucket, i: int, p: Tensor, x: Tensor, state: dict[str, Tensor]) -> None:
    bucket.members.append(i)
    bucket.params.append(p)
    bucket.inputs.append(x)
    bucket.states.append(state)


def pad(bucket: Bucket, dummies: dict[tuple[Hashable, ...], Bucket]) -> None:
    """Fill a flat bucket up to :data:`BUCKET` parameters with dummies of its layout (made
    once per layout; two values each, as sizes 0 and 1 would be specialized)."""
    missing = BUCKET - len(bucket.members)
    if not bucket.flat or missing == 0:
        return
    if bucket.key not in dummies:
        p, x, state = bucket.params[0], bucket.inputs[0], bucket.states[0]
        dummies[bucket.key] = Bucket(bucket.key, True, [], [
            p.new_zeros(2) for _ in range(BUCKET)], [x.new_zeros(2) for _ in range(BUCKET)], [
            {name: value.new_zeros(2) for name, value in state.items()}
            for _ in range(BUCKET)])
    filler = dummies[bucket.key]
    bucket.params += filler.params[:missing]
    bucket.inputs += filler.inputs[:missing]
    bucket.states += filler.states[:missing]


def mark_dynamic(bucket: Bucket) -> None:
    """Make every size of the bucket's views a symbol of the graph about to be traced. The
    marks go on fresh aliases of the views: the user's tensors and the cached views (see
    :class:`ViewCache`) stay unmarked, since a marked tensor passed to a graph traced from
    unmarked ones would compile it again."""
    def marked(t: Tensor) -> Tensor:
        t = t.view(t.shape)
        for dim, size in enumerate(t.shape):
            if size >= 2:
                torch._dynamo.maybe_mark_dynamic(t, dim)
        return t

    bucket.params = [marked(t) for t in bucket.params]
    bucket.inputs = [marked(t) for t in bucket.inputs]
    bucket.states = [{name: marked(t) for name, t in state.items()} for state in bucket.states]
