"""The neural surrogates: posterior summaries, fits, the DKL dense solve, the NNGP kernel."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.bayesopt import GP, Study
from stochopt.bayesopt.kernels import matern52, nngp_relu, nngp_relu_diagonal
from stochopt.bayesopt.neural import DKL, HMCBNN, DeepEnsemble, posterior_from_samples
from stochopt.bayesopt.neural.mlp import mlp_features
from stochopt.bayesopt.surrogates import SURROGATES

F64 = torch.float64
BOX = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=F64)


def _data(n: int = 15, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.rand(n, 2, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return X, torch.sin(3 * X[:, 0]) + X[:, 1].square()


def test_posterior_from_samples_is_the_sample_mean_and_covariance() -> None:
    F = torch.randn(7, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    post = posterior_from_samples(F, noise=0.3, covariance=True)
    assert torch.allclose(post.mean, F.mean(0))
    assert torch.allclose(post.covariance, torch.cov(F.T))
    assert torch.allclose(post.variance, F.var(0)) and post.noise == 0.3


def test_arc_cosine_step_matches_monte_carlo() -> None:
    """One layer of the recursion is sigma_b^2 + sigma_w^2 E[relu(u) relu(v)]."""
    x = torch.tensor([[0.2, 0.9, 0.4], [0.7, 0.1, 0.5]], dtype=F64)
    K0 = 1.3 + 10.0 * (x @ x.T) / 3
    uv = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=F64), K0).sample(
        torch.Size([2_000_000]))
    r = uv.clamp(min=0)
    mc = 1.3 + 10.0 * (r[:, 0] * r[:, 1]).mean()
    se = 10.0 * (r[:, 0] * r[:, 1]).std() / math.sqrt(2_000_000)
    one_layer = nngp_relu(x[:1], x[1:], depth=1)[0, 0]
    assert abs(one_layer - mc) < 4 * se


def test_nngp_diagonal_and_positive_definiteness() -> None:
    X = torch.rand(30, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    K = nngp_relu(X, X)
    assert torch.allclose(K.diagonal(), nngp_relu_diagonal(X), rtol=1e-6)
    assert torch.linalg.eigvalsh(K)[0] > -1e-8 * K.diagonal().mean()


def test_ibnn_gp_posterior_variance_uses_the_nngp_diagonal() -> None:
    X, y = _data()
    gp = GP(kernel="nngp").fit(X, y, BOX)
    Xs = torch.rand(6, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    full = gp.posterior(Xs, covariance=True)
    assert torch.allclose(gp.posterior(Xs).variance, full.covariance.diagonal(), rtol=1e-9)


def test_dkl_posterior_equals_a_dense_solve_on_its_features() -> None:
    X, y = _data()
    dkl = DKL(pretrain_steps=50, train_steps=50).fit(X, y, BOX)
    hp = dkl.hyperparameters
    Xs = torch.rand(5, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    F, Fs = mlp_features(dkl.net, X)[0], mlp_features(dkl.net, Xs)[0]  # X is already unit
    z = (y - y.mean()) / y.std()
    K = matern52(F, F, hp.lengthscales, torch.tensor(hp.outputscale)) + hp.noise * torch.eye(15)
    k = matern52(F, Fs, hp.lengthscales, torch.tensor(hp.outputscale))
    mean = hp.mean + k.T @ torch.linalg.solve(K, z - hp.mean)
    assert torch.allclose(dkl.posterior(Xs).mean, mean * y.std() + y.mean(), atol=1e-8)


@pytest.mark.parametrize("noise", [None, 0.01])
def test_dkl_written_out_gradient_equals_autograd_of_the_log_posterior(noise) -> None:
    """Network and every hyperparameter (lengthscales, scale, noise, mean), away from the
    initial values so every prior term is exercised; float64 network."""
    X, y = _data()
    dkl = DKL(noise, widths=(8, 6), pretrain_steps=20, train_steps=20, dtype=F64).fit(X, y, BOX)
    raw = dkl._initial_raw(1, torch.Generator().manual_seed(5)).detach()
    leaves, leaf_raw = [p.clone().requires_grad_() for p in dkl.net], raw.clone().requires_grad_()
    dkl.net = leaves
    expected = torch.autograd.grad(dkl._negative_log_posterior(leaf_raw), [*leaves, leaf_raw])
    dkl.net = [p.detach() for p in leaves]
    got = dkl._joint_gradients(raw)
    assert noise is None or got[-1][-2] == 0  # a known noise has no parameter
    for g, want in zip(got, expected, strict=True):
        torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("model", [
    DeepEnsemble(members=4, widths=(32, 32), steps=300, lr=1e-2),
    HMCBNN(widths=(16,), burn_in=100, samples=100, thin=5, pretrain_steps=300, lr=1e-2),
])
def test_sampled_surrogates_fit_the_data_and_are_unsure_far_from_it(model) -> None:
    X, y = _data(20)
    model.fit(X, y, BOX, torch.Generator().manual_seed(0))
    post = model.posterior(X)
    assert (post.mean - y).abs().mean() < 0.3 * y.std()
    assert torch.isfinite(post.variance).all() and (post.variance > 0).all()


@pytest.mark.parametrize("name", ["ibnn", "dkl", "ensemble", "hmc"])
def test_every_surrogate_runs_in_the_loop(name: str, monkeypatch) -> None:
    small = {"dkl": lambda noise: DKL(noise, widths=(8,), pretrain_steps=20, train_steps=20),
             "ensemble": lambda noise: DeepEnsemble(noise, members=3, widths=(8,), steps=20),
             "hmc": lambda noise: HMCBNN(noise, widths=(8,), burn_in=10, samples=10, thin=2,
                                         pretrain_steps=20)}
    if name in small:
        monkeypatch.setitem(SURROGATES, name, small[name])
    study = Study(BOX, surrogate=name, n_initial=4, raw_samples=32, restarts=2)
    for _ in range(6):
        X = study.ask()
        study.tell(X, (X - 0.3).square().sum(-1))
    assert study.n == 6 and len(study.fit_seconds) == 2


def test_the_ensembles_written_out_gradients_equal_autograd() -> None:
    X = torch.rand(10, 2, dtype=torch.float64)
    model = DeepEnsemble(0.02, members=3, widths=(6, 5), steps=2, dtype=torch.float64)
    model.fit(X, X.sum(1).cos(), torch.tensor([[0.0, 1.0]] * 2, dtype=torch.float64))
    params = [p.clone().requires_grad_() for p in model.params]
    mask = (torch.rand(3, 10, generator=torch.Generator().manual_seed(4)) < 0.8).double()
    expected = torch.autograd.grad(model._loss(params, mask, model.z), params)
    for got, want in zip(model._gradients(params, mask, model.z), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
