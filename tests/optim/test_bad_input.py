"""Bad input to the optimizer engine (issue #20): every refusal names the argument and leaves
the optimizer as it was (``add_param_group``, ``load_state_dict``, ``step``)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from stochopt.errors import NonFiniteError, NonFiniteWarning
from stochopt.optim import (
    AdaBelief,
    AdaGrad,
    AdaGradNorm,
    AdamW,
    AdamW8bit,
    DiffGrad,
    ProxSGD,
    SophiaG,
    _engine,
)
from tests.contract import assert_same, assert_unchanged, raises_clearly, snapshot

ELEMENTWISE = (AdamW, AdaBelief, DiffGrad, AdaGrad, AdaGradNorm)


def _stepped(cls: type = AdamW, steps: int = 2, **kwargs: Any
             ) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(40, 130, generator=gen).requires_grad_(),
              torch.randn(3, generator=gen).requires_grad_()]
    opt = cls(params, **kwargs)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return opt, params


def _saved(cls: type = AdamW, **kwargs: Any) -> dict[str, Any]:
    return copy.deepcopy(_stepped(cls, **kwargs)[0].state_dict())


# ------------------------------------------------------------------------ constructors
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_and_bool_parameters_are_refused(dtype: torch.dtype) -> None:
    with raises_clearly(f"parameter 1 of param group 0 has dtype {dtype}"):
        AdamW([torch.zeros(2, requires_grad=True), torch.zeros(3, dtype=dtype)])


@pytest.mark.parametrize(("params", "names"), [
    (5, ("params must be an ordered iterable",)),
    ([1.0], ("parameter 0 of param group 0 must be a tensor",)),
    ({torch.zeros(1, requires_grad=True)}, ("params must be an ordered iterable",)),
    ({"params": [torch.zeros(1, requires_grad=True)]}, ("params must be an ordered iterable",)),
])
def test_params_of_the_wrong_kind_are_refused(params: Any, names: tuple[str, ...]) -> None:
    with raises_clearly(*names):
        AdamW(params)


def test_a_parameter_listed_twice_is_refused() -> None:
    p = torch.zeros(2, requires_grad=True)
    with raises_clearly("parameter 1 of param group 0 is parameter 0 again"):
        AdaGrad([p, p])


def test_a_non_leaf_parameter_is_refused_with_its_position() -> None:
    leaf = torch.zeros(2, requires_grad=True)
    with raises_clearly("parameter 1 of param group 0 is not a leaf"):
        DiffGrad([leaf, leaf * 2])


def test_a_closure_that_is_not_callable_is_refused_before_the_step() -> None:
    opt, params = _stepped(AdaGradNorm, steps=1)
    for p in params:
        p.grad = torch.ones_like(p)
    assert_unchanged(lambda: opt.step(3.0), opt, names=("closure must be a callable",))


def test_shard_group_must_name_a_process_group() -> None:
    with raises_clearly("AdaGradNorm: shard_group must be None, 'world' or a torch"):
        AdaGradNorm([torch.zeros(2, requires_grad=True)], shard_group=0)


# ------------------------------------------------------------------------ add_param_group
def _new(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.zeros(3, dtype=dtype, requires_grad=dtype.is_floating_point)


_BAD_GROUPS: list[tuple[Callable[[torch.optim.Optimizer], Any], tuple[str, ...]]] = [
    (lambda opt: {"params": [_new()], "lr": -1.0}, ("lr must be in [0, inf), got -1.0",)),
    (lambda opt: {"params": [_new()], "lr": "fast"}, ("lr must be a real number",)),
    (lambda opt: {"params": [_new()], "maximize": 1}, ("maximize must be True or False",)),
    (lambda opt: {"params": [_new()], "block_size": 0}, ("block_size must be in [1, inf)",)),
    (lambda opt: {"params": [_new()], "state_precision": "4bit"}, ("state_precision",)),
    (lambda opt: {"params": [_new()], "fused": 3}, ("fused must be None, True or False",)),
    (lambda opt: {"params": [_new(), _new(torch.int64)]},
     ("parameter 1 of param group 1 has dtype torch.int64",)),
    (lambda opt: {"params": [_new(torch.float16) * 2]}, ("not a leaf",)),
    (lambda opt: {"params": opt.param_groups[0]["params"][1:]},
     ("parameter 0 of param group 1 is already parameter 1 of param group 0",)),
    (lambda opt: {"params": [_new(), "w"]}, ("parameter 1 of param group 1 must be a tensor",)),
    (lambda opt: {"lr": 0.1}, ("has no 'params' entry",)),
    (lambda opt: [_new()], ("a param group must be a dict",)),
]


@pytest.mark.parametrize("cls", ELEMENTWISE, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("group", "names"), _BAD_GROUPS, ids=range(len(_BAD_GROUPS)))
def test_add_param_group_refuses_a_bad_group_and_keeps_none_of_it(cls, group, names) -> None:
    opt, _ = _stepped(cls, steps=1)
    assert_unchanged(lambda: opt.add_param_group(group(opt)), opt, names=names)
    assert len(opt.param_groups) == 1


def test_a_refused_group_is_not_stepped() -> None:
    opt, _ = _stepped(AdamW, steps=1)
    extra = torch.ones(3, requires_grad=True)
    with raises_clearly("lr"):
        opt.add_param_group({"params": [extra], "lr": float("nan")})
    extra.grad = torch.ones(3)
    opt.step()  # the example: the refused group used to be stepped with lr=nan
    assert torch.equal(extra.detach(), torch.ones(3)) and extra not in opt.state


def test_add_param_group_accepts_a_good_group() -> None:
    opt, _ = _stepped(AdaBelief, steps=1)
    opt.add_param_group({"params": _new(torch.float64), "lr": 1e-2})
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["lr"] == 1e-2


# ------------------------------------------------------------------------ load_state_dict
@pytest.mark.parametrize(("source", "target"), [
    (AdaBelief, AdamW), (AdamW, AdaBelief), (DiffGrad, AdamW), (AdamW, DiffGrad),
    (AdaGrad, AdaGradNorm), (AdaGradNorm, AdamW), (ProxSGD, AdamW), (AdamW, ProxSGD),
    (SophiaG, AdamW),
])
def test_another_optimizers_state_dict_is_refused(source: type, target: type) -> None:
    saved = _saved(source, steps=0 if source is SophiaG else 2)
    opt, _ = _stepped(target)
    assert_unchanged(lambda: opt.load_state_dict(saved), opt,
                     names=(f"it is not a state dict of {target.__name__}",))


def _corrupt(edit: Callable[[dict[str, Any]], Any], cls: type = AdamW,
             **kwargs: Any) -> dict[str, Any]:
    saved = _saved(cls, **kwargs)
    edit(saved)
    return saved


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value(d[path[-1]]) if callable(value) else value
    return edit


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def edit(d: dict[str, Any]) -> None:
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return edit


_BAD_STATE_DICTS: list[tuple[Callable[[dict[str, Any]], Any], tuple[str, ...]]] = [
    (_set(("param_groups", 0, "lr"), -1.0), ("param group 0: lr must be in [0, inf)",)),
    (_set(("param_groups", 0, "betas"), (0.9, 1.5)), ("betas[1] must be in",)),
    (_set(("param_groups", 0, "amsgrad"), "no"), ("amsgrad must be True or False",)),
    (_set(("param_groups", 0, "block_size"), 0), ("block_size must be in [1, inf)",)),
    (_delete(("param_groups", 0, "eps")), ("param group 0 lacks eps",)),
    (_delete(("param_groups", 0, "state_precision")), ("lacks state_precision",)),
    (_set(("param_groups", 0, "params"), [0]), ("1 parameters in the state dict, 2 in",)),
    (_set(("param_groups",), lambda g: g + g), ("2 param groups, this optimizer 1",)),
    (_set(("param_groups",), "groups"), ("'param_groups' must be a list of dicts",)),
    (_delete(("state",)), ("no 'state' entry",)),
    (_set(("state",), [1, 2]), ("'state' must be a dict",)),
    (_delete(("state", 0, "exp_avg")), ("parameter 0 of param group 0 (shape (40, 130)) lacks "
                                        "exp_avg",)),
    (_delete(("state", 1, "step")), ("lacks step",)),
    (_set(("state", 0, "exp_avg"), torch.zeros(4)), ("'exp_avg' of parameter 0 of param group "
                                                     "0 (shape (40, 130)) has shape (4,)",)),
    (_set(("state", 1, "exp_avg_sq"), lambda t: t.long()), ("'exp_avg_sq'", "dtype torch.int64")),
    (_set(("state", 1, "exp_avg"), "zeros"), ("'exp_avg' of parameter 1", "must be a tensor")),
    (_set(("state", 1, "step"), torch.tensor(-1.0)), ("step of parameter 1",)),
    (_set(("state", 1, "step"), 2.5), ("step of parameter 1", "whole number")),
    (_set(("state", 1, "step"), "two"), ("step of parameter 1",)),
    (_set(("state", 1, "previous_grad"), torch.zeros(3)), ("has previous_grad, which AdamW",)),
    (_set(("state", 7), {}), ("state entry 7 belongs to no parameter",)),
    (_set(("state", 1), [1]), ("the state of parameter 1 of param group 0 (shape (3,)) is [1]",)),
]


@pytest.mark.parametrize(("edit", "names"), _BAD_STATE_DICTS, ids=range(len(_BAD_STATE_DICTS)))
def test_load_state_dict_refuses_a_damaged_state_dict_and_changes_nothing(edit, names) -> None:
    saved = _corrupt(edit)
    opt, _ = _stepped(AdamW, steps=1)
    assert_unchanged(lambda: opt.load_state_dict(saved), opt, names=names)


@pytest.mark.parametrize(("edit", "names"), [
    (_set(("state", 0, "exp_avg.absmax"), torch.ones(3)),
     ("'exp_avg.absmax' of parameter 0", "21 values (one per block of 256)")),
    (_set(("state", 0, "exp_avg.absmax"), lambda t: -t), ("must be finite and >= 0",)),
    (_set(("state", 0, "exp_avg"), lambda t: t.float()), ("the 8-bit codes' torch.uint8",)),
    (_delete(("state", 0, "exp_avg_sq.absmax")), ("'exp_avg_sq'", "no block scales")),
    (_set(("param_groups", 0, "block_size"), 128), ("41 values (one per block of 128)",)),
])
def test_load_state_dict_checks_8bit_codes_against_their_blocks(edit, names) -> None:
    saved = _corrupt(edit, AdamW8bit)
    opt, _ = _stepped(AdamW8bit, steps=1)
    assert_unchanged(lambda: opt.load_state_dict(saved), opt, names=names)


def test_a_refused_state_dict_leaves_the_next_step_as_it_would_have_been() -> None:
    opt, params = _stepped(AdamW)
    twin, twin_params = _stepped(AdamW)
    saved = _corrupt(_set(("state", 1, "exp_avg"), torch.zeros(5)))
    with raises_clearly("exp_avg"):
        opt.load_state_dict(saved)
    for p, q in zip(params, twin_params):
        p.grad = q.grad = torch.ones_like(p)
    opt.step()
    twin.step()
    assert all(torch.equal(p, q) for p, q in zip(params, twin_params))


def test_a_state_dict_without_state_loads_and_a_partial_one_too() -> None:
    saved = _saved(DiffGrad)
    saved["state"] = {1: saved["state"][1], 0: {}}
    opt, params = _stepped(DiffGrad, steps=0)
    opt.load_state_dict(saved)
    assert opt.state[params[1]]["step"].item() == 2 and not opt.state[params[0]]


def test_state_loaded_in_its_own_precision_resumes_bit_exactly() -> None:
    for precision in ("bf16", "fp32", "8bit"):
        opt, params = _stepped(AdaBelief, state_precision=precision)
        twins = [p.detach().clone().requires_grad_() for p in params]
        resumed = AdaBelief(twins, state_precision=precision)
        resumed.load_state_dict(copy.deepcopy(opt.state_dict()))
        for name, value in opt.state[params[0]].items():
            assert resumed.state[twins[0]][name].dtype == value.dtype, (precision, name)
        for p, q in zip(params, twins):
            p.grad = q.grad = torch.full_like(p, 0.5)
        opt.step()
        resumed.step()
        assert all(torch.equal(p, q) for p, q in zip(params, twins)), precision


def test_load_state_dict_hooks_still_run() -> None:
    opt, _ = _stepped(AdamW)
    calls = []
    opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append("pre"))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("post"))
    opt.load_state_dict(_saved(AdamW))
    assert calls == ["pre", "post"]


# ------------------------------------------------------------------- torch.optim twins
def _torch_stepped(cls: type, **kwargs: Any) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(6, 5, generator=gen, dtype=torch.float64).requires_grad_(),
              torch.randn(4, generator=gen, dtype=torch.float64).requires_grad_()]
    opt = cls(params, **kwargs)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        opt.step()
    return opt, params


@pytest.mark.parametrize(("theirs", "ours", "kwargs"), [
    (torch.optim.AdamW, AdamW, {"lr": 1e-2, "amsgrad": True}),
    (torch.optim.Adam, AdamW, {"lr": 1e-2}),  # no weight decay: the same rule
    (torch.optim.Adagrad, AdaGrad, {"lr": 1e-1, "lr_decay": 0.01}),
])
def test_a_torch_optim_state_dict_of_the_same_rule_loads_and_continues(theirs, ours,
                                                                       kwargs) -> None:
    torch_opt, params = _torch_stepped(theirs, **kwargs)
    twins = [p.detach().clone().requires_grad_() for p in params]
    opt = ours(twins, state_precision="fp32", fused=False)
    opt.load_state_dict(torch_opt.state_dict())
    group = opt.param_groups[0]
    assert group["state_precision"] == "fp32" and "foreach" not in group
    for _ in range(3):
        for p, q in zip(params, twins):
            p.grad = q.grad = torch.full_like(p, 0.3)
        torch_opt.step()
        opt.step()
    for p, q in zip(params, twins):  # fp32 state: rounding of the state, not of the rule
        torch.testing.assert_close(q.detach(), p.detach(), rtol=1e-6, atol=1e-7)


def test_a_torch_adam_state_dict_with_l2_decay_is_refused_by_adamw() -> None:
    torch_opt, _ = _torch_stepped(torch.optim.Adam, weight_decay=0.1)
    opt, _ = _stepped(AdamW)
    assert_unchanged(lambda: opt.load_state_dict(torch_opt.state_dict()), opt,
                     names=("L2 (coupled) weight decay",))


def test_a_torch_sgd_state_dict_is_refused() -> None:
    torch_opt, _ = _torch_stepped(torch.optim.SGD, lr=0.1, momentum=0.9)
    opt, _ = _stepped(AdamW)
    assert_unchanged(lambda: opt.load_state_dict(torch_opt.state_dict()), opt,
                     names=("lacks amsgrad, betas, eps",))


def test_an_adagradnorm_state_dict_from_before_nonfinite_loads() -> None:
    saved = _saved(AdaGradNorm, nonfinite="propagate")
    del saved["param_groups"][0]["nonfinite"]
    opt, _ = _stepped(AdaGradNorm, steps=0, nonfinite="skip")
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["nonfinite"] == "skip"


# ------------------------------------------------------------------------ non-finite
def _nan_at(params: list[torch.Tensor], index: int) -> None:
    for p in params:
        p.grad = torch.ones_like(p)
    params[index].grad.view(-1)[0] = float("nan")


@pytest.mark.parametrize("mode", ["global", "tensor", "row"])
def test_adagradnorm_nonfinite_raise_names_the_parameter_and_changes_nothing(mode) -> None:
    opt, params = _stepped(AdaGradNorm, mode=mode, nonfinite="raise")
    _nan_at(params, 1)
    before = snapshot(opt)
    with pytest.raises(NonFiniteError, match=r"param group 0's grad_sq_norm is not finite "
                                             r"\(parameters \[1\] have a NaN"):
        opt.step()
    assert_same(before, snapshot(opt))


@pytest.mark.parametrize("mode", ["global", "row"])
def test_adagradnorm_nonfinite_skip_warns_and_skips_the_group(mode) -> None:
    opt, params = _stepped(AdaGradNorm, mode=mode, nonfinite="skip")
    _nan_at(params, 0)
    before = snapshot(opt)
    with pytest.warns(NonFiniteWarning, match=r"skipped a step: .*parameters \[0\]"):
        opt.step()
    assert_same(before, snapshot(opt))
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()  # the next finite step goes through
    assert opt.state[params[0]]["step"].item() == 3
    assert all(bool(torch.isfinite(p).all()) for p in params)


def test_adagradnorm_nonfinite_propagate_spreads_through_the_global_statistic() -> None:
    opt, params = _stepped(AdaGradNorm)  # the default, documented
    _nan_at(params, 0)
    opt.step()
    assert all(bool(p.isnan().all()) for p in params)


def test_nonfinite_raise_in_a_later_group_leaves_the_earlier_groups_unstepped() -> None:
    a, b = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = AdaGradNorm([{"params": [a]}, {"params": [b], "nonfinite": "raise"}])
    a.grad, b.grad = torch.ones(3), torch.tensor([1.0, float("inf")])
    assert_unchanged(opt.step, opt, names=("param group 1's grad_sq_norm is not finite",))
    assert not opt.state


def test_nonfinite_skip_on_the_fused_path(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = []

    def private_compile(fn: Callable[..., Any]) -> Callable[..., Any]:  # dynamo, no inductor
        compiled.append(fn)
        return torch.compile(fn, fullgraph=True, backend="aot_eager")

    monkeypatch.setattr(_engine, "_private_compile", private_compile)
    runs = []
    for fused in (True, False):
        params = [torch.ones(4, 3, dtype=torch.float64, requires_grad=True),
                  torch.ones(2, dtype=torch.float64, requires_grad=True)]
        opt = AdaGradNorm(params, lr=0.5, mode="row", nonfinite="skip", fused=fused)
        _nan_at(params, 1)
        with pytest.warns(NonFiniteWarning):
            opt.step()
        for grads in ([0.5, -1.0], [2.0, 0.25]):
            for p, g in zip(params, grads):
                p.grad = torch.full_like(p, g)
            opt.step()
        runs.append(params)
        assert not opt._fused_failed
    assert compiled
    for p, q in zip(*runs):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=0.0)


def test_elementwise_optimizers_follow_torch_on_a_nan_gradient() -> None:
    for cls in (AdamW, AdaBelief, DiffGrad, AdaGrad):
        opt, params = _stepped(cls, steps=0)
        _nan_at(params, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            opt.step()
        assert int(params[0].isnan().sum()) == 1, cls.__name__  # that entry only
        assert bool(torch.isfinite(params[1]).all()), cls.__name__
