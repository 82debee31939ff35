"""Bad input to consensus-based optimization: clear errors naming the argument, and the
documented handling of non-finite energies (NaN and +inf particles get weight 0)."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.cbo import (
    CBO,
    ConsensusHopping,
    EffectiveSampleSizeAlpha,
    MultiplicativeAlpha,
    cbo_update,
    consensus_point,
    consensus_weights,
    effective_sample_size,
    gaussian_particles,
    minimize,
)
from stochopt.tasks import Rastrigin
from tests.contract import raises_clearly

F64 = torch.float64
X0 = gaussian_particles(torch.zeros(3), 1.0, 6, runs=2, seed=0)  # (2, 6, 3)


def _sphere(x: torch.Tensor) -> torch.Tensor:
    return x.square().sum(-1)


def test_particles_of_the_wrong_dimension_for_a_test_function() -> None:
    with raises_clearly("x0", match=r"dimension 4"):
        minimize(Rastrigin(dim=4), X0, CBO(), max_iterations=2)
    with raises_clearly("x", match=r"\(\.\.\., 4\)"):  # the function itself refuses them too
        Rastrigin(dim=4)(X0)


@pytest.mark.parametrize(("f", "text"), [
    (lambda x: x, r"returned \(2, 6, 3\), expected \(2, 6\)"),
    (lambda x: x.sum(), r"returned \(\), expected \(2, 6\)"),
    (lambda x: [1.0], "returned list"),
])
def test_an_objective_must_return_one_value_per_particle(f, text) -> None:
    with raises_clearly("f", match=text):
        minimize(f, X0, CBO(), max_iterations=2)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"seed": 1.5}, "seed"), ({"seed": -1}, "seed"), ({"seed": 2**70}, "seed"),
    ({"max_iterations": 1.5}, "max_iterations"), ({"energy_tol": math.nan}, "energy_tol"),
    ({"consensus_tol": -1.0}, "consensus_tol"),
])
def test_minimize_arguments(kwargs, name) -> None:
    with raises_clearly(name):
        minimize(_sphere, X0, CBO(), **{"max_iterations": 2, **kwargs})


@pytest.mark.parametrize(("x0", "text"), [
    (torch.zeros(3, dtype=F64), "shape"), (X0 * math.nan, "finite"),
    ([[0.0, 0.0, 0.0]], "floating-point"), (lambda g: 3, "floating-point"),
    (torch.zeros(2, 0, 3, dtype=F64), "shape"),
])
def test_minimize_checks_the_initial_particles(x0, text) -> None:
    with raises_clearly("x0", match=text):
        minimize(_sphere, x0, CBO(), max_iterations=2)


def test_minimize_checks_f_and_method_and_leaves_x0_alone() -> None:
    before = X0.clone()
    with raises_clearly("f"):
        minimize(3, X0, CBO())  # type: ignore[arg-type]
    with raises_clearly("method"):
        minimize(_sphere, X0, "CBO")  # type: ignore[arg-type]
    minimize(_sphere, X0, CBO(), max_iterations=3)
    assert torch.equal(X0, before)


@pytest.mark.parametrize(("make", "name"), [
    (lambda: CBO(sigma=-1.0), "sigma"), (lambda: CBO(dt=math.inf), "dt"),
    (lambda: CBO(lamda=math.nan), "lamda"), (lambda: CBO(alpha=-1.0), "alpha"),
    (lambda: CBO(noise=["x"]), "noise"), (lambda: ConsensusHopping(sigma=math.inf), "sigma"),
    (lambda: ConsensusHopping().step_size(-1.0), "alpha"),
    (lambda: MultiplicativeAlpha(1.0, factor=math.inf), "factor"),
    (lambda: MultiplicativeAlpha(10.0, maximum=1.0), "maximum"),
    (lambda: EffectiveSampleSizeAlpha(eta=0.0), "eta"),
    (lambda: EffectiveSampleSizeAlpha(minimum=10.0, maximum=1.0), "maximum"),
])
def test_method_and_schedule_arguments(make, name) -> None:
    with raises_clearly(name):
        make()


def test_schedules_check_their_call() -> None:
    energy = torch.zeros(2, 3, dtype=F64)
    for schedule in (MultiplicativeAlpha(10.0), EffectiveSampleSizeAlpha()):
        with raises_clearly("iteration"):
            schedule(-1, energy)
        with raises_clearly("iteration"):
            schedule(1.5, energy)
        with raises_clearly("energy"):
            schedule(0, [1.0, 2.0])
        with raises_clearly("energy"):
            schedule(0, torch.tensor(1.0, dtype=F64))


def test_a_schedule_returning_nonsense_is_named() -> None:
    class Negative(MultiplicativeAlpha):
        def __call__(self, iteration, energy):
            return -super().__call__(iteration, energy)

    with raises_clearly("alpha", match="Negative"):
        minimize(_sphere, X0, CBO(alpha=Negative(1.0)), max_iterations=2)


def test_consensus_functions_check_shapes_and_alpha() -> None:
    x, energy = torch.zeros(5, 3, dtype=F64), torch.arange(5.0, dtype=F64)
    for call, name in [
        (lambda: consensus_point(x, energy[:4], 1.0), "x"),
        (lambda: consensus_point(x, energy, -1.0), "alpha"),
        (lambda: consensus_point(x, energy, torch.ones(3, dtype=F64)), "alpha"),
        (lambda: consensus_point(x, energy, "1"), "alpha"),
        (lambda: consensus_weights(torch.zeros(0, dtype=F64), 1.0), "energy"),
        (lambda: consensus_weights([1.0, 2.0], 1.0), "energy"),
        (lambda: effective_sample_size(torch.tensor(1.0, dtype=F64), 1.0), "energy"),
        (lambda: cbo_update(torch.zeros(2, 3, 4, dtype=F64), torch.zeros(2, 5, dtype=F64),
                            torch.zeros(2, 3, 4, dtype=F64), dt=0.1, lamda=1.0, sigma=1.0,
                            noise="isotropic"), "consensus"),
        (lambda: cbo_update(x, x[0], x, dt=-0.1, lamda=1.0, sigma=1.0, noise="isotropic"), "dt"),
        (lambda: CBO().step(_sphere, torch.zeros(3, dtype=F64), 0, torch.Generator()), "x"),
        (lambda: CBO().step(_sphere, X0, 0, 3), "generator"),
        (lambda: CBO().move(X0, torch.zeros(3, dtype=F64), torch.Generator()), "consensus"),
    ]:
        with raises_clearly(name):
            call()


def test_gaussian_particles_arguments() -> None:
    for call, name in [
        (lambda: gaussian_particles(torch.tensor([math.nan]), 1.0, 3), "mean"),
        (lambda: gaussian_particles("a", 1.0, 3), "mean"),
        (lambda: gaussian_particles(torch.zeros(0), 1.0, 3), "mean"),
        (lambda: gaussian_particles(torch.zeros(2), 1.0, 3, dtype=torch.long), "dtype"),
        (lambda: gaussian_particles(torch.zeros(2), 1.0, 3, seed=-2), "seed"),
    ]:
        with raises_clearly(name):
            call()


# ------------------------------------------------------------------ non-finite energies
def test_nan_and_infinite_energies_get_weight_zero() -> None:
    energy = torch.tensor([1.0, math.nan, 0.5, math.inf], dtype=F64)
    weights = consensus_weights(energy, 2.0)
    assert weights[1] == 0 and weights[3] == 0
    expected = consensus_weights(energy[[0, 2]], 2.0)
    torch.testing.assert_close(weights[[0, 2]], expected, rtol=0, atol=0)
    # their coordinates do not matter, even when they are not finite
    x = torch.tensor([[0.0, 1.0], [math.nan, 5.0], [2.0, 0.0], [math.inf, 1.0]], dtype=F64)
    torch.testing.assert_close(consensus_point(x, energy, 2.0),
                               consensus_point(x[[0, 2]], energy[[0, 2]], 2.0), rtol=0, atol=0)
    # alpha = 0 too: the mean of the particles with a finite energy
    torch.testing.assert_close(consensus_point(x, energy, 0.0), x[[0, 2]].mean(0))


def test_minus_infinity_takes_all_the_weight_and_all_nan_gives_nan() -> None:
    energy = torch.tensor([1.0, -math.inf, 0.5, -math.inf], dtype=F64)
    torch.testing.assert_close(consensus_weights(energy, 3.0),
                               torch.tensor([0.0, 0.5, 0.0, 0.5], dtype=F64))
    assert consensus_weights(torch.full((3,), math.nan, dtype=F64), 1.0).isnan().all()
    assert effective_sample_size(torch.full((3,), math.inf, dtype=F64), 1.0).isnan()


def test_one_nan_particle_does_not_stop_its_run() -> None:
    def one_bad(x: torch.Tensor) -> torch.Tensor:
        value = x.square().sum(-1).clone()
        value[..., 0] = math.nan  # the first particle of every run, at every iteration
        return value

    result = minimize(one_bad, X0, CBO(dt=0.1), max_iterations=50, seed=0)
    assert result.reason == ("max_iterations", "max_iterations")
    assert torch.isfinite(result.x).all() and torch.isfinite(result.best_fun).all()


def test_integer_energies_are_used_as_floats() -> None:
    result = minimize(lambda x: (x.square().sum(-1) * 10).long(), X0, CBO(alpha=0.5),
                      max_iterations=3)
    assert result.fun.dtype == F64
