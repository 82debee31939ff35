"""Property-based tests of the optimizer engine's contract with bad input (issue #20).

Random and corrupted input to the constructors, ``add_param_group``, ``load_state_dict`` and
``step`` either works (and the next step runs) or raises a documented exception naming the
argument, and a call that raises leaves the optimizer as it was.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from typing import Any

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.errors import NonFiniteError, NonFiniteWarning
from stochopt.optim import AdaBelief, AdaGrad, AdaGradNorm, AdamW, DiffGrad, ProxSGD
from tests.contract import PROPERTIES, assert_clear_error, assert_same, snapshot, works_or_refuses

CLASSES = (AdamW, AdaBelief, DiffGrad, AdaGrad, AdaGradNorm, ProxSGD)

_TENSORS = (torch.tensor(0.1), torch.tensor(1), torch.ones(2), torch.tensor(float("nan")),
            torch.tensor(0.5, dtype=torch.float64))
#: anything a user might pass for a hyperparameter
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1),
    st.text(max_size=3), st.sampled_from(["global", "row", "8bit", "bf16", "native", "l1"]),
    st.tuples(st.floats(-1, 2), st.floats(-1, 2)), st.lists(st.floats(0, 1), max_size=3),
    st.sampled_from(_TENSORS),
)


def _keywords(cls: type) -> list[str]:
    return ["lr"] + [name for name, p in inspect.signature(cls.__init__).parameters.items()
                     if p.kind is p.KEYWORD_ONLY and name not in ("shard_group",)]


def _params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 5, generator=gen).requires_grad_(),
            torch.randn(7, generator=gen).requires_grad_()]


def _step(opt: torch.optim.Optimizer, params: list[torch.Tensor], seed: int = 1) -> None:
    """One step with finite gradients, on the reference path (no compilation)."""
    gen = torch.Generator().manual_seed(seed)
    for group in opt.param_groups:
        group["fused"] = False
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
    opt.step()


def _stepped(cls: type, **kwargs: Any) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    params = _params()
    opt = cls(params, **kwargs)
    opt.param_groups[0]["min_8bit_size"] = 0  # small tensors get 8-bit state when asked
    _step(opt, params)
    _step(opt, params, seed=2)
    return opt, params


@PROPERTIES
@given(cls=st.sampled_from(CLASSES), data=st.data())
def test_constructors_accept_or_name_the_argument(cls: type, data: st.DataObject) -> None:
    names = data.draw(st.lists(st.sampled_from(_keywords(cls)), max_size=3, unique=True))
    kwargs = {name: data.draw(JUNK, label=name) for name in names}
    params = _params()
    try:
        opt = cls(params, **kwargs)
    except Exception as error:
        assert_clear_error(error, *names)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # e.g. an enormous lr overflows
        _step(opt, params)


def _junk_param(kind: str, existing: list[torch.Tensor]) -> Any:
    return {"float64": lambda: torch.zeros(2, dtype=torch.float64, requires_grad=True),
            "complex": lambda: torch.zeros(2, dtype=torch.complex64, requires_grad=True),
            "int": lambda: torch.zeros(2, dtype=torch.int32),
            "bool": lambda: torch.zeros(2, dtype=torch.bool),
            "non-leaf": lambda: torch.zeros(2, requires_grad=True) * 2,
            "existing": lambda: existing[0],
            "number": lambda: 1.0}[kind]()


@PROPERTIES
@given(cls=st.sampled_from(CLASSES), data=st.data())
def test_add_param_group_adds_all_or_nothing(cls: type, data: st.DataObject) -> None:
    opt, params = _stepped(cls)
    kinds = data.draw(st.lists(st.sampled_from(
        ["float64", "float64", "complex", "int", "bool", "non-leaf", "existing", "number"]),
        min_size=1, max_size=3))
    new = [_junk_param(k, params) for k in kinds]
    if data.draw(st.booleans(), label="duplicate"):
        new.append(new[0])
    names = data.draw(st.lists(st.sampled_from(_keywords(cls)), max_size=2, unique=True))
    group = {"params": new, **{name: data.draw(JUNK, label=name) for name in names}}
    before = snapshot(opt)
    try:
        opt.add_param_group(group)
    except Exception as error:
        assert_clear_error(error, "param group 1", *names)
        assert_same(before, snapshot(opt), "add_param_group raised but changed the optimizer")
        return
    assert len(opt.param_groups) == 2
    _step(opt, [p for g in opt.param_groups for p in g["params"]])


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into the dicts and lists of a state dict (tensors are leaves)."""
    found = [prefix] if prefix else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found += _paths(v, (*prefix, i))
    return found


def _replacement(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, torch.Tensor) and data.draw(st.booleans(), label="tensor-like"):
        shape = data.draw(st.sampled_from([value.shape, (), (3,), (2, 2), (value.numel(),)]))
        dtype = data.draw(st.sampled_from([value.dtype, torch.float64, torch.uint8,
                                           torch.int64, torch.bfloat16]))
        fill = data.draw(st.sampled_from([0.0, 1.0, -1.0, math.nan]))
        return torch.full(tuple(shape), fill).to(dtype)
    return data.draw(JUNK, label="junk")


@PROPERTIES
@given(cls=st.sampled_from(CLASSES), precision=st.sampled_from(["native", "8bit", "bf16"]),
       data=st.data())
def test_load_state_dict_loads_a_working_state_or_changes_nothing(
        cls: type, precision: str, data: st.DataObject) -> None:
    source, _ = _stepped(cls, state_precision=precision)
    saved = copy.deepcopy(source.state_dict())
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = _paths(saved)
        if not paths:  # everything deleted already
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = saved
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans(), label="delete") and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = _replacement(parent[path[-1]], data)
    opt, params = _stepped(cls)
    if not works_or_refuses(lambda: opt.load_state_dict(saved), opt,
                            names=[f"{cls.__name__}.load_state_dict"]):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _step(opt, params)  # what was accepted steps without an error


@PROPERTIES
@given(mode=st.sampled_from(["global", "tensor", "row"]),
       policy=st.sampled_from(["propagate", "raise", "skip"]),
       bad=st.sampled_from([math.nan, math.inf, -math.inf]),
       where=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6)), max_size=3),
       weight_decay=st.sampled_from([0.0, 0.1]))
def test_adagradnorm_nonfinite_policy(mode: str, policy: str, bad: float,
                                      where: list[tuple[int, int]], weight_decay: float) -> None:
    opt, params = _stepped(AdaGradNorm, mode=mode, nonfinite=policy, weight_decay=weight_decay)
    for p in params:
        p.grad = torch.ones_like(p)
    for i, j in where:
        params[i].grad.view(-1)[j % params[i].numel()] = bad
    before = snapshot(opt)
    if not where or policy == "propagate":
        opt.step()
        assert all(opt.state[p]["step"].item() == 3 for p in params)
    elif policy == "raise":
        try:
            opt.step()
        except NonFiniteError as error:
            assert_clear_error(error, "param group 0")
        else:
            raise AssertionError("no NonFiniteError")
        assert_same(before, snapshot(opt))
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt.step()
        assert [w.category for w in caught] == [NonFiniteWarning]
        assert_same(before, snapshot(opt))
