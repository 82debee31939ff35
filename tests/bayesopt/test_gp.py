"""The GP: posterior equal to a dense solve, MAP fits that interpolate, robust Cholesky."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.bayesopt import GP, Hyperparameters, NumericalError, matern52, robust_cholesky
from stochopt.tasks import Branin


def _data(n: int = 12, seed: int = 0):
    f = Branin()
    low, high = f.bounds.unbind(-1)
    X = low + (high - low) * torch.rand(n, 2, dtype=torch.float64,
                                        generator=torch.Generator().manual_seed(seed))
    return f, X, f(X)


def test_posterior_equals_a_dense_solve() -> None:
    f, X, y = _data()
    hp = Hyperparameters(torch.tensor([0.3, 0.5], dtype=torch.float64), 1.7, 1e-3, 0.2)
    gp = GP().condition(X, y, f.bounds, hp)
    Xs = _data(5, seed=1)[1]
    # dense, in the GP's standardized units, written out independently
    low, high = f.bounds.unbind(-1)
    U, Us = (X - low) / (high - low), (Xs - low) / (high - low)
    z = (y - y.mean()) / y.std()
    K = matern52(U, U, hp.lengthscales, torch.tensor(1.7)) + 1e-3 * torch.eye(12,
                                                                                dtype=torch.float64)
    Ks = matern52(U, Us, hp.lengthscales, torch.tensor(1.7))
    Kss = matern52(Us, Us, hp.lengthscales, torch.tensor(1.7))
    mean = 0.2 + Ks.T @ torch.linalg.solve(K, z - 0.2)
    cov = Kss - Ks.T @ torch.linalg.solve(K, Ks)
    post = gp.posterior(Xs, covariance=True)
    torch.testing.assert_close(post.mean, mean * y.std() + y.mean(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(post.covariance, cov * y.var(), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(post.variance, post.covariance.diagonal())


def test_map_fit_interpolates_a_noise_free_function_and_predicts_held_out_points() -> None:
    f, X, y = _data(30)
    gp = GP().fit(X, y, f.bounds)
    at_data = gp.posterior(X)
    assert (at_data.mean - y).abs().max() < 1e-2 * y.std()
    _, Xt, yt = _data(200, seed=3)
    error = (gp.posterior(Xt).mean - yt).abs().mean() / yt.std()
    assert error < 0.15
    assert gp.hyperparameters.noise < 1e-3
    samples = gp.posterior(Xt[:4], covariance=True).sample(2000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples.mean(0), gp.posterior(Xt[:4]).mean, rtol=0.0,
                               atol=float(4 * gp.posterior(Xt[:4]).stddev.max() / math.sqrt(2000)))


def test_known_noise_and_validation() -> None:
    f, X, y = _data(10)
    gp = GP(noise=0.25).fit(X, y, f.bounds)
    assert gp.posterior(X).noise == pytest.approx(0.25)
    with pytest.raises(ValueError, match="kernel must be one of"):
        GP(kernel="periodic")
    with pytest.raises(ValueError, match=r"need X \(n, d\), y \(n,\), bounds \(d, 2\)"):
        GP().fit(X, y[:3], f.bounds)


def test_cholesky_survives_duplicates_and_reports_hopeless_matrices() -> None:
    x = torch.ones(3, 2, dtype=torch.float64)
    K = matern52(x, x, torch.ones(2, dtype=torch.float64), torch.tensor(1.0))  # rank 1
    L = robust_cholesky(K)
    torch.testing.assert_close(L @ L.T, K, atol=1e-6, rtol=0.0)
    with pytest.raises(NumericalError, match="not positive definite even with jitter"):
        robust_cholesky(-torch.eye(3, dtype=torch.float64))
