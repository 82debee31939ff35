"""SEA environments: gradients are the derivatives of the values, the comparators are exact (closed
form / KKT / direct sums), the variation quantities match their definitions (closed forms and
Monte Carlo), the constants bound what they claim, bad arguments are refused."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.online import SEALeastSquares, SEAQuadratic

F64 = torch.float64


def _envs() -> list[SEAQuadratic | SEALeastSquares]:
    return [SEAQuadratic(4, rounds=30, runs=3, radius=2.0, noise=0.7, amplitude=0.5, period=6,
                         curvatures=torch.tensor([2.0, 1.0, 0.5, 0.1], dtype=F64), seed=1),
            SEALeastSquares(4, rounds=30, runs=3, radius=2.0, noise=0.3, amplitude=0.4,
                            target=torch.tensor([0.5, -0.5, 0.0, 0.2], dtype=F64), seed=2)]


@pytest.mark.parametrize("env", _envs(), ids=["quadratic", "least-squares"])
def test_gradient_is_the_derivative_of_the_value(env: SEAQuadratic | SEALeastSquares) -> None:
    x = env.domain.project(torch.randn(3, 4, generator=torch.Generator().manual_seed(0),
                                       dtype=F64)).requires_grad_(True)
    for t in (1, 7, 30):
        value, gradient = env.reveal(t, x)
        (autograd,) = torch.autograd.grad(value.sum(), x)
        torch.testing.assert_close(gradient, autograd, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("env", _envs(), ids=["quadratic", "least-squares"])
def test_hindsight_is_the_constrained_minimum_of_the_summed_losses(
        env: SEAQuadratic | SEALeastSquares) -> None:
    for horizon in (1, 5, 30):
        u, loss = env.hindsight(horizon)
        direct = sum(env.reveal(t, u)[0] for t in range(1, horizon + 1))
        torch.testing.assert_close(loss, direct, rtol=1e-13, atol=1e-13)
        # KKT: grad + mu u = 0 with mu >= 0, and mu = 0 unless ||u|| = r
        grad = sum(env.reveal(t, u)[1] for t in range(1, horizon + 1))
        mu = -(grad * u).sum(-1) / u.square().sum(-1)
        assert bool((mu >= -1e-10).all())
        on_sphere = (u.norm(dim=-1) - env.radius).abs() <= 1e-12
        assert bool((on_sphere | (mu.abs() <= 1e-10)).all())
        torch.testing.assert_close(grad + mu.unsqueeze(-1) * u, torch.zeros_like(u), rtol=0,
                                   atol=1e-10 * horizon)


def test_quadratic_comparator_is_the_projected_mean_for_identity_curvature() -> None:
    env = SEAQuadratic(3, rounds=50, runs=4, radius=1.0, noise=2.0, amplitude=1.5, period=10,
                       center=torch.tensor([0.5, 0.5, 0.0], dtype=F64), seed=3)
    u, _ = env.hindsight(50)
    mean = env.centers.mean(0) - env.xi.mean(0)  # (runs, d)
    norm = mean.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(u, mean * torch.clamp(1.0 / norm, max=1.0), rtol=0, atol=1e-15)


def test_adversarial_variation_of_the_square_and_sine_waves() -> None:
    env = SEAQuadratic(2, rounds=20, amplitude=0.5, period=4,
                       curvatures=torch.tensor([3.0, 1.0], dtype=F64))
    # w = + + - - + + ...: 9 sign changes in rounds 2..20, each a jump of 2 v = 1 along e_1,
    # scaled by h_1 = 3
    assert env.variances(20) == (0.0, 9 * 9.0)
    sine = SEAQuadratic(2, rounds=20, amplitude=0.5, period=7, wave="sine")
    expected = sum((0.5 * (math.sin(2 * math.pi * t / 7) - math.sin(2 * math.pi * (t - 1) / 7)))
                   ** 2 for t in range(2, 21))
    assert sine.variances(20)[1] == pytest.approx(expected, rel=1e-13)
    ls = SEALeastSquares(3, rounds=20, amplitude=0.5, period=4, noise=0.0)
    assert ls.variances(20)[1] == pytest.approx(9 * 1.0 / 9, rel=1e-14)  # ||jump||^2 / d^2


def test_stochastic_variance_matches_monte_carlo() -> None:
    # quadratic: grad f - grad F = xi, E ||xi||^2 = s^2 d at every x
    q = SEAQuadratic(5, rounds=1, runs=20000, noise=0.3, seed=4)
    sample = q.xi[0].square().sum(-1)
    assert abs(float(sample.mean()) - q.variances(1)[0]) <= 4 * float(sample.std()) / 141.4
    # least squares: E||(a a^T - I/d)(w - u) - n eps a||^2 is largest at w = -r u/||u||
    u0 = torch.tensor([0.6, 0.0, 0.0], dtype=F64)
    ls = SEALeastSquares(3, rounds=1, runs=40000, radius=1.0, target=u0, noise=0.4, seed=5)
    w = (-u0 / u0.norm()).expand(40000, 3)
    grad = ls.reveal(1, w)[1]
    sample = (grad - (w - u0) / 3).square().sum(-1)  # grad F(w) = (w - u) / d
    assert abs(float(sample.mean()) - ls.variances(1)[0]) <= 4 * float(sample.std()) / 200.0


def test_constants_bound_the_drawn_gradients() -> None:
    q = SEAQuadratic(3, rounds=200, runs=50, radius=1.0, noise=0.5, amplitude=0.3, seed=6,
                     curvatures=torch.tensor([2.0, 1.0, 0.5], dtype=F64))
    ls = SEALeastSquares(3, rounds=200, runs=50, radius=1.0, noise=0.5, amplitude=0.3, seed=7)
    for env in (q, ls):
        x = env.domain.project(torch.randn(50, 3, generator=torch.Generator().manual_seed(8),
                                           dtype=F64) * 10)  # on the sphere
        norms = torch.stack([env.reveal(t, s * x)[1].norm(dim=-1)
                             for t in range(1, 201) for s in (1.0, -1.0)])
        assert float(norms.max()) <= env.gradient_bound
    assert q.smoothness == 2.0 and q.strong_convexity == 0.5 and q.diameter == 2.0
    assert ls.exp_concavity == 1.0 / ls.gradient_bound**2


def test_draws_are_reproducible_from_the_seed() -> None:
    a, b = (SEALeastSquares(3, rounds=5, runs=2, noise=0.1, seed=9) for _ in range(2))
    assert torch.equal(a.features, b.features) and torch.equal(a.labels, b.labels)
    c = SEALeastSquares(3, rounds=5, runs=2, noise=0.1, seed=10)
    assert not torch.equal(a.features, c.features)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"SEAQuadratic: noise must be finite and >= 0, got -1.0"):
        SEAQuadratic(2, rounds=3, noise=-1.0)
    with pytest.raises(ValueError, match=r"SEAQuadratic: period must be >= 2, got 1"):
        SEAQuadratic(2, rounds=3, period=1)
    with pytest.raises(ValueError, match=r"wave must be 'square' or 'sine', got 'saw'"):
        SEALeastSquares(2, rounds=3, wave="saw")
    with pytest.raises(ValueError, match=r"SEAQuadratic: curvatures must be > 0"):
        SEAQuadratic(2, rounds=3, curvatures=torch.tensor([1.0, 0.0], dtype=F64))
    with pytest.raises(ValueError, match=r"direction must have unit norm"):
        SEALeastSquares(2, rounds=3, direction=torch.tensor([1.0, 1.0], dtype=F64))
    env = SEAQuadratic(2, rounds=3)
    with pytest.raises(ValueError, match=r"reveal: t must be an integer in \[1, 3\], got 4"):
        env.reveal(4, env.start())
    with pytest.raises(ValueError, match=r"horizon must be an integer in \[1, 3\], got 0"):
        env.hindsight(0)
