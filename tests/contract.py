"""The reliability contract (issue #20), as helpers the tests share.

Bad input raises only the library's documented exceptions (``ValueError``, ``TypeError``,
``OSError`` for files, :class:`~stochopt.errors.StochoptError`), never a Python-internal one,
with a message that names the argument or file; and a call that raises leaves the object as it
was. :func:`assert_clear_error` checks the first half, :func:`snapshot` and :func:`assert_same`
the second.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import types
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from typing import Any

import hypothesis
import numpy as np
import torch

from stochopt.errors import StochoptError

#: what bad input may raise
DOCUMENTED = (ValueError, TypeError, OSError, StochoptError)
#: internal errors that must never escape for bad input, even where they subclass a documented
#: one (a JSON decode error is a ValueError; it names neither the file nor the fix)
INTERNAL = (KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError,
            json.JSONDecodeError, UnicodeDecodeError, AssertionError, RecursionError)

#: bounded property-based runs: the whole hypothesis suite stays within about a minute.
#: ``STOCHOPT_PROPERTY_EXAMPLES=500`` runs a deeper, randomized search (for development).
_DEEP = os.environ.get("STOCHOPT_PROPERTY_EXAMPLES")
PROPERTIES = hypothesis.settings(max_examples=int(_DEEP) if _DEEP else 25, deadline=None,
                                 derandomize=not _DEEP, database=None,
                                 suppress_health_check=list(hypothesis.HealthCheck))


def assert_clear_error(error: BaseException, *names: str) -> None:
    """``error`` is documented, not internal, and its message mentions one of ``names``
    (the argument, the file, the key at fault); with no names, only the type is checked."""
    kind = type(error).__name__
    assert isinstance(error, DOCUMENTED), f"undocumented {kind}: {error}"
    internal = isinstance(error, INTERNAL) and not isinstance(error, StochoptError)
    assert not internal, f"internal {kind} escaped: {error}"
    is_torch_error = isinstance(error, RuntimeError) and not isinstance(error, StochoptError)
    assert not is_torch_error, f"a torch error escaped: {error}"
    message = str(error)
    assert message.strip(), f"{kind} without a message"
    if names:
        assert any(n in message for n in names), f"{kind} names none of {names}: {message}"


@contextmanager
def raises_clearly(*names: str, match: str | None = None):
    """Like ``pytest.raises(DOCUMENTED)``, with :func:`assert_clear_error` on the error."""
    try:
        yield
    except Exception as error:  # classified here: documented, not internal, naming the argument
        assert_clear_error(error, *names)
        if match is not None:
            assert re.search(match, str(error)), f"{match!r} not in: {error}"
    else:
        raise AssertionError(f"no error was raised (expected one naming {names})")


def snapshot(*objects: Any) -> Any:
    """A deep copy of what can change: optimizers by ``state_dict``, param groups and
    parameters, modules by ``state_dict``, anything else by value, recursing into containers
    and into the ``__dict__`` of plain objects."""
    return [_snapshot(o) for o in objects]


def _snapshot(o: Any) -> Any:
    if isinstance(o, torch.optim.Optimizer):
        params = [p.detach().clone() for g in o.param_groups for p in g["params"]]
        groups = [{k: v for k, v in g.items() if k != "params"} for g in o.param_groups]
        keys = [[id(p) for p in g["params"]] for g in o.param_groups]
        return ("optimizer", copy.deepcopy(o.state_dict()), params,
                _snapshot_value(groups), keys)
    if isinstance(o, torch.nn.Module):
        return ("module", copy.deepcopy(o.state_dict()))
    return _snapshot_value(o)


_CODE = (type, types.FunctionType, types.MethodType, types.BuiltinFunctionType,
         types.ModuleType, functools.partial)


def _snapshot_value(v: Any, depth: int = 0) -> Any:
    """Tensors cloned, generators by state, containers and plain objects (those with a
    ``__dict__``: a solver's problem, a learner's domain) recursively, up to 4 levels;
    anything else deep-copied, or by identity if it cannot be copied (locks, open files)."""
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, torch.Generator):
        return ("generator", v.get_state())
    if depth >= 4:
        return ("id", id(v))
    if isinstance(v, Mapping):
        return {k: _snapshot_value(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return type(v)(_snapshot_value(x, depth + 1) for x in v) if type(v) in (list, tuple) \
            else [_snapshot_value(x, depth + 1) for x in v]
    if isinstance(v, torch.nn.Module | torch.optim.Optimizer):
        return _snapshot(v)
    if isinstance(v, _CODE):
        return ("id", id(v))
    if hasattr(v, "__dict__"):
        return ("object", type(v).__name__,
                {k: _snapshot_value(x, depth + 1) for k, x in vars(v).items()})
    try:
        return copy.deepcopy(v)
    except Exception:  # uncopyable (locks, open files): compared by identity
        return ("id", id(v))


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """``a`` and ``b`` hold equal values (tensors bit for bit, NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{tuple(a.shape)} " \
            f"!= {b.dtype}{tuple(b.shape)}"
        assert torch.equal(a, b) or bool((a.isnan() & b.isnan() | (a == b)).all()), where
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {a!r} != {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_unchanged(call: Callable[[], Any], *objects: Any, names: Iterable[str] = ()) -> None:
    """``call()`` raises a clear error (naming one of ``names``) and leaves ``objects`` as
    they were."""
    before = snapshot(*objects)
    with raises_clearly(*names):
        call()
    assert_same(before, snapshot(*objects), "object changed by a call that raised")


def works_or_refuses(call: Callable[[], Any], *objects: Any, names: Iterable[str] = ()) -> bool:
    """Run ``call()``: True if it works; if it raises, check that the error is clear (naming
    one of ``names``) and that ``objects`` are unchanged, and return False."""
    before = snapshot(*objects)
    try:
        call()
    except Exception as error:  # classified here
        assert_clear_error(error, *names)
        assert_same(before, snapshot(*objects), f"a call that raised ({error}) changed an object")
        return False
    return True
