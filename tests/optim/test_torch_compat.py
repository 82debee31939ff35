"""torch.optim compatibility (issue #22): AdamW's and AdaGrad's state dicts cross to and from
their ``torch.optim`` twins and continue the same trajectory; the twins' signatures (positional
order and implementation flags) are accepted as torch accepts them."""

from __future__ import annotations

import inspect
import io
from typing import Any

import pytest
import torch

from stochopt.errors import UnsupportedError
from stochopt.optim import (
    AdaBelief,
    AdaGrad,
    AdaGrad8bit,
    AdamW,
    AdamW8bit,
    to_torch_state_dict,
)
from tests.contract import assert_clear_error, raises_clearly

# float64 parameters and state on both sides: the rules are the same equations written with
# different operation orders (torch's lerp and addcdiv, our EMA and division), so they agree to
# float64 rounding accumulated over a few steps, far below 1e-10.
TOLERANCE = {"rtol": 1e-10, "atol": 1e-12}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(),
                               torch.nn.Linear(8, 1)).double()


def _train(opt: torch.optim.Optimizer, model: torch.nn.Module, steps: range) -> None:
    """``steps`` steps of least squares on batches fixed by the step index."""
    for t in steps:
        gen = torch.Generator().manual_seed(t)
        x = torch.randn(16, 6, generator=gen, dtype=torch.float64)
        y = torch.randn(16, 1, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _saved(state_dict: dict[str, Any]) -> dict[str, Any]:
    """``state_dict`` through ``torch.save`` and ``torch.load``, as a checkpoint file is."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, **TOLERANCE)


TWINS = [  # (torch.optim class, its arguments, the stochopt class of the same rule, its arguments)
    (torch.optim.AdamW, {"lr": 1e-2}, AdamW, {}),
    (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True}, AdamW, {}),
    (torch.optim.Adam, {"lr": 1e-2, "amsgrad": True}, AdamW, {}),  # no decay: the same rule
    (torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True},
     AdamW, {}),
    (torch.optim.Adagrad, {"lr": 5e-2, "lr_decay": 0.01, "weight_decay": 0.01,
                           "initial_accumulator_value": 0.1}, AdaGrad, {}),
]
IDS = ["AdamW", "AdamW-amsgrad", "Adam-amsgrad", "Adam-decoupled", "Adagrad"]


@pytest.mark.parametrize(("theirs", "their_args", "ours", "our_args"), TWINS, ids=IDS)
def test_a_torch_checkpoint_continues_the_same_trajectory(theirs, their_args, ours,
                                                          our_args) -> None:
    reference = _model()
    torch_opt = theirs(reference.parameters(), **their_args)  # torch's default flags
    _train(torch_opt, reference, range(5))
    saved = _saved(torch_opt.state_dict())
    assert {"foreach", "differentiable", "fused"} <= set(saved["param_groups"][0])
    model = _model()
    model.load_state_dict(reference.state_dict())
    opt = ours(model.parameters(), **our_args)
    opt.load_state_dict(saved)
    assert not {"foreach", "capturable", "differentiable"} & set(opt.param_groups[0])
    _train(torch_opt, reference, range(5, 15))
    _train(opt, model, range(5, 15))
    _assert_same_parameters(reference, model)


@pytest.mark.parametrize(("theirs", "their_args", "ours", "our_args"), TWINS, ids=IDS)
def test_a_stochopt_checkpoint_continues_the_same_trajectory_in_torch(theirs, their_args, ours,
                                                                      our_args) -> None:
    model = _model()
    kwargs = {k: v for k, v in their_args.items() if k != "decoupled_weight_decay"}
    opt = ours(model.parameters(), **kwargs, **our_args)
    _train(opt, model, range(5))
    reference = _model()
    reference.load_state_dict(model.state_dict())
    torch_opt = theirs(reference.parameters())  # every setting comes from the state dict
    torch_opt.load_state_dict(_saved(to_torch_state_dict(opt)))
    _train(opt, model, range(5, 15))
    _train(torch_opt, reference, range(5, 15))
    _assert_same_parameters(reference, model)


def test_to_torch_state_dict_gives_torchs_layout_and_loads_back() -> None:
    model = _model()
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    _train(opt, model, range(3))
    converted = to_torch_state_dict(opt)
    torch_opt = torch.optim.AdamW(_model().parameters())
    assert set(converted["param_groups"][0]) == set(torch_opt.param_groups[0])
    assert converted["param_groups"][0]["decoupled_weight_decay"] is True
    assert set(converted["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    # torch's own state dict of it loads back into stochopt, with the loading optimizer's
    # storage settings, and continues exactly where it was
    torch_opt.load_state_dict(converted)
    resumed = AdamW(model.parameters(), state_precision="fp32")
    resumed.load_state_dict(_saved(torch_opt.state_dict()))
    assert resumed.param_groups[0]["state_precision"] == "fp32"
    for p in model.parameters():
        assert all(torch.equal(resumed.state[p][k], opt.state[p][k].float())
                   for k in ("exp_avg", "exp_avg_sq", "step"))


def test_a_stochopt_state_dict_that_went_through_torch_loses_torchs_flags() -> None:
    model = _model()
    opt = AdamW(model.parameters(), lr=1e-2)
    _train(opt, model, range(3))
    torch_opt = torch.optim.AdamW(_model().parameters())
    torch_opt.load_state_dict(opt.state_dict())  # the plain state dict, engine keys and all
    resumed = AdamW(model.parameters())
    resumed.load_state_dict(torch_opt.state_dict())
    assert set(resumed.param_groups[0]) == set(opt.param_groups[0])


@pytest.mark.parametrize(("ours", "theirs"), [(AdamW8bit, torch.optim.AdamW),
                                              (AdaGrad8bit, torch.optim.Adagrad)])
def test_8bit_state_reaches_torch_dequantized(ours, theirs) -> None:
    """torch continues from the dequantized 8-bit state exactly as an fp32 stochopt optimizer
    given the same state does (the 8-bit codes are converted on loading there too)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(80, 80).double()  # a 6400-value weight: over min_8bit_size
    opt = ours(model.parameters(), lr=1e-2)
    _train_linear(opt, model, range(3))
    assert opt.state[model.weight][list(opt.state[model.weight])[1]].dtype == torch.uint8
    converted = to_torch_state_dict(opt)
    assert all(v.dtype == torch.float32 for v in converted["state"][0].values())  # the weight
    assert not any(".absmax" in k for s in converted["state"].values() for k in s)
    twin, reference = torch.nn.Linear(80, 80).double(), torch.nn.Linear(80, 80).double()
    twin.load_state_dict(model.state_dict())
    reference.load_state_dict(model.state_dict())
    fp32 = ours.__mro__[1](twin.parameters(), state_precision="fp32")  # AdamW / AdaGrad
    fp32.load_state_dict(opt.state_dict())
    torch_opt = theirs(reference.parameters())
    # torch's keys and no others (no state_precision, block_size, percentile_clipping, ...)
    assert set(converted["param_groups"][0]) == set(torch_opt.param_groups[0])
    torch_opt.load_state_dict(converted)
    _train_linear(fp32, twin, range(3, 8))
    _train_linear(torch_opt, reference, range(3, 8))
    for p, q in zip(twin.parameters(), reference.parameters()):
        # float32 state on our side, float64 (torch casts to the parameter's dtype) on theirs
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def _train_linear(opt: torch.optim.Optimizer, model: torch.nn.Linear, steps: range) -> None:
    for t in steps:
        gen = torch.Generator().manual_seed(t)
        x = torch.randn(32, 80, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


def test_to_torch_state_dict_refuses_an_optimizer_without_a_twin() -> None:
    opt = AdaBelief([torch.nn.Parameter(torch.zeros(2))])
    with raises_clearly("AdaBelief has no torch.optim twin"):
        to_torch_state_dict(opt)
    with raises_clearly("optimizer must be a stochopt optimizer"):
        to_torch_state_dict(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))]))


