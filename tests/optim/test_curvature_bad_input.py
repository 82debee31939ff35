"""Bad input to the curvature optimizers (SophiaG, SophiaH, AdaHessian): every argument is
checked where it enters (the constructor, ``backward``, ``set_curvature``, ``step``,
``load_state_dict``), and a call that raises leaves the optimizer, its generator, its pending
estimates and the gradients as they were."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stochopt.errors import MissingCurvatureError, UnsupportedError
from stochopt.optim import AdaHessian, SophiaG, SophiaH
from tests.contract import assert_same, assert_unchanged, raises_clearly, snapshot

CURVATURE = (SophiaG, SophiaH, AdaHessian)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 4)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(5, 3, generator=gen), torch.randint(0, 4, (5,), generator=gen)


def _train(opt: Any, model: torch.nn.Module, steps: int) -> None:
    x, y = _batch()
    for _ in range(steps):
        opt.zero_grad()
        logits = model(x)
        opt.backward(F.cross_entropy(logits, y), logits=logits)
        opt.step()


def _grads(model: torch.nn.Module) -> list[Any]:
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


# --------------------------------------------------------------------------- constructor
@pytest.mark.parametrize("cls", CURVATURE, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("kwargs", "kind", "match"), [
    ({"seed": 1.5}, TypeError, "seed must be an integer, got 1.5"),
    ({"seed": "0"}, TypeError, "seed must be an integer"),
    ({"seed": True}, TypeError, "seed must be an integer"),
    ({"seed": -1}, ValueError, r"seed must be in \[0, 2\*\*63 - 1\], got -1"),
    ({"seed": 2**64}, ValueError, r"seed must be in \[0, 2\*\*63 - 1\]"),
    ({"process_group": 3}, TypeError, "process_group must be None, 'world' or a"),
    ({"update_period": 0}, ValueError, r"update_period must be in \[1, inf\)"),
    ({"update_period": 2.0}, TypeError, "update_period must be an integer"),
    ({"eps": math.inf}, ValueError, "eps must be in"),
])
def test_constructor_refuses_bad_arguments(cls: type, kwargs: dict, kind: type,
                                           match: str) -> None:
    with pytest.raises(kind, match=f"{cls.__name__}: {match}"):
        cls(_model().parameters(), **kwargs)


@pytest.mark.parametrize(("cls", "kwargs", "match"), [
    (SophiaG, {"rho": -0.1}, r"rho must be in \[0, inf\)"),
    (SophiaH, {"rho": math.nan}, r"rho must be in \[0, inf\)"),
    (SophiaH, {"distribution": "normal"}, "distribution must be one of"),
    (AdaHessian, {"hessian_power": 1.5}, r"hessian_power must be in \[0, 1\]"),
    (AdaHessian, {"distribution": 1}, "distribution must be one of"),
])
def test_constructor_refuses_bad_hyperparameters(cls: type, kwargs: dict, match: str) -> None:
    with raises_clearly(cls.__name__, match=match):
        cls(_model().parameters(), **kwargs)


def test_numpy_and_large_seeds_are_accepted() -> None:
    SophiaH(_model().parameters(), seed=np.int64(3))
    SophiaH(_model().parameters(), seed=2**63 - 1)


# ------------------------------------------------------------------------------ backward
def _bad_backward_cases() -> list[tuple[str, Any, Any, tuple[str, ...]]]:
    """(name, loss from logits, logits from logits, names in the message)."""
    y = _batch()[1]
    return [
        ("detached logits", lambda z: F.cross_entropy(z, y), lambda z: z.detach(),
         ("logits have no gradient graph",)),
        ("0-d logits", lambda z: F.cross_entropy(z, y), lambda z: z[0, 0], ("logits",)),
        ("empty logits", lambda z: F.cross_entropy(z, y), lambda z: z[:0], ("logits",)),
        ("integer logits", lambda z: F.cross_entropy(z, y), lambda z: y, ("logits",)),
        ("list logits", lambda z: F.cross_entropy(z, y), lambda z: [1.0], ("logits",)),
        ("NaN logits", lambda z: F.cross_entropy(z, y), lambda z: z * math.nan,
         ("logits must be finite",)),
        ("vector loss", lambda z: F.cross_entropy(z, y, reduction="none"), lambda z: z,
         ("loss must be a scalar",)),
        ("float loss", lambda z: 1.0, lambda z: z, ("loss",)),
        ("detached loss", lambda z: F.cross_entropy(z, y).detach(), lambda z: z,
         ("loss has no gradient graph",)),
    ]


@pytest.mark.parametrize(("name", "loss", "logits", "names"), _bad_backward_cases(),
                         ids=[c[0] for c in _bad_backward_cases()])
def test_sophia_g_backward_refuses_bad_loss_and_logits(name, loss, logits, names) -> None:
    model = _model()
    opt = SophiaG(model.parameters(), update_period=2)
    _train(opt, model, 2)  # state, and the next step is a curvature step
    assert opt.curvature_due
    z = model(_batch()[0])
    before = _grads(model)
    assert_unchanged(lambda: opt.backward(loss(z), logits=logits(z)), opt, names=names)
    assert_same(before, _grads(model))
    assert opt._estimates == {}


@pytest.mark.parametrize("cls", [SophiaH, AdaHessian], ids=lambda c: c.__name__)
def test_hutchinson_backward_refuses_a_non_scalar_or_detached_loss(cls: type) -> None:
    model = _model()
    opt = cls(model.parameters())
    out = model(_batch()[0])
    for loss, names in ((out.sum(1), ("loss must be a scalar",)),
                        (out.sum().detach(), ("loss has no gradient graph",)),
                        (3, ("loss must be a scalar tensor",))):
        assert_unchanged(lambda: opt.backward(loss), opt, names=names)  # noqa: B023
        assert all(p.grad is None for p in model.parameters())
    with raises_clearly("logits must be a tensor"):  # given, so checked, though unused
        opt.backward(out.sum(), logits="logits")


def test_a_failing_backward_pass_draws_no_labels() -> None:
    model = _model()
    opt = SophiaG(model.parameters())
    x, y = _batch()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward(retain_graph=False)  # frees the graph the next backward needs
    model.zero_grad()
    generator = opt._generator.get_state()
    with pytest.raises(RuntimeError):  # torch's own error for a freed graph
        opt.backward(loss, logits=logits)
    assert torch.equal(opt._generator.get_state(), generator) and opt._estimates == {}


def test_logits_on_a_step_without_refresh_are_checked_but_not_used() -> None:
    model = _model()
    opt = SophiaG(model.parameters(), update_period=3)
    _train(opt, model, 1)
    x, y = _batch()
    logits = model(x)
    opt.backward(F.cross_entropy(logits, y), logits=logits.detach())  # no refresh: fine
    assert opt._estimates == {}


# ------------------------------------------------------------------------- set_curvature
def _bad_estimates() -> list[tuple[str, Any, type, str]]:
    ok = [torch.ones(4, 3), torch.ones(4)]
    return [
        ("too few", ok[:1], ValueError, "got 1 estimates for 2 parameters"),
        ("too many", ok + [None], ValueError, "got 3 estimates for 2 parameters"),
        ("a tensor", torch.ones(4, 3), TypeError, "estimates must be a list or tuple"),
        ("an iterator", iter(ok), TypeError, "estimates must be a list or tuple"),
        ("second shape", [ok[0], torch.ones(5)], ValueError, "estimate 1 has shape (5,)"),
        ("transposed", [torch.ones(3, 4), ok[1]], ValueError, "estimate 0 has shape (3, 4)"),
        ("a list entry", [[[1.0] * 3] * 4, ok[1]], TypeError,
         "estimate 0 must be a tensor or None"),
        ("integer", [torch.ones(4, 3, dtype=torch.long), ok[1]], TypeError,
         "estimate 0 has dtype torch.int64"),
        ("complex", [torch.ones(4, 3, dtype=torch.complex64), ok[1]], TypeError,
         "estimate 0 has dtype torch.complex64"),
        ("meta", [torch.ones(4, 3, device="meta"), ok[1]], ValueError, "estimate 0 is on meta"),
        ("NaN", [ok[0], torch.tensor([1.0, math.nan, 1.0, 1.0])], ValueError,
         "estimate 1 has a NaN or infinite entry"),
        ("inf", [torch.full((4, 3), math.inf), None], ValueError,
         "estimate 0 has a NaN or infinite entry"),
    ]


@pytest.mark.parametrize("cls", CURVATURE, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("name", "estimates", "kind", "match"), _bad_estimates(),
                         ids=[c[0] for c in _bad_estimates()])
def test_set_curvature_keeps_no_estimate_when_one_is_bad(cls, name, estimates, kind,
                                                         match) -> None:
    model = _model()
    opt = cls(model.parameters())
    assert_unchanged(lambda: opt.set_curvature(estimates), opt,
                     names=(f"{cls.__name__}.set_curvature",))
    with pytest.raises(kind, match=match.replace("(", r"\(").replace(")", r"\)")):
        opt.set_curvature(estimates)
    assert opt._estimates == {}


def test_set_curvature_accepts_none_and_other_float_dtypes() -> None:
    model = _model()
    opt = SophiaH(model.parameters())
    opt.set_curvature([torch.ones(4, 3, dtype=torch.float64), None])
    assert len(opt._estimates) == 1


def test_complex_parameters_take_complex_estimates() -> None:
    w = torch.zeros(3, dtype=torch.complex128, requires_grad=True)
    opt = SophiaH([w], lr=0.1, weight_decay=0.0)
    with raises_clearly("needs a complex estimate"):
        opt.set_curvature([torch.ones(3, dtype=torch.float64)])
    w.grad = torch.ones(3, dtype=torch.complex128)
    opt.set_curvature([torch.ones(3, dtype=torch.complex128)])
    opt.step()
    assert torch.isfinite(torch.view_as_real(w.detach())).all()


# --------------------------------------------------------------------------------- step
def test_a_missing_estimate_in_a_later_group_changes_nothing() -> None:
    model = _model()
    weight, bias = model.weight, model.bias
    opt = SophiaH([{"params": [weight]}, {"params": [bias]}], lr=0.1)
    weight.grad, bias.grad = torch.ones_like(weight), torch.ones_like(bias)
    opt.set_curvature([torch.ones_like(weight), None])  # the bias has neither estimate nor graph
    pending = dict(opt._estimates)
    before = snapshot(opt)
    with pytest.raises(MissingCurvatureError, match="found none"):
        opt.step()
    assert_same(before, snapshot(opt))
    assert opt._estimates.keys() == pending.keys()


def test_a_sparse_gradient_in_a_later_group_changes_nothing() -> None:
    model = _model()
    opt = AdaHessian([{"params": [model.weight]}, {"params": [model.bias]}])
    model.weight.grad = torch.ones_like(model.weight)
    model.bias.grad = torch.ones_like(model.bias).to_sparse()
    opt.set_curvature([torch.ones(4, 3), torch.ones(4)])
    before = snapshot(opt)
    with pytest.raises(UnsupportedError, match="does not support sparse gradients"):
        opt.step()
    assert_same(before, snapshot(opt))


# ------------------------------------------------------------------------ load_state_dict
@pytest.mark.parametrize("cls", CURVATURE, ids=lambda c: c.__name__)
@pytest.mark.parametrize("generator", [
    torch.zeros(3, dtype=torch.uint8), torch.zeros(5056, dtype=torch.float32), "state", 7,
    torch.zeros(5056, dtype=torch.uint8)[::2],
], ids=["short", "float", "str", "int", "strided"])
def test_a_bad_generator_state_loads_nothing(cls: type, generator: Any) -> None:
    model, twin = _model(0), _model(1)
    saved_opt = cls(model.parameters(), lr=1e-2, seed=5)
    _train(saved_opt, model, 2)
    saved = {**saved_opt.state_dict(), "generator": generator}
    opt = cls(twin.parameters(), lr=1e-2, seed=9)
    _train(opt, twin, 1)
    assert_unchanged(lambda: opt.load_state_dict(saved), opt,
                     names=("state_dict['generator']",))
    with raises_clearly("state_dict['generator']"):
        opt.check_state_dict(saved)


def test_a_state_dict_that_is_not_a_dict_is_refused() -> None:
    opt = SophiaG(_model().parameters())
    assert_unchanged(lambda: opt.load_state_dict([("state", {})]), opt, names=("state_dict",))


def test_a_bad_state_keeps_the_generator() -> None:
    model, twin = _model(0), _model(1)
    saved_opt = SophiaH(model.parameters(), lr=1e-2, seed=5)
    _train(saved_opt, model, 2)
    saved = saved_opt.state_dict()
    saved["param_groups"][0]["rho"] = -1.0
    opt = SophiaH(twin.parameters(), lr=1e-2, seed=9)
    assert_unchanged(lambda: opt.load_state_dict(saved), opt, names=("rho",))


def test_a_state_dict_without_generator_keeps_this_generator() -> None:
    model, twin = _model(0), _model(1)
    saved_opt = AdaHessian(model.parameters(), seed=5)
    _train(saved_opt, model, 1)
    saved = {k: v for k, v in saved_opt.state_dict().items() if k != "generator"}
    opt = AdaHessian(twin.parameters(), seed=9)
    generator = opt._generator.get_state()
    opt.load_state_dict(saved)
    assert torch.equal(opt._generator.get_state(), generator)
