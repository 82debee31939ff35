"""The learners and :func:`~stochopt.online.play` call the unchecked twins of the public
methods every round (``Domain._project``, a rule's ``_eta``, an environment's ``_reveal``):
the public entries still check, the results are the same, a subclass's override is still
called, and what the moved checks caught is still caught."""

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
    play,
)
from tests.contract import assert_same, raises_clearly

F64 = torch.float64
LR = InverseSqrtStep(diameter=2.0, gradient_bound=1.0)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


@pytest.mark.parametrize("domain", [Ball(3, radius=0.7, center=_t([0.1, 0.0, -0.2])),
                                    Box(_t([-1.0, 0.0, 0.0]), _t([1.0, 0.5, 2.0])),
                                    Simplex(3)], ids=["ball", "box", "simplex"])
def test_the_unchecked_projection_is_the_public_one(domain) -> None:
    y = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 3
    assert torch.equal(domain._project(y), domain.project(y))


def test_the_unchecked_metric_projection_is_the_public_one() -> None:
    ball, y = Ball(2), _t([[3.0, 4.0], [0.1, 0.2]])
    metric = _t([[[2.0, 0.5], [0.5, 1.0]], [[1.0, 0.0], [0.0, 3.0]]])
    assert torch.equal(ball._project(y, metric), ball.project(y, metric=metric))


@pytest.mark.parametrize("rule", [LR, VariationStep(1.0, 2.0, delta=0.5),
                                  InverseTimeStep(0.5, scale=2.0)])
def test_the_unchecked_step_is_the_public_one(rule) -> None:
    variation = _t([0.0, 1.5, 40.0])
    for t in (1, 2, 17):
        assert torch.equal(rule._eta(t, variation), rule(t, variation))


def _game(learner_cls, **kwargs):
    env = SEAQuadratic(3, rounds=30, runs=2, noise=0.5, amplitude=1.0, seed=3)
    return learner_cls(env.domain, env.start(), **kwargs), env


def test_a_subclass_that_overrides_project_or_call_is_still_called() -> None:
    calls = {"project": 0, "rule": 0}

    class CountingBall(Ball):
        def project(self, y, *, metric=None):
            calls["project"] += 1
            return super().project(y, metric=metric)

    class CountingStep(VariationStep):
        def __call__(self, t, variation):
            calls["rule"] += 1
            return super().__call__(t, variation)

    env = SEAQuadratic(3, rounds=5, runs=2, seed=0)
    omd = OptimisticOMD(CountingBall(3, radius=5.0), env.start(), lr=CountingStep(10.0, 5.0))
    play(omd, env)
    assert calls == {"project": 10, "rule": 10}  # play() and update() of 5 rounds
    ons = OptimisticONS(CountingBall(3, radius=5.0), env.start(), beta=0.5)
    play(ons, env)
    assert calls["project"] == 20


def test_a_domain_of_the_callers_is_projected_through_its_project() -> None:
    class HalfSpace:  # x_1 <= 0, not a library domain
        dim, diameter = 2, math.inf

        def project(self, y):
            return torch.cat([y[..., :1].clamp_max(0.0), y[..., 1:]], -1)

        def contains(self, x, *, atol=1e-12):
            return x[..., 0] <= atol

    ogd = OnlineGradientDescent(HalfSpace(), torch.zeros(2, dtype=F64), lr=LR)
    ogd.update(_t([-1.0, 2.0]))
    assert torch.equal(ogd.play(), _t([0.0, -4.0]))  # x_1 - 2 g_1 = (2, -4), clipped


@pytest.mark.parametrize("make", [
    lambda: OnlineGradientDescent(Simplex(3), _t([0.2, 0.3, 0.5]), lr=LR),
    lambda: OptimisticOMD(Simplex(3), _t([0.2, 0.3, 0.5]), lr=VariationStep(1.5, 1.0)),
    lambda: OptimisticFTRL(Simplex(3), _t([0.2, 0.3, 0.5]), lr=InverseTimeStep(1.0)),
    lambda: OptimisticONS(Ball(3), torch.zeros(3, dtype=F64), beta=0.5),
], ids=["OnlineGradientDescent", "OptimisticOMD", "OptimisticFTRL", "OptimisticONS"])
@pytest.mark.parametrize("gradient", [[0.0, 0.0, 1e300], [1e200, -1e200, 0.0],
                                      [1.7e308, 1.7e308, 0.0]])
def test_a_finite_gradient_that_would_overflow_the_state_is_refused(make, gradient) -> None:
    """The squared error (or U_{t+1}) would be infinite: refused before anything changes,
    naming the gradient, where it once left an infinite variation."""
    learner = make()
    learner.update(_t([0.1, -0.2, 0.3]))
    before = learner.state_dict()
    with raises_clearly("gradient", match="too large"):
        learner.update(_t(gradient))
    assert_same(before, learner.state_dict(), "a refused gradient changed the learner")


