"""The reference path, lifted to lists: an update rule run once for all parameters of a bucket.

A rule is written on one tensor (``beta * m + (1 - beta) * g``). Run tensor by tensor, each
of its operations is a Python-level torch call per parameter, which costs more than the
arithmetic on the small tensors of most models, and twice what ``torch.optim``'s for-loop
pays. :class:`Lifted` holds one tensor per parameter and implements torch's operations on
such lists: arithmetic and the common unary functions as one ``torch._foreach_*`` call,
anything else tensor by tensor. Each tensor sees exactly the operations, arguments and
order of the tensor-by-tensor run; on the CPU ``torch._foreach_*`` runs the same kernels one
tensor at a time, so the results are bit for bit those of the tensor-by-tensor run (tested).

A rule whose Python control flow depends on a tensor (``if g.ndim >= 2``, a shape that differs
between parameters) cannot be lifted: :class:`NotLiftableError` is raised before anything is
written, and the engine runs that rule tensor by tensor from then on.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

from stochopt.optim._storage import StateStorage, compute_precision

__all__ = ["Lifted", "NotLiftableError", "apply_lifted", "items", "liftable", "static_key"]


class NotLiftableError(Exception):
    """The rule reads something that differs between the parameters of a list."""


def _is_scalar(value: Any) -> bool:
    """A value every tensor of a list combines with alike: a number or a 0-d plain tensor."""
    return isinstance(value, int | float) or (type(value) is Tensor and value.ndim == 0)


def _scalar(value: Any, like: Lifted) -> Any:
    """A scalar operand as a 0-d tensor of the list's dtype (all its tensors share one, and
    none is 0-d: see :func:`_uniform`).

    Not a change of value: torch casts a scalar to the other operand's dtype before it
    computes (a 0-d tensor does not take part in type promotion). But with the dtypes equal
    the CPU kernels run vectorized, about twice as fast as their casting loop.
    """
    dtype = like.common_dtype
    if isinstance(value, bool) or (
            isinstance(value, Tensor) and (value.dtype == dtype or value.is_complex())):
        return value
    if isinstance(value, Tensor):
        return value.to(dtype)
    return torch.tensor(value, dtype=dtype, device=like.items[0].device)


def _commutative(foreach: Callable[..., list[Tensor]]) -> Callable[[Any, Any], Any]:
    """An operation whose operands commute exactly (add, mul): a scalar on either side."""
    def op(a: Any, b: Any) -> Any:
        if isinstance(a, Lifted) and isinstance(b, Lifted):
            return foreach(a.items, b.items)
        if isinstance(a, Lifted) and _is_scalar(b):
            return foreach(a.items, _scalar(b, a))
        if isinstance(b, Lifted) and _is_scalar(a):
            return foreach(b.items, _scalar(a, b))
        return NotImplemented
    return op


_add, _mul = _commutative(torch._foreach_add), _commutative(torch._foreach_mul)


def _sub(a: Any, b: Any) -> Any:
    if isinstance(a, Lifted) and isinstance(b, Lifted):
        return torch._foreach_sub(a.items, b.items)
    if isinstance(a, Lifted) and _is_scalar(b):
        # torch's sub is add with alpha -1: the same kernel, the same bits
        return torch._foreach_add(a.items, _scalar(b, a), alpha=-1)
    if isinstance(b, Lifted) and _is_scalar(a):
        return torch._foreach_add(torch._foreach_neg(b.items), _scalar(a, b))  # a - x == -x + a
    return NotImplemented


def _div(a: Any, b: Any) -> Any:
    if isinstance(a, Lifted) and isinstance(b, Lifted):
        return torch._foreach_div(a.items, b.items)
    if isinstance(a, Lifted) and _is_scalar(b):
        return torch._foreach_div(a.items, _scalar(b, a))
    return NotImplemented


def _pow(a: Any, b: Any) -> Any:
    if isinstance(a, Lifted) and isinstance(b, int | float):
        return torch._foreach_pow(a.items, b)
    return NotImplemented


def _lists(foreach: Callable[..., list[Tensor]], a: Any, b: Any) -> Any:
    if isinstance(a, Lifted) and isinstance(b, Lifted):
        return foreach(a.items, b.items)
    return NotImplemented


def _swapped(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: fn(b, a)


def _unary(foreach: Callable[[list[Tensor]], list[Tensor]]) -> Callable[[Any], Any]:
    return lambda a: foreach(a.items) if isinstance(a, Lifted) else NotImplemented


#: torch functions done in one ``torch._foreach_*`` call (for the argument kinds they take)
_FOREACH: dict[Any, Callable[..., Any]] = {
    Tensor.__add__: _add, Tensor.__radd__: _add, torch.add: _add, Tensor.add: _add,
    Tensor.__sub__: _sub, Tensor.__rsub__: _swapped(_sub), torch.sub: _sub, Tensor.sub: _sub,
    Tensor.__mul__: _mul, Tensor.__rmul__: _mul, torch.mul: _mul, Tensor.mul: _mul,
    Tensor.__truediv__: _div, torch.div: _div, Tensor.div: _div,
    Tensor.__pow__: _pow, Tensor.pow: _pow, torch.pow: _pow,
    Tensor.__neg__: _unary(torch._foreach_neg), Tensor.neg: _unary(torch._foreach_neg),
    Tensor.sqrt: _unary(torch._foreach_sqrt), torch.sqrt: _unary(torch._foreach_sqrt),
    Tensor.abs: _unary(torch._foreach_abs), torch.abs: _unary(torch._foreach_abs),
    Tensor.sign: _unary(torch._foreach_sign), torch.sign: _unary(torch._foreach_sign),
    Tensor.exp: _unary(torch._foreach_exp), torch.exp: _unary(torch._foreach_exp),
    Tensor.log: _unary(torch._foreach_log), torch.log: _unary(torch._foreach_log),
    Tensor.sigmoid: _unary(torch._foreach_sigmoid),
    torch.sigmoid: _unary(torch._foreach_sigmoid), Tensor.__abs__: _unary(torch._foreach_abs),
    torch.maximum: lambda a, b: _lists(torch._foreach_maximum, a, b),
    torch.minimum: lambda a, b: _lists(torch._foreach_minimum, a, b),
}


def _uniform(args: tuple[Any, ...]) -> torch.dtype | None:
    """The one dtype of every tensor of every list among ``args``, none of them 0-d; else
    ``None``. Only then do ``torch._foreach_*`` ops promote types as the tensor-by-tensor
    ops do (with a scalar they keep a 0-d tensor's dtype, where it would promote)."""
    dtypes = {a.common_dtype for a in args if isinstance(a, Lifted)}
    return dtypes.pop() if len(dtypes) == 1 else None


def _one(value: Any, i: int) -> Any:
    """Argument ``value`` as tensor ``i`` of a list sees it."""
    if isinstance(value, Lifted):
        return value.items[i]
    if isinstance(value, tuple | list) and any(isinstance(v, Lifted) for v in value):
        return type(value)(_one(v, i) for v in value)
    return value


def _common(values: list[Any]) -> Any:
    """One value for a list whose tensors all give it; else the rule cannot be lifted."""
    first = values[0]
    if any(v != first for v in values[1:]):
        raise NotLiftableError(f"the parameters differ in a value the rule reads: {values}")
    return first


class Lifted:
    """One tensor per parameter, combined with numbers, 0-d tensors and other lists of the
    same length by torch's operations, entry by entry."""

    __slots__ = ("_dtype", "items")

    def __init__(self, items: list[Tensor]) -> None:
        self.items = items
        self._dtype: Any = ...  # not yet known

    @property
    def common_dtype(self) -> torch.dtype | None:
        """The dtype of every tensor of the list; ``None`` where they differ or one is 0-d
        (with a 0-d scalar, a 0-d tensor promotes: float32 and float64 compute in float64)."""
        if self._dtype is ...:
            first = self.items[0].dtype
            self._dtype = first if all(t.dtype == first and t.ndim for t in self.items) else None
        return self._dtype

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        fast = _FOREACH.get(func)
        dtype = _uniform(args) if fast is not None and not kwargs else None
        if dtype is not None:
            result = fast(*args)
            if result is not NotImplemented:
                lifted = cls(list(result))
                lifted._dtype = dtype  # the operands' (a scalar is cast to it)
                return lifted
        n = next(len(v.items) for v in (*args, *kwargs.values()) if isinstance(v, Lifted))
        results = [func(*(_one(a, i) for a in args), **{k: _one(v, i) for k, v in
                                                        kwargs.items()}) for i in range(n)]
        if all(isinstance(r, Tensor) for r in results):
            return cls(results)
        return _common(results)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(Tensor, name)
        if callable(attribute):
            return lambda *args, **kwargs: type(self).__torch_function__(
                attribute, (type(self),), (self, *args), kwargs)
        values = [getattr(t, name) for t in self.items]  # a shape, a dtype, ``.T``, ...
        return type(self)(values) if all(isinstance(v, Tensor) for v in values) else _common(values)

    def __bool__(self) -> bool:
        raise NotLiftableError("the rule branches on a tensor's value")

    def __len__(self) -> int:
        raise NotLiftableError("the rule takes the length of a tensor")


def _operator(name: str) -> Callable[..., Any]:
    method = getattr(Tensor, name)
    return lambda *args: type(args[0]).__torch_function__(method, (type(args[0]),), args)


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__truediv__", "__rtruediv__", "__pow__", "__rpow__", "__neg__", "__abs__",
              "__lt__", "__le__", "__gt__", "__ge__", "__and__", "__or__", "__invert__"):
    setattr(Lifted, _name, _operator(_name))