# ------------------------------------------------------------------------ signatures and flags
@pytest.mark.parametrize(("ours", "theirs"), [(AdamW, torch.optim.AdamW),
                                              (AdaGrad, torch.optim.Adagrad)])
def test_the_signature_is_torchs_positional_order_and_flags_included(ours, theirs) -> None:
    mine = inspect.signature(ours).parameters
    for name, param in inspect.signature(theirs).parameters.items():
        assert name in mine, name
        assert (mine[name].kind, mine[name].default) == (param.kind, param.default), name
    positional = [n for n, p in mine.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == [n for n, p in inspect.signature(theirs).parameters.items()
                          if p.kind is p.POSITIONAL_OR_KEYWORD]


@pytest.mark.parametrize(("ours", "theirs", "args"), [
    (AdamW, torch.optim.AdamW, (3e-2, (0.8, 0.95), 1e-6, 0.05, True)),
    (AdamW8bit, torch.optim.AdamW, (3e-2, (0.8, 0.95), 1e-6, 0.05, True)),
    (AdaGrad, torch.optim.Adagrad, (5e-2, 0.01, 0.01, 0.1, 1e-8, False)),
])
def test_positional_arguments_mean_what_they_mean_to_torch(ours, theirs, args) -> None:
    reference, model = _model(), _model()
    torch_opt, opt = theirs(reference.parameters(), *args), ours(model.parameters(), *args)
    for key in ("lr", "betas", "eps", "weight_decay", "amsgrad", "lr_decay",
                "initial_accumulator_value"):
        assert opt.param_groups[0].get(key) == torch_opt.param_groups[0].get(key), key
    if ours is AdamW8bit:  # a small model: all of its state stays 32-bit, so it is AdamW's
        assert opt.param_groups[0]["state_precision"] == "8bit"
    _train(torch_opt, reference, range(5))
    _train(opt, model, range(5))
    _assert_same_parameters(reference, model)


@pytest.mark.parametrize("foreach", [None, True, False])
def test_foreach_is_accepted_and_changes_nothing(foreach) -> None:
    for cls in (AdamW, AdaGrad):
        plain, model = _model(), _model()
        default, flagged = cls(plain.parameters()), cls(model.parameters(), foreach=foreach)
        _train(default, plain, range(3))
        _train(flagged, model, range(3))
        assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), model.parameters()))
        assert "foreach" not in flagged.param_groups[0]