ORIGIN = torch.zeros(2, dtype=F64)


@pytest.mark.parametrize("make", [
    lambda: OnlineGradientDescent(Ball(2), ORIGIN, lr=InverseSqrtStep(1e300, 1.0)),  # eta_1 = 1e300
    lambda: OptimisticOMD(Ball(2), ORIGIN, lr=InverseTimeStep(1e-300)),
    lambda: OptimisticONS(Ball(2), ORIGIN, beta=0.5, delta=1e-300),
], ids=["OnlineGradientDescent", "OptimisticOMD", "OptimisticONS"])
def test_a_gradient_whose_step_would_overflow_is_refused(make) -> None:
    """The point to project (x_t - eta_t g_t, hat x_t - U_t^{-1} g_t) would be infinite, which
    the learner's unchecked projection would turn into NaN: refused, naming the gradient."""
    learner = make()
    before = learner.state_dict()
    with raises_clearly("gradient", match="too large"):
        learner.update(_t([1e10, 0.0]))
    assert_same(before, learner.state_dict(), "a refused gradient changed the learner")


def test_ftrl_refuses_to_play_a_point_that_overflows() -> None:
    """The sum of gradients is finite, eta_t times it is not: play raises, as the projection
    of an infinite point once did, instead of returning NaN."""
    ftrl = OptimisticFTRL(Ball(2), ORIGIN, lr=InverseSqrtStep(1e300, 1.0))
    ftrl.update(_t([1e10, 0.0]))
    with raises_clearly("gradients", match="overflows"):
        ftrl.play()


def test_huge_finite_values_whose_sum_overflows_are_finite() -> None:
    """The one-sum finiteness check falls back to entry-wise when finite entries overflow."""
    huge = _t([1.7e308, 1.7e308])
    box = Box(_t([-1.0, -1.0]), _t([1.0, 1.0]))
    assert torch.equal(box.project(huge), _t([1.0, 1.0]))
    env = SEAQuadratic(2, rounds=2, radius=1.0)
    env.reveal(1, huge.unsqueeze(0))  # finite, if absurd: no error
    ogd = OnlineGradientDescent(box, torch.zeros(2, dtype=F64), lr=InverseSqrtStep(1e155, 1.0))
    ogd.update(_t([1e153, 1e153]))  # x_1 - eta_1 g_1 = -(1e308, 1e308): its sum overflows
    assert torch.isfinite(ogd.variation).all() and torch.isfinite(ogd.play()).all()


def test_play_checks_a_library_learners_first_points() -> None:
    env = SEAQuadratic(2, rounds=4, runs=3)
    for x0 in (torch.zeros(2, 2, dtype=F64), torch.zeros(2, dtype=F64)):  # runs != 3
        with raises_clearly("x", match="shape"):
            play(OptimisticOMD(env.domain, x0, lr=LR), env)


class _Scripted:
    """A learner of the caller's that plays given points."""

    def __init__(self, points):
        self.points, self.t = points, 0

    def play(self):
        self.t += 1
        return self.points[self.t - 1]

    def update(self, gradient):
        pass


@pytest.mark.parametrize("env", [SEAQuadratic(2, rounds=3), SEALeastSquares(2, rounds=3)],
                         ids=["quadratic", "least-squares"])
def test_play_checks_every_point_of_a_callers_learner(env) -> None:
    good = env.start()
    for bad, text in [(good.clone().fill_(math.nan), "finite"), (good[0], "shape"),
                      (good.long(), "floating-point")]:
        with raises_clearly("x", match=text):
            play(_Scripted([good, good, bad]), env)


def test_play_checks_every_point_of_a_learner_subclass() -> None:
    class Wild(OptimisticOMD):
        def play(self):
            return super().play() if self.t < 2 else torch.full((1, 2), math.inf, dtype=F64)

    env = SEAQuadratic(2, rounds=3)
    with raises_clearly("x", match="finite"):
        play(Wild(env.domain, env.start(), lr=LR), env)


@pytest.mark.parametrize("kind", [OnlineGradientDescent, OptimisticOMD, OptimisticFTRL])
def test_play_gives_the_same_record_as_the_public_calls(kind) -> None:
    learner, env = _game(kind, lr=VariationStep(10.0, 5.0))
    twin, _ = _game(kind, lr=VariationStep(10.0, 5.0))
    record = play(learner, env)
    losses = []
    for t in range(1, env.rounds + 1):
        value, gradient = env.reveal(t, twin.play())
        twin.update(gradient)
        losses.append(value)
    assert torch.equal(record.losses, torch.stack(losses))
    assert_same(learner.state_dict(), twin.state_dict(), "play() and the public calls differ")