del _name

#: (rule, static hyperparameters) found not liftable: run tensor by tensor without trying
_UNLIFTABLE: set[tuple[Any, Hashable]] = set()


def apply_lifted(rule: Callable[..., Any], storage: StateStorage, params: list[Tensor],
                 inputs: list[Tensor], states: list[dict[str, Tensor]],
                 coefficient_type: type, coefficients: tuple[Tensor, ...], h: Any) -> bool:
    """The engine's ``_apply`` with ``rule`` run once on lists; ``False`` (nothing written)
    where it cannot be: tensor subclasses (DTensor), states of different names or 8-bit, or
    a rule that is not liftable (any exception while lifted: nothing is written before the
    rule returns, and the tensor-by-tensor run raises a genuine error again).

    A coefficient equal for every parameter (the usual case: one step count) is passed as
    one 0-d tensor, else as a list of them.
    """
    if not params:
        return True
    key = (rule, static_key(h))
    if key in _UNLIFTABLE or not liftable(storage, params, inputs, states):
        return False
    names = storage.names(states[0])
    c = coefficient_type(*(
        vector[0] if bool((vector == vector[0]).all()) else Lifted(list(vector.unbind()))
        for vector in coefficients))
    values = {name: Lifted([compute_precision(s[name]) for s in states]) for name in names}
    try:
        new_p, new_values = rule(Lifted([compute_precision(p) for p in params]),
                                 Lifted([compute_precision(x) for x in inputs]), values, c, h)
    except Exception:
        _UNLIFTABLE.add(key)
        return False
    if new_p is not None:
        torch._foreach_copy_(params, items(new_p, len(params)))
    for name, value in new_values.items():
        torch._foreach_copy_([s[name] for s in states], items(value, len(params)))
    return True


def liftable(storage: StateStorage, params: list[Tensor], inputs: list[Tensor],
             states: list[dict[str, Tensor]]) -> bool:
    """Whether lists can hold these tensors: plain ones (no DTensor), every parameter's state
    of the same names, none 8-bit."""
    names = storage.names(states[0])
    return (all(_plain(t) for t in (*params, *inputs))
            and not any(storage.names(s) != names or not all(_plain(s[n]) for n in names)
                        or any(storage.is_quantized(s, n) for n in names) for s in states))


def _plain(t: Tensor) -> bool:
    return type(t) in (Tensor, torch.nn.Parameter)


def static_key(h: Any) -> Hashable:
    """The hyperparameters a rule may branch on (flags, choices: not tensors)."""
    return tuple(repr(v) for v in h if not isinstance(v, Tensor))


def items(value: Any, n: int) -> list[Tensor]:
    """A rule's result as one tensor per parameter (a plain tensor is everyone's)."""
    return value.items if isinstance(value, Lifted) else [value] * n
