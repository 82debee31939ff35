"""Bad input to SSO: closures that return the wrong thing, non-finite losses, a second
parameter group, and damaged state dicts; each refused before anything changes."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from stochopt.errors import NonFiniteError
from stochopt.sso import SSO
from tests.contract import assert_unchanged, raises_clearly

DT = torch.float64


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, generator=g, dtype=DT)
    y = torch.randn(8, 1, generator=g, dtype=DT)
    model = torch.nn.Linear(3, 1, dtype=DT)
    opt = SSO(model.parameters(), lr=1.0, inner_steps=2)
    loss = lambda z: 0.5 * (z - y).pow(2).sum(-1).mean()  # noqa: E731
    opt.step(lambda: model(x), loss)  # counters and parameters away from their start
    return model, x, y, opt, loss


@pytest.mark.parametrize(("outputs", "loss", "name"), [
    (lambda m, x: m(x), lambda z: z.pow(2), "loss"),  # a vector, not one value
    (lambda m, x: m(x), lambda z: torch.tensor(1.0, dtype=DT), "loss"),  # not from z
    (lambda m, x: [1.0], None, "outputs"),
    (lambda m, x: m(x).detach(), None, "outputs"),
    (lambda m, x: m(x).long(), None, "outputs"),
])
def test_closures_that_return_the_wrong_thing(outputs, loss, name) -> None:
    model, x, _, opt, good_loss = _problem()
    assert_unchanged(lambda: opt.step(lambda: outputs(model, x), loss or good_loss), opt,
                     names=[name])


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_loss_raises_before_anything_changes(bad) -> None:
    model, x, _, opt, _ = _problem()
    assert_unchanged(lambda: opt.step(lambda: model(x), lambda z: z.sum() * bad), opt,
                     names=["loss"])
    with pytest.raises(NonFiniteError, match="the loss at z_t is not finite"):
        opt.step(lambda: model(x), lambda z: z.sum() * bad)


def test_non_finite_targets_are_named() -> None:
    model, x, _, opt, loss = _problem()
    assert_unchanged(lambda: opt.step(lambda: model(x) * math.inf, loss), opt,
                     names=["targets"])


def test_step_checks_its_callables_and_the_group() -> None:
    model, x, _, opt, loss = _problem()
    assert_unchanged(lambda: opt.step(3, loss), opt, names=["outputs"])
    opt.param_groups[0]["lr"] = -5.0  # as a buggy scheduler might
    with raises_clearly("lr"):
        opt.step(lambda: model(x), loss)


def test_a_second_parameter_group_is_refused() -> None:
    _, _, _, opt, _ = _problem()
    extra = {"params": [torch.zeros(2, dtype=DT, requires_grad=True)]}
    assert_unchanged(lambda: opt.add_param_group(extra), opt, names=["one parameter group"])


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"inner_lr": math.inf}, "inner_lr"), ({"grow": math.inf}, "grow"),
    ({"max_backtracks": -1}, "max_backtracks"), ({"lr": "1"}, "lr"),
])
def test_infinite_or_wrong_hyperparameters(kwargs, name) -> None:
    with raises_clearly(name):
        SSO(torch.nn.Linear(2, 1).parameters(), **kwargs)


def _damaged(state: dict, how: str) -> dict:
    state = copy.deepcopy(state)
    if how == "negative count":
        state["counts"]["target_gradients"] = -1
    elif how == "float count":
        state["counts"]["surrogate_gradients"] = 1.5
    elif how == "count keys":
        state["counts"] = {"target_gradients": 1}
    elif how == "counts type":
        state["counts"] = [1, 2]
    elif how == "bad lr":
        state["param_groups"][0]["lr"] = -1.0
    elif how == "bad inner_steps":
        state["param_groups"][0]["inner_steps"] = 0
    elif how == "two groups":
        state["param_groups"] = state["param_groups"] * 2
    elif how == "no state":
        del state["state"]
    elif how == "per-parameter state":
        state["state"] = {0: {"momentum": torch.zeros(3)}}
    return state


@pytest.mark.parametrize(("how", "name"), [
    ("negative count", "counts"), ("float count", "counts"), ("count keys", "counts"),
    ("counts type", "counts"), ("bad lr", "lr"), ("bad inner_steps", "inner_steps"),
    ("two groups", "param_groups"), ("no state", "state"), ("per-parameter state", "state"),
])
def test_a_damaged_state_dict_changes_nothing(how, name) -> None:
    _, _, _, opt, _ = _problem()
    state = _damaged(opt.state_dict(), how)
    fresh = SSO(torch.nn.Linear(3, 1, dtype=DT).parameters(), lr=0.5)
    assert_unchanged(lambda: fresh.load_state_dict(state), fresh, names=[name])


def test_another_optimizers_state_dict_is_refused() -> None:
    model, _, _, opt, _ = _problem()
    adam = torch.optim.Adam(model.parameters())
    assert_unchanged(lambda: opt.load_state_dict(adam.state_dict()), opt,
                     names=["another optimizer"])
    assert_unchanged(lambda: opt.load_state_dict(None), opt, names=["state_dict"])


def test_a_good_state_dict_round_trips_with_and_without_counts() -> None:
    _, _, _, opt, _ = _problem()
    state = opt.state_dict()
    fresh = SSO(torch.nn.Linear(3, 1, dtype=DT).parameters(), lr=0.5)
    fresh.load_state_dict(state)
    assert fresh.counts == opt.counts and fresh.param_groups[0]["lr"] == 1.0
    without = {k: v for k, v in state.items() if k != "counts"}
    other = SSO(torch.nn.Linear(3, 1, dtype=DT).parameters(), lr=0.5)
    other.load_state_dict(without)  # counters as they were
    assert other.counts["target_gradients"] == 0
