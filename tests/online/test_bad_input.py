"""Bad input to the online learners, domains, step rules and environments: clear errors that
name the argument, raised before the learner changes (``update`` and ``load_state_dict``)."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.online import (
    Ball,
    Box,
    InverseSqrtStep,
    InverseTimeStep,
    OnlineGradientDescent,
    OptimisticFTRL,
    OptimisticOMD,
    OptimisticONS,
    SEALeastSquares,
    SEAQuadratic,
    Simplex,
    VariationStep,
    exp_concave_beta,
    loglog_slope,
    minimize_quadratic_on_ball,
    play,
)
from tests.contract import assert_same, raises_clearly

F64 = torch.float64
LR = InverseSqrtStep(diameter=2.0, gradient_bound=1.0)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def assert_unchanged(call, learner, names) -> None:
    """``call()`` raises a clear error naming one of ``names``; the learner's whole state
    (its ``state_dict``: the round and every state tensor) is as it was."""
    before = learner.state_dict()
    with raises_clearly(*names):
        call()
    assert_same(before, learner.state_dict(), "learner changed by a call that raised")


def _learners():
    x0 = _t([0.2, 0.3, 0.5])
    return [OnlineGradientDescent(Simplex(3), x0, lr=LR), OptimisticOMD(Simplex(3), x0, lr=LR),
            OptimisticFTRL(Simplex(3), x0, lr=LR),
            OptimisticONS(Ball(3), torch.zeros(3, dtype=F64), beta=0.5)]


def test_a_simplex_start_outside_the_simplex_is_refused() -> None:
    for x0 in ([0.5, 0.5, 0.5], [math.nan, 0.5, 0.5], [-0.5, 0.5, 1.0]):
        with raises_clearly("x0", match="lie in the domain"):
            OnlineGradientDescent(Simplex(3), _t(x0), lr=LR)


KINDS = ["OnlineGradientDescent", "OptimisticOMD", "OptimisticFTRL", "OptimisticONS"]


@pytest.mark.parametrize("kind", range(4), ids=KINDS)
@pytest.mark.parametrize(("gradient", "text"), [
    (_t([math.nan, 0.0, 0.0]), "finite"), (_t([math.inf, 0.0, 0.0]), "finite"),
    (torch.tensor([1, 0, 0]), "floating-point"), ([1.0, 0.0, 0.0], "shape"),
    (_t([1.0, 0.0]), "shape"),
])
def test_update_refuses_bad_gradients_and_changes_nothing(kind, gradient, text) -> None:
    learner = _learners()[kind]
    learner.update(_t([0.1, -0.2, 0.3]))  # some state first
    assert_unchanged(lambda: learner.update(gradient), learner, names=["gradient"])


def test_a_float32_gradient_is_used_in_the_learners_dtype() -> None:
    omd = OptimisticOMD(Simplex(3), _t([0.2, 0.3, 0.5]), lr=LR)
    omd.update(torch.tensor([0.1, 0.2, 0.3]))
    assert omd.hint.dtype == F64 and omd.x_hat.dtype == F64


@pytest.mark.parametrize("kind", range(4), ids=KINDS)
def test_load_state_dict_checks_everything_before_changing_anything(kind) -> None:
    learner = _learners()[kind]
    learner.update(_t([0.1, -0.2, 0.3]))
    good = learner.state_dict()
    name = next(k for k in good if k != "t")
    bad_states = [
        ({**good, "t": 0}, "t"), ({**good, "t": "2"}, "t"), ({**good, "t": True}, "t"),
        ({**good, name: good[name].tolist()}, name),
        ({**good, name: good[name].float()}, name),
        ({**good, name: good[name].unsqueeze(0)}, name),
        ({**good, name: torch.full_like(good[name], math.nan)}, name),
        ({k: v for k, v in good.items() if k != name}, "keys"),
    ]
    for state, where in bad_states:
        assert_unchanged(lambda s=state: learner.load_state_dict(s), learner, names=[where])
    with raises_clearly("state"):
        learner.load_state_dict(None)  # type: ignore[arg-type]
    learner.load_state_dict(good)


def test_load_state_dict_checks_what_the_learner_needs_of_its_state() -> None:
    ogd, omd, _, ons = _learners()
    for learner, key, value in [
        (ogd, "x", _t([0.5, 0.5, 0.5])),  # outside the simplex
        (ogd, "variation", _t(-1.0)),
        (omd, "x_hat", _t([2.0, -1.0, 0.0])),
        (ons, "metric", torch.zeros(3, 3, dtype=F64)),  # singular
        (ons, "metric", _t([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])),
        (ons, "x_hat", _t([5.0, 0.0, 0.0])),
    ]:
        state = {**learner.state_dict(), key: value}
        assert_unchanged(lambda s=state, lr=learner: lr.load_state_dict(s), learner, names=[key])


def test_ons_refuses_a_gradient_that_would_overflow_its_metric() -> None:
    ons = OptimisticONS(Ball(2), torch.zeros(2, dtype=F64), beta=0.5)
    assert_unchanged(lambda: ons.update(_t([1e200, 0.0])), ons, names=["gradient"])


@pytest.mark.parametrize(("make", "name"), [
    (lambda: InverseTimeStep(1e-320), "first step"),  # 1 / lambda overflows
    (lambda: InverseSqrtStep(1e308, 1e-300), "first step"),
    (lambda: VariationStep(1.0, 1e200), "first step"),  # was an OverflowError
    (lambda: VariationStep(1e300, 1e-200, delta=1e-300), "first step"),
    (lambda: InverseSqrtStep(math.inf, 1.0), "diameter"),
    (lambda: InverseTimeStep(1.0, scale=math.nan), "scale"),
])
def test_an_infinite_step_size_is_refused(make, name) -> None:
    with raises_clearly(name):
        make()


def test_step_rules_check_their_call() -> None:
    for rule in (LR, VariationStep(1.0, 1.0), InverseTimeStep(1.0)):
        for t, variation, name in [(0, _t(0.0), "t"), (1.5, _t(0.0), "t"),
                                   (1, [0.0], "variation"), (1, _t(-1.0), "variation"),
                                   (1, _t(math.nan), "variation")]:
            with raises_clearly(name):
                rule(t, variation)


@pytest.mark.parametrize(("make", "name"), [
    (lambda: Ball(2, center=_t([math.nan, 0.0])), "center"),
    (lambda: Ball(2, center=_t([0.0, 0.0, 0.0])), "center"),
    (lambda: Box(_t([1.0, 1.0]), _t([0.0, 0.0])), "lower <= upper"),
    (lambda: Box("a", "b"), "lower"),
    (lambda: Box(_t([math.nan, 0.0]), _t([1.0, 1.0])), "finite"),
    (lambda: Simplex(2.5), "dim"),
    (lambda: Simplex(3).project(_t([math.nan, 0.0, 0.0])), "finite"),
    (lambda: Simplex(3).project(_t([math.inf, 0.0, 0.0])), "finite"),
    (lambda: Simplex(3).project(_t([1.0, 0.0])), "shape"),
    (lambda: Ball(2).project(_t([math.inf, 0.0])), "finite"),
    (lambda: Box(_t([0.0]), _t([1.0])).project(_t([math.nan])), "finite"),
    (lambda: Ball(2).contains(_t([0.0, 0.0]), atol=-1.0), "atol"),
    (lambda: Ball(2).project(_t([3.0, 4.0]), metric=_t([[1.0, 5.0], [0.0, 1.0]])), "symmetric"),
    (lambda: Ball(2).project(_t([3.0, 4.0]), metric=-torch.eye(2, dtype=F64)), "semidefinite"),
    (lambda: Ball(2).project(torch.full((3, 2), 3.0, dtype=F64),
                             metric=torch.eye(2, dtype=F64).expand(4, 2, 2)), "metric"),
    (lambda: Ball(2).project(_t([3.0, 4.0]), metric=torch.eye(2, dtype=torch.long)), "metric"),
    (lambda: minimize_quadratic_on_ball(torch.eye(2, dtype=F64), _t([1.0, 1.0]), 0.0),
     "radius"),
    (lambda: minimize_quadratic_on_ball(torch.eye(2, dtype=F64), _t([1.0, 1.0, 1.0]), 1.0),
     "shape"),
    (lambda: exp_concave_beta(1.0, 1e300, 1e300), "underflows"),
])
def test_domain_arguments(make, name) -> None:
    with raises_clearly(match=name):
        make()


def test_contains_answers_false_for_nan_points() -> None:
    assert not bool(Simplex(2).contains(_t([math.nan, 1.0])))


@pytest.mark.parametrize(("make", "name"), [
    (lambda: SEAQuadratic(2, rounds=4, seed=1.5), "seed"),
    (lambda: SEAQuadratic(2, rounds=4, seed=2**64), "seed"),
    (lambda: SEAQuadratic(2, rounds=4, center=_t([math.nan, 0.0])), "center"),
    (lambda: SEAQuadratic(2, rounds=4, curvatures=_t([math.inf, 1.0])), "curvatures"),
    (lambda: SEAQuadratic(2, rounds=0), "rounds"),
    (lambda: SEALeastSquares(2, rounds=4, noise=-1.0), "noise"),
    (lambda: SEALeastSquares(2, rounds=4, wave="saw"), "wave"),
    (lambda: SEALeastSquares(2, rounds=4, direction=_t([1.0, 1.0])), "direction"),
])
def test_environment_arguments(make, name) -> None:
    with raises_clearly(name):
        make()


def test_environment_and_protocol_calls() -> None:
    env = SEAQuadratic(2, rounds=4)
    for call, name in [
        (lambda: env.reveal(1, [0.0, 0.0]), "x"), (lambda: env.reveal(1, _t([[math.nan, 0.0]])),
                                                   "x"),
        (lambda: env.reveal(0, env.start()), "t"), (lambda: env.hindsight(5), "horizon"),
        (lambda: play("learner", env), "learner"),
        (lambda: play(OnlineGradientDescent(env.domain, env.start(), lr=LR), "env"),
         "environment"),
        (lambda: play(OnlineGradientDescent(env.domain, env.start(), lr=LR), env, rounds=9),
         "rounds"),
        (lambda: loglog_slope([0, 10], [1.0, 2.0]), "horizons"),
        (lambda: loglog_slope([1, 10], ["a", 2.0]), "values"),
    ]:
        with raises_clearly(name):
            call()