@pytest.mark.parametrize(("cls", "kwargs", "error", "names"), [
    (AdamW, {"capturable": True}, UnsupportedError, ("capturable=True is not supported",)),
    (AdamW, {"differentiable": True}, UnsupportedError,
     ("differentiable=True is not supported",)),
    (AdaGrad, {"differentiable": True}, UnsupportedError,
     ("differentiable=True is not supported",)),
    (AdamW8bit, {"capturable": True}, UnsupportedError, ("capturable=True",)),
    (AdamW, {"foreach": "yes"}, TypeError, ("foreach must be None, True or False",)),
    (AdamW, {"capturable": 1}, TypeError, ("capturable must be",)),
    (AdaGrad, {"foreach": True, "fused": True}, ValueError, ("fused=True and foreach=True",)),
])
def test_flags_that_cannot_be_honoured_are_refused(cls, kwargs, error, names) -> None:
    with pytest.raises(error) as info:
        cls([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    assert_clear_error(info.value, *names)
    with pytest.raises(TypeError):  # AdaGrad has no capturable, as torch's Adagrad
        AdaGrad([torch.nn.Parameter(torch.zeros(2))], capturable=False)


def test_percentile_clipping_history_stays_behind() -> None:
    """torch keeps no gradient-norm history: an 8-bit optimizer that clips hands torch its
    moments and step only (clipping itself is not carried over, as the docstring says)."""
    from stochopt.optim import AdamW8bit

    torch.manual_seed(0)
    model = torch.nn.Linear(80, 80).double()
    opt = AdamW8bit(model.parameters(), lr=1e-2, percentile_clipping=5)
    _train_linear(opt, model, range(3))
    assert "gnorm_vec" in opt.state[model.weight]
    converted = to_torch_state_dict(opt)
    assert set(converted["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    torch.optim.AdamW(model.parameters()).load_state_dict(converted)
