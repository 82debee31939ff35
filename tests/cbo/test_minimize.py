"""minimize: counts and shapes, each stopping rule, frozen runs leave the others' draws
alone, the best point, seeds, float32, and argument checks; gaussian_particles."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.cbo import CBO, ConsensusHopping, consensus_point, gaussian_particles, minimize
from stochopt.tasks import Ackley


def _sphere(x: torch.Tensor) -> torch.Tensor:
    return (x**2).sum(-1)


def test_max_iterations_counts_and_shapes() -> None:
    x0 = gaussian_particles(torch.ones(3), 1.0, 7, runs=2, seed=0)
    result = minimize(_sphere, x0, CBO(dt=0.1), max_iterations=5, seed=1)
    assert result.x.shape == (2, 3) and result.fun.shape == (2,)
    assert result.consensus.shape == (6, 2, 3)  # K + 1 evaluations
    assert result.nit.tolist() == [5, 5]
    assert result.nfev.tolist() == [7 * 6 + 1] * 2  # N (K + 1) particles, then f(x)
    assert result.reason == ("max_iterations", "max_iterations")
    assert not result.success.any()
    torch.testing.assert_close(result.x, result.consensus[-1])
    torch.testing.assert_close(result.fun, _sphere(result.x))


def test_the_final_point_is_the_consensus_of_the_final_particles() -> None:
    # replay the loop by hand: K moves, then one more average (Riedl et al.'s CBO.m, CH.m)
    x0 = gaussian_particles(torch.zeros(2), 1.0, 5, runs=3, seed=0)
    method = ConsensusHopping(sigma=0.3, alpha=4.0)
    result = minimize(_sphere, x0, method, max_iterations=4, seed=9)
    x, generator = x0.clone(), torch.Generator().manual_seed(9)
    for k in range(4):
        x, info = method.step(_sphere, x, k, generator)
        torch.testing.assert_close(result.consensus[k], info.consensus, rtol=0, atol=0)
    torch.testing.assert_close(result.x, consensus_point(x, _sphere(x), 4.0), rtol=0, atol=0)


def test_energy_tolerance_stops_and_freezes_only_the_runs_that_reach_it() -> None:
    x0 = gaussian_particles(torch.tensor([[0.0, 0.0], [3.0, -2.0]]), 1e-3, 6, seed=0)
    method = CBO(dt=0.05, sigma=0.5)
    free = minimize(_sphere, x0, method, max_iterations=50, seed=4)
    stopped = minimize(_sphere, x0, method, max_iterations=50, energy_tol=1e-4, seed=4)
    assert stopped.reason == ("energy_tol", "max_iterations")
    assert stopped.success.tolist() == [True, False]
    assert stopped.nit.tolist() == [0, 50] and stopped.nfev.tolist() == [7, 6 * 51 + 1]
    assert float(stopped.best_fun[0]) <= 1e-4
    # run 1 drew the same noise either way
    torch.testing.assert_close(stopped.x[1], free.x[1], rtol=0, atol=0)
    assert (stopped.consensus[:, 0] == stopped.consensus[0, 0]).all()  # run 0 frozen


def test_consensus_tolerance() -> None:
    # sigma = 0 and alpha = 0: every particle contracts to the mean, which never moves, so
    # the second evaluation finds the consensus point exactly where it was
    x0 = gaussian_particles(torch.ones(2), 1.0, 4, runs=2, seed=0)
    result = minimize(_sphere, x0, CBO(sigma=0.0, alpha=0.0), max_iterations=100,
                      consensus_tol=1e-12, seed=0)
    assert result.reason == ("consensus_tol", "consensus_tol")
    assert result.nit.tolist() == [1, 1] and result.success.all()
    torch.testing.assert_close(result.x, x0.mean(1), rtol=1e-15, atol=1e-15)


def test_a_non_finite_consensus_point_stops_the_run() -> None:
    def broken(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x[..., 0] > 0, torch.nan, 0.0)

    x0 = torch.tensor([[[1.0, 0.0], [2.0, 0.0]], [[-1.0, 0.0], [-2.0, 0.0]]],
                      dtype=torch.float64)
    result = minimize(broken, x0, CBO(), max_iterations=3, seed=0)
    assert result.reason == ("nonfinite", "max_iterations")
    assert result.nit.tolist() == [0, 3] and not result.success.any()


def test_best_point_seeds_unbatched_input_and_float32() -> None:
    f = Ackley(dim=2)
    x0 = gaussian_particles(torch.full((2,), 1.5), 1.0, 20, seed=0)[0]  # (N, d): one run
    a = minimize(f, x0, CBO(dt=0.1), max_iterations=30, seed=3)
    b = minimize(f, x0, CBO(dt=0.1), max_iterations=30, seed=3)
    c = minimize(f, x0, CBO(dt=0.1), max_iterations=30, seed=torch.Generator().manual_seed(4))
    assert a.x.shape == (1, 2) and torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    torch.testing.assert_close(f(a.best_x), a.best_fun, rtol=0, atol=0)
    assert float(a.best_fun[0]) <= float(a.fun[0])
    single = minimize(f, x0.float(), CBO(dt=0.1), max_iterations=30, seed=3)
    assert single.x.dtype == torch.float32 and single.consensus.dtype == torch.float32


def test_x0_may_be_a_sampler_of_the_generator() -> None:
    def sampler(generator: torch.Generator) -> torch.Tensor:
        return gaussian_particles(torch.zeros(2), 1.0, 8, runs=3, seed=generator)

    result = minimize(_sphere, sampler, CBO(), max_iterations=2, seed=5)
    assert result.x.shape == (3, 2)


def test_gaussian_particles() -> None:
    means = torch.tensor([[0.0, 10.0], [5.0, -5.0]], dtype=torch.float64)
    x = gaussian_particles(means, 2.0, 20_000, seed=0)
    assert x.shape == (2, 20_000, 2) and x.dtype == torch.float64
    # sample mean and sd of 2e4 draws: standard errors 2/141 and 2/200
    torch.testing.assert_close(x.mean(1), means, rtol=0, atol=0.06)
    torch.testing.assert_close(x.std(1), torch.full((2, 2), 2.0, dtype=torch.float64),
                               rtol=0, atol=0.04)
    assert gaussian_particles(torch.zeros(3), 1.0, 4, runs=5).shape == (5, 4, 3)
    with pytest.raises(ValueError, match=r"runs=3 but mean has 2 rows"):
        gaussian_particles(means, 1.0, 4, runs=3)
    with pytest.raises(ValueError, match=r"gaussian_particles: particles must be >= 1, got 0"):
        gaussian_particles(means, 1.0, 0)


def test_bad_arguments() -> None:
    x0 = torch.zeros(2, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"minimize: max_iterations must be >= 0, got -1"):
        minimize(_sphere, x0, CBO(), max_iterations=-1)
    with pytest.raises(ValueError, match=r"minimize: consensus_tol must be in \(0, inf\)"):
        minimize(_sphere, x0, CBO(), consensus_tol=0.0)
    with pytest.raises(TypeError, match=r"minimize: energy_tol must be a real number"):
        minimize(_sphere, x0, CBO(), energy_tol="0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"method must be a CBO or ConsensusHopping"):
        minimize(_sphere, x0, "cbo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"x0 must have shape \(M, N, d\) or \(N, d\)"):
        minimize(_sphere, torch.zeros(3, dtype=torch.float64), CBO())
    with pytest.raises(TypeError, match=r"x0 must be a floating-point tensor"):
        minimize(_sphere, torch.zeros(2, 3, 2, dtype=torch.long), CBO())
    with pytest.raises(TypeError, match=r"seed must be an int or a torch.Generator, got 1.5"):
        minimize(_sphere, x0, CBO(), seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expected \(2, 3\)"):
        minimize(lambda x: x.sum(), x0, CBO())
    assert math.isfinite(float(minimize(_sphere, x0, CBO(), max_iterations=0).fun[0]))
