"""Property-based: random SSO hyperparameters work or name the argument; corrupted state
dicts are refused without changing the optimizer, or load and step."""

from __future__ import annotations

import copy
import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.sso import SSO
from tests.contract import PROPERTIES, assert_clear_error, assert_same, snapshot

DT = torch.float64
HYPER = ["lr", "inner_steps", "inner_lr", "armijo_c", "backtrack", "grow", "max_backtracks"]
VALUES = st.one_of(
    st.sampled_from([0, 1, 2, -1, 0.5, 1.0, 0.99, 10**10, math.nan, math.inf, "1", None, True]),
    st.floats(-10, 10),
)
X = torch.linspace(-1, 1, 12, dtype=DT).reshape(4, 3)
Y = torch.linspace(0, 1, 4, dtype=DT).reshape(4, 1)


def _optimizer() -> tuple[torch.nn.Module, SSO]:
    model = torch.nn.Linear(3, 1, dtype=DT)
    with torch.no_grad():
        model.weight.fill_(0.1)
        model.bias.zero_()
    return model, SSO(model.parameters(), lr=1.0, inner_steps=1, max_backtracks=5)


def _step(model: torch.nn.Module, opt: SSO) -> None:
    opt.step(lambda: model(X), lambda z: 0.5 * (z - Y).pow(2).sum(-1).mean())


@PROPERTIES
@given(data=st.data())
def test_hyperparameters_work_or_name_the_argument(data) -> None:
    names = data.draw(st.lists(st.sampled_from(HYPER), max_size=3, unique=True))
    kwargs = {n: data.draw(VALUES, label=n) for n in names}
    try:
        opt = SSO(torch.nn.Linear(3, 1, dtype=DT).parameters(), **kwargs)
    except Exception as error:
        assert_clear_error(error, *kwargs)
        return
    assert all(opt.param_groups[0][n] == v for n, v in kwargs.items())


@PROPERTIES
@given(data=st.data())
def test_corrupted_state_dicts_change_nothing(data) -> None:
    model, opt = _optimizer()
    _step(model, opt)
    state = copy.deepcopy(opt.state_dict())
    where = data.draw(st.sampled_from(["counts", "group", "top"]))
    if where == "counts":
        key = data.draw(st.sampled_from([*state["counts"], "extra"]))
        state["counts"][key] = data.draw(VALUES)
    elif where == "group":
        key = data.draw(st.sampled_from([*HYPER, "params"]))
        state["param_groups"][0][key] = data.draw(VALUES)
    else:
        key = data.draw(st.sampled_from(["state", "param_groups", "counts"]))
        state[key] = data.draw(st.one_of(VALUES, st.just({})))
    fresh_model, fresh = _optimizer()
    before = snapshot(fresh)
    try:
        fresh.load_state_dict(state)
    except Exception as error:
        assert_clear_error(error, key, "counts", "param_groups", "state")
        assert_same(before, snapshot(fresh), "a refused state dict changed the optimizer")
        return
    _step(fresh_model, fresh)  # what was accepted works
