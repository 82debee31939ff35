"""Composite stochastic mirror descent: prox operators in closed form, the simplex step, and
a Lasso whose last iterate is sparse."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochopt.optim import ProxSGD
from stochopt.optim.prox_sgd import soft_threshold
from stochopt.schedules import InverseSqrt, ScheduleLR


def _one_step(prox: str, z_from: torch.Tensor, **kwargs) -> torch.Tensor:
    w = torch.nn.Parameter(z_from.clone())
    opt = ProxSGD([w], lr=0.5, prox=prox, **kwargs)
    w.grad = torch.tensor([1.0, -1.0, 0.2, 0.0])
    opt.step()
    return w.detach()


def test_prox_operators_in_closed_form() -> None:
    x = torch.tensor([2.0, -0.8, 0.3, -0.05])
    z = x - 0.5 * torch.tensor([1.0, -1.0, 0.2, 0.0])  # (1.5, -0.3, 0.2, -0.05)
    assert torch.allclose(_one_step("none", x), z)
    assert torch.allclose(_one_step("l1", x, l1=0.2), torch.tensor([1.4, -0.2, 0.1, 0.0]))
    assert torch.allclose(_one_step("elastic_net", x, l1=0.2, l2=1.0),
                          torch.tensor([1.4, -0.2, 0.1, 0.0]) / 1.5)
    assert torch.allclose(_one_step("box", x, lower=-0.1, upper=1.0),
                          torch.tensor([1.0, -0.1, 0.2, -0.05]))
    assert torch.equal(soft_threshold(torch.tensor([-3.0, 0.5]), 1.0), torch.tensor([-2.0, 0.0]))


def test_simplex_step_is_exponentiated_gradient() -> None:
    p = torch.nn.Parameter(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    g = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    opt = ProxSGD([p], lr=0.7, prox="simplex")
    p.grad = g
    opt.step()
    expected = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64) * torch.exp(-0.7 * g)
    torch.testing.assert_close(p.detach(), expected / expected.sum())
    assert p.detach().sum().item() == pytest.approx(1.0)


def test_lasso_last_iterate_is_sparse_and_the_average_is_not() -> None:
    from sklearn.linear_model import Lasso

    gen = np.random.default_rng(0)
    n, d = 400, 40
    X = gen.standard_normal((n, d))
    truth = np.zeros(d)
    truth[:4] = [3.0, -2.0, 1.5, 1.0]
    y = X @ truth + 0.5 * gen.standard_normal(n)
    lam = 0.1 * np.max(np.abs(X.T @ y)) / n
    reference = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(X, y)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def objective(w: np.ndarray) -> float:  # sklearn's scaling: ||y - Xw||^2 / (2n) + lam |w|_1
        return float(np.sum((y - X @ w) ** 2) / (2 * n) + lam * np.abs(w).sum())

    steps = 4000
    w = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))
    opt = ProxSGD([w], lr=1.0, prox="l1", l1=lam, suffix_start=steps // 2)
    schedule = ScheduleLR(opt, InverseSqrt(eta=2.0, horizon=steps, cap=0.2))
    batches = torch.Generator().manual_seed(1)
    for _ in range(steps):
        rows = torch.randint(0, n, (8,), generator=batches)
        residual = Xt[rows] @ w.detach() - yt[rows]
        w.grad = Xt[rows].T @ residual / 8
        opt.step()
        schedule.step()
    last = w.detach().numpy()
    average = opt.state[w]["average"].numpy()
    gap = objective(last) - objective(reference.coef_)
    assert 0 <= gap < 0.02 * objective(reference.coef_)
    assert np.count_nonzero(reference.coef_) == 4
    assert np.count_nonzero(last) <= d // 2  # exact zeros: the prox step, not rounding
    assert np.count_nonzero(average) == d  # averaging smears the support
    assert math.isfinite(objective(opt.state[w]["suffix_average"].numpy()))
