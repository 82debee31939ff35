"""Property-based: random arguments to the curvature optimizers and ProxSGD (constructors,
``backward``, ``set_curvature``, ``load_state_dict``) either work or raise a documented
exception naming the argument, and a call that raises leaves the optimizer unchanged."""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from stochopt.optim import AdaHessian, ProxSGD, SophiaG, SophiaH
from tests.contract import PROPERTIES, assert_clear_error, assert_same, snapshot, works_or_refuses

#: numbers and non-numbers, in and out of every range the optimizers use
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-3, max_value=12),
    st.sampled_from([0, 1, 2**63, 2**64, -1, 0.5, 1e-3, "1", None, True, [1.0], (0.9, 0.99),
                     (1.0, 0.5), "gaussian", "rademacher", "simplex", "box", "l1",
                     torch.tensor(0.5), torch.ones(2)]),
)
NAMES = {
    SophiaG: ["lr", "betas", "rho", "weight_decay", "eps", "update_period", "seed",
              "state_precision", "maximize", "fused", "process_group"],
    SophiaH: ["lr", "betas", "rho", "weight_decay", "eps", "update_period", "distribution",
              "seed", "maximize", "process_group"],
    AdaHessian: ["lr", "betas", "eps", "weight_decay", "hessian_power", "update_period",
                 "distribution", "seed", "state_precision"],
    ProxSGD: ["lr", "prox", "l1", "l2", "lower", "upper", "suffix_start", "maximize"],
}


def _params() -> list[torch.Tensor]:
    # on the simplex, so that prox="simplex" is a valid choice
    return [torch.full((3,), 1 / 3).requires_grad_(), torch.tensor([1.0]).requires_grad_()]


@PROPERTIES
@given(cls=st.sampled_from(list(NAMES)), data=st.data())
def test_constructors_work_or_name_the_argument(cls: type, data: Any) -> None:
    chosen = data.draw(st.lists(st.sampled_from(NAMES[cls]), max_size=3, unique=True))
    kwargs = {name: data.draw(VALUES, label=name) for name in chosen}
    try:
        opt = cls(_params(), **kwargs)
    except Exception as error:  # classified: documented, naming an argument
        assert_clear_error(error, *chosen)
    else:
        assert len(opt.param_groups) == 1


def _trained(cls: type, seed: int = 0) -> tuple[Any, torch.nn.Module]:
    """A copy of an optimizer trained two steps (the next one refreshes) and its model."""
    return copy.deepcopy(_template(cls, seed))


@functools.cache
def _template(cls: type, seed: int) -> tuple[Any, torch.nn.Module]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 4)
    opt = cls(model.parameters(), lr=1e-2, update_period=2, seed=seed)
    x, y = torch.randn(6, 3), torch.randint(0, 4, (6,))
    for _ in range(2):
        opt.zero_grad()
        logits = model(x)
        opt.backward(F.cross_entropy(logits, y), logits=logits)
        opt.step()
    return opt, model


ESTIMATES = st.one_of(
    st.none(),
    st.builds(lambda shape, fill, dtype: torch.full(
                  shape, fill if dtype.is_floating_point or dtype.is_complex else 1, dtype=dtype),
              st.sampled_from([(4, 3), (4,), (3, 4), (), (4, 3, 1)]),
              st.sampled_from([0.0, 1.0, -2.0, math.nan, math.inf]),
              st.sampled_from([torch.float32, torch.float64, torch.int64, torch.complex64])),
    st.sampled_from([1.0, [1.0], "h"]),
)


@PROPERTIES
@given(cls=st.sampled_from([SophiaG, SophiaH, AdaHessian]),
       estimates=st.lists(ESTIMATES, min_size=0, max_size=3))
def test_set_curvature_works_or_keeps_nothing(cls: type, estimates: list[Any]) -> None:
    opt, _ = _trained(cls)
    if works_or_refuses(lambda: opt.set_curvature(estimates), opt,
                        names=[f"{cls.__name__}.set_curvature"]):
        assert len(opt._estimates) == sum(e is not None for e in estimates)
    else:
        assert opt._estimates == {}


