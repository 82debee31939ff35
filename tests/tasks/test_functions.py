"""Synthetic test functions: known minima, batch evaluation, the quadratic's spectrum."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.errors import UnsupportedError
from stochopt.tasks import (
    Ackley,
    Beale,
    Branin,
    Hartmann6,
    IllConditionedQuadratic,
    Levy,
    Michalewicz,
    Rastrigin,
    Rosenbrock,
)

FUNCTIONS = [Rosenbrock(), Rosenbrock(dim=5), Rosenbrock(a=2.0), Beale(), Rastrigin(dim=3),
             Rastrigin(dim=4, amplitude=2.5),
             IllConditionedQuadratic(dim=6, condition=100.0)]


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f"{f.name}-{f.dim}")
def test_minimum_at_the_minimizer_with_zero_gradient(f) -> None:
    x = f.minimizer.clone().requires_grad_()
    value = f(x)
    value.backward()
    assert value.item() == pytest.approx(f.minimum, abs=1e-12)
    assert x.grad.abs().max().item() < 1e-9
    lower, upper = f.bounds.unbind(-1)
    assert bool((lower <= f.minimizer).all() and (f.minimizer <= upper).all())
    random = lower + (upper - lower) * torch.rand(100, f.dim, dtype=torch.float64,
                                                  generator=torch.Generator().manual_seed(0))
    assert f(random).shape == (100,)  # batches of points
    assert (f(random) > f.minimum).all()


def test_known_values() -> None:
    one = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert Rastrigin(dim=2)(one).item() == pytest.approx(1.0)
    v = [0.3, -1.2, 2.0]  # Riedl et al.'s variant, E(v) = sum v^2 + 2.5 sum (1 - cos 2 pi v)
    by_hand = sum(t * t + 2.5 * (1 - math.cos(2 * math.pi * t)) for t in v)
    assert Rastrigin(dim=3, amplitude=2.5)(torch.tensor(v, dtype=torch.float64)).item() == \
        pytest.approx(by_hand, rel=1e-14)
    standard = 10 * 3 + sum(t * t - 10 * math.cos(2 * math.pi * t) for t in v)
    assert Rastrigin(dim=3)(torch.tensor(v, dtype=torch.float64)).item() == \
        pytest.approx(standard, rel=1e-14)
    assert Beale()(torch.tensor([0.0, 0.0])).item() == pytest.approx(1.5**2 + 2.25**2 + 2.625**2)
    assert Rosenbrock()(torch.tensor([0.0, 0.0])).item() == 1.0


def test_quadratic_has_the_requested_spectrum() -> None:
    f = IllConditionedQuadratic(dim=8, condition=1e4, seed=2)
    eigenvalues = f.eigenvalues
    torch.testing.assert_close(eigenvalues, torch.logspace(0, 4, 8, dtype=torch.float64),
                               rtol=1e-10, atol=0.0)
    assert not torch.allclose(f.hessian, torch.diag(torch.diagonal(f.hessian)))  # rotated
    assert math.isclose(eigenvalues.max() / eigenvalues.min(), 1e4, rel_tol=1e-10)


def test_rosenbrock_without_closed_form_minimizer_says_so() -> None:
    with pytest.raises(UnsupportedError, match=r"a=2\.0, dim=3"):
        _ = Rosenbrock(dim=3, a=2.0).minimizer


BO_FUNCTIONS = [Branin(), Hartmann6(), Ackley(dim=5), Levy(dim=4), Michalewicz(dim=2),
                Michalewicz(dim=5), Michalewicz(dim=10)]
STATED_MINIMA = {"branin": 0.397887, "hartmann6": -3.32237, "ackley": 0.0, "levy": 0.0}
MICHALEWICZ = {2: -1.801303, 5: -4.687658, 10: -9.660152}


@pytest.mark.parametrize("f", BO_FUNCTIONS, ids=lambda f: f"{f.name}-{f.dim}")
def test_bo_function_value_at_its_optimizer_is_the_stated_optimum(f) -> None:
    stated = MICHALEWICZ[f.dim] if f.name == "michalewicz" else STATED_MINIMA[f.name]
    assert f(f.minimizer).item() == pytest.approx(stated, abs=1e-5)
    assert f.minimum == pytest.approx(stated, abs=1e-5)
    lower, upper = f.bounds.unbind(-1)
    points = lower + (upper - lower) * torch.rand(2000, f.dim, dtype=torch.float64,
                                                  generator=torch.Generator().manual_seed(1))
    assert (f(points) >= f.minimum - 1e-6).all()  # nothing random beats the optimum


def test_branin_has_three_minimizers_and_observations_can_be_noisy() -> None:
    f = Branin()
    torch.testing.assert_close(f(f.minimizers), torch.full((3,), f.minimum, dtype=torch.float64),
                               atol=1e-5, rtol=0.0)
    gen = torch.Generator().manual_seed(0)
    noisy = f.observe(f.minimizers.repeat(1000, 1), noise_std=0.5, generator=gen)
    assert abs(noisy.mean().item() - f.minimum) < 0.05 and abs(noisy.std().item() - 0.5) < 0.05
    assert torch.equal(f.observe(f.minimizers), f(f.minimizers))
