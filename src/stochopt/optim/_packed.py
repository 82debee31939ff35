"""The default path on the CPU, packed: small parameters flattened into one tensor, so that an
elementwise rule pays one torch call per operation for many of them.

On the CPU a ``torch._foreach_*`` call runs its kernel once per tensor, about 1.5 µs each,
which is more than the arithmetic of a tensor of a few thousand values: on a small transformer
the lifted rule (:mod:`stochopt.optim._lifted`) spends most of its time there. Here the
parameters of a bucket are cut into *packs* of consecutive parameters of at most
:data:`PACK_BYTES` in all (a larger parameter is a pack of its own). For each pack in turn the
parameter, gradient and states are flattened and concatenated (one C++ call each), the rule
runs on the flat tensors, and the results are copied back, one ``torch._foreach_copy_`` per
tensor kind, while the pack is still in the cache.

Only a rule made of elementwise operations means the same on a pack as on each of its
parameters. The first pack of a rule (for each setting of its flags) runs as a
:class:`Packed` list, which refuses anything else (a reduction, a shape, an index) with
:class:`~stochopt.optim._lifted.NotLiftableError` before anything is written; the engine then
runs that rule lifted, parameter by parameter. Parameters whose coefficients differ (one that
missed a step has its own step count) or whose tensors have other dtypes go in different
packs, so every pack sees one value of each coefficient, as each of its parameters does.

Each value goes through the same torch operations in the same order as tensor by tensor, so
additions, multiplications, divisions and square roots give the same bits; a few functions
that CPU kernels compute differently in their vectorized body and their scalar tail (for
example ``sigmoid`` in float64, ``pow`` with a fractional exponent in float32) may differ in
the last place for values a pack moves across that boundary (tested against the
tensor-by-tensor run).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

from stochopt.optim._lifted import Lifted, NotLiftableError, items, liftable, static_key
from stochopt.optim._storage import StateStorage, compute_precision

# one C++ call per pack, where Python would pay a call per tensor
flatten_dense_tensors = torch._C._nn.flatten_dense_tensors
unflatten_dense_tensors = torch._C._nn.unflatten_dense_tensors

__all__ = ["PACK_BYTES", "Packed", "apply_packed"]

#: bytes per packed tensor (in the compute precision): enough values that a torch call's
#: overhead (~1.5 µs) is small against its arithmetic, few enough that a rule's temporaries
#: stay in a core's cache and below glibc's mmap threshold (128 KiB: a larger buffer is
#: mapped, and page-faulted, afresh by each operation)
PACK_BYTES = 1 << 16

#: what a rule may do to packs: operations that act on each value alone
ELEMENTWISE: frozenset[Any] = frozenset({
    *(getattr(Tensor, name) for name in (
        "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
        "__rtruediv__", "__pow__", "__rpow__", "__neg__", "__abs__", "__lt__", "__le__",
        "__gt__", "__ge__", "__eq__", "__ne__", "__and__", "__or__", "__invert__",
        "add", "sub", "mul", "div", "pow", "neg", "abs", "sqrt", "rsqrt", "square", "sign",
        "exp", "log", "log1p", "expm1", "sigmoid", "tanh", "reciprocal", "clamp", "clip",
        "clamp_min", "clamp_max", "lerp", "addcmul", "addcdiv", "to", "float", "double",
        "isfinite", "isnan", "nan_to_num", "copysign", "logical_and", "logical_or",
        "logical_not", "maximum", "minimum")),
    *(getattr(torch, name) for name in (
        "add", "sub", "mul", "div", "pow", "neg", "abs", "sqrt", "rsqrt", "square", "sign",
        "exp", "log", "log1p", "expm1", "sigmoid", "tanh", "reciprocal", "clamp", "clip",
        "clamp_min", "clamp_max", "lerp", "addcmul", "addcdiv", "where", "maximum", "minimum",
        "isfinite", "isnan", "nan_to_num", "copysign", "logical_and", "logical_or",
        "logical_not", "zeros_like", "ones_like", "full_like", "eq", "ne", "lt", "le", "gt",
        "ge")),
})

#: attributes a rule may read off a pack: the same for the pack as for each parameter
ATTRIBUTES = frozenset({"dtype", "device", "is_cuda", "layout"})


class Packed(Lifted):
    """A list of packs: elementwise operations only (see the module's docstring)."""

    __slots__ = ()

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func not in ELEMENTWISE:
            raise NotLiftableError(f"{getattr(func, '__name__', func)} is not elementwise")
        return super().__torch_function__(func, types, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name not in ATTRIBUTES and not callable(getattr(Tensor, name, None)):
            raise NotLiftableError(f"a pack's {name} is not its parameters'")
        return super().__getattr__(name)


#: (rule, static hyperparameters) found not packable: run lifted without trying
_UNPACKABLE: set[tuple[Any, Hashable]] = set()
#: (rule, static hyperparameters) seen to be elementwise: run on plain flat tensors
_ELEMENTWISE_RULES: set[tuple[Any, Hashable]] = set()


def apply_packed(rule: Callable[..., Any], storage: StateStorage, params: list[Tensor],
                 inputs: list[Tensor], states: list[dict[str, Tensor]],
                 coefficient_type: type, coefficients: tuple[Tensor, ...], h: Any) -> bool:
    """The engine's ``_apply`` with ``rule`` run once per pack, each pack written back
    before the next is read (while it is in the cache); ``False`` (nothing written) where it
    cannot be: off the CPU (``torch._foreach_*`` is fast there), what
    :func:`~stochopt.optim._lifted.liftable` refuses, states shaped unlike their parameter,
    or a rule that is not elementwise (found on the first pack, before anything is written).

    A rule's Python control flow depends on its static hyperparameters only (a branch on a
    tensor's value is not liftable), so a rule seen elementwise once, under :class:`Packed`,
    runs on plain flat tensors from then on.
    """
    key = (rule, static_key(h))
    if (not params or key in _UNPACKABLE or params[0].device.type != "cpu"
            or not liftable(storage, params, inputs, states)):
        return False
    names = storage.names(states[0])
    if any(s[name].shape != p.shape for p, s in zip(params, states) for name in names):
        return False
    for members, c in _kinds(params, inputs, states, names, coefficient_type, coefficients):
        itemsize = compute_precision(params[members[0]]).element_size()
        for pack in _packs([params[i].numel() for i in members], PACK_BYTES // itemsize):
            ps = [params[members[i]] for i in pack]
            lists = {name: [states[members[i]][name] for i in pack] for name in names}
            args = (_flat(ps), _flat([inputs[members[i]] for i in pack]),
                    {name: _flat(lists[name]) for name in names}, c, h)
            if key not in _ELEMENTWISE_RULES:
                try:
                    new_p, new_values = _checked(rule, *args)
                except Exception:
                    _UNPACKABLE.add(key)
                    return False
                _ELEMENTWISE_RULES.add(key)
            else:
                new_p, new_values = rule(*args)
            if new_p is not None:
                torch._foreach_copy_(ps, _unflat(new_p, ps))
            for name, value in new_values.items():
                torch._foreach_copy_(lists[name], _unflat(value, ps))
    return True


def _checked(rule: Callable[..., Any], p: Tensor, x: Tensor, values: dict[str, Tensor],
             c: Any, h: Any) -> tuple[Tensor | None, dict[str, Tensor]]:
    """``rule`` on one pack, refusing anything but elementwise operations."""
    new_p, new_values = rule(Packed([p]), Packed([x]),
                             {name: Packed([v]) for name, v in values.items()}, c, h)
    return (None if new_p is None else items(new_p, 1)[0],
            {name: items(v, 1)[0] for name, v in new_values.items()})


def _kinds(params: list[Tensor], inputs: list[Tensor], states: list[dict[str, Tensor]],
           names: list[str], coefficient_type: type, coefficients: tuple[Tensor, ...]
           ) -> list[tuple[list[int], Any]]:
    """The parameters that may share packs (equal coefficients, tensors of equal dtypes), in
    order, each kind with its coefficients as 0-d tensors."""
    rows = torch.stack(coefficients, 1).tolist() if coefficients else [[]] * len(params)
    kinds: dict[Hashable, list[int]] = {}
    for i, (row, x, state) in enumerate(zip(rows, inputs, states)):
        dtypes = (x.dtype, *(state[name].dtype for name in names))
        kinds.setdefault((tuple(row), dtypes), []).append(i)
    return [(members, coefficient_type(*(vector[members[0]] for vector in coefficients)))
            for members in kinds.values()]


def _packs(sizes: list[int], most: int) -> list[list[int]]:
    """Consecutive positions cut into packs of at most ``most`` values (or one larger)."""
    packs: list[list[int]] = []
    total = 0
    for position, size in enumerate(sizes):
        if not packs or total + size > most:
            packs.append([])
            total = 0
        packs[-1].append(position)
        total += size
    return packs


def _flat(tensors: list[Tensor]) -> Tensor:
    """The tensors flattened and concatenated, in the compute precision (the tensor's own
    storage where there is one contiguous tensor)."""
    return compute_precision(flatten_dense_tensors(tensors))


def _unflat(value: Tensor, like: list[Tensor]) -> list[Tensor]:
    """A rule's result on a pack, viewed as one tensor per parameter (shaped like ``like``)."""
    if value.ndim == 0:  # a plain 0-d result: every parameter's
        return [value.expand_as(t) for t in like]
    return unflatten_dense_tensors(value, like)