LOGITS = st.sampled_from(["ok", "detached", "scalar", "empty", "nan", "long", "list", None])
LOSSES = st.sampled_from(["ok", "vector", "detached", "float", "long"])


@PROPERTIES
@given(cls=st.sampled_from([SophiaG, SophiaH, AdaHessian]), loss_kind=LOSSES,
       logits_kind=LOGITS)
def test_backward_works_or_changes_nothing(cls: type, loss_kind: str, logits_kind: Any) -> None:
    opt, model = _trained(cls)
    opt.zero_grad()
    x, y = torch.randn(6, 3), torch.randint(0, 4, (6,))
    z = model(x)
    loss = {"ok": lambda: F.cross_entropy(z, y), "vector": lambda: z.sum(1),
            "detached": lambda: z.sum().detach(), "float": lambda: 2.0,
            "long": lambda: y.sum()}[loss_kind]()
    logits = {"ok": z, "detached": z.detach(), "scalar": z[0, 0], "empty": z[:0],
              "nan": z * math.nan, "long": y, "list": [1.0], None: None}[logits_kind]
    before = snapshot(opt)
    try:
        opt.backward(loss, logits=logits)
    except Exception as error:
        assert_clear_error(error, "loss", "logits")
        assert_same(before, snapshot(opt))
        assert opt._estimates == {}
        assert all(p.grad is None for p in model.parameters())


def _corrupt(saved: dict[str, Any], kind: str) -> dict[str, Any]:
    saved = {**saved, "state": {k: dict(v) for k, v in saved["state"].items()},
             "param_groups": [dict(g) for g in saved["param_groups"]]}
    if kind == "generator-short":
        saved["generator"] = saved["generator"][:100]
    elif kind == "generator-type":
        saved["generator"] = [1, 2, 3]
    elif kind == "generator-none":
        saved.pop("generator")
    elif kind == "hessian-shape":
        state = saved["state"][0]
        name = "hessian" if "hessian" in state else "exp_hessian_diag_sq"
        state[name] = state[name][:1]
    elif kind == "rho":
        saved["param_groups"][0]["rho" if "rho" in saved["param_groups"][0] else "eps"] = -1.0
    elif kind == "update_period":
        saved["param_groups"][0]["update_period"] = 0.5
    return saved


@PROPERTIES
@given(cls=st.sampled_from([SophiaG, SophiaH, AdaHessian]),
       kind=st.sampled_from(["generator-short", "generator-type", "generator-none",
                             "hessian-shape", "rho", "update_period", "intact"]))
def test_load_state_dict_works_or_changes_nothing(cls: type, kind: str) -> None:
    source, _ = _trained(cls, seed=1)
    saved = _corrupt(source.state_dict(), kind)
    opt, _ = _trained(cls, seed=2)
    before = snapshot(opt)
    try:
        opt.load_state_dict(saved)
    except Exception as error:
        assert_clear_error(error, "generator", "hessian", "rho", "eps", "update_period")
        assert_same(before, snapshot(opt))
    else:
        assert kind in ("intact", "generator-none")


@PROPERTIES
@given(values=st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, -0.5, math.nan, 2.0]),
                       min_size=1, max_size=4),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
def test_simplex_parameters_are_on_the_simplex_or_refused(values: list[float],
                                                          dtype: torch.dtype) -> None:
    w = torch.tensor(values, dtype=dtype).requires_grad_()
    try:
        opt = ProxSGD([w], lr=0.5, prox="simplex")
    except ValueError as error:
        assert_clear_error(error, "parameter 0 of param group 0")
        return
    w.grad = torch.ones_like(w)
    opt.step()
    assert torch.isfinite(w.detach().float()).all()
    assert abs(float(w.detach().double().sum()) - 1) < 0.02
