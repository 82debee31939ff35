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
from tests.contract import assert_same, assert_unchanged, snapshot


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


# ------------------------------------------------------------------------------ bad input
def _on_simplex(n: int = 3) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.full((n,), 1 / n, dtype=torch.float64))


@pytest.mark.parametrize(("values", "problem"), [
    ([-0.5, 1.5], "has a negative, NaN or infinite entry"),
    ([0.5, 0.6], "sums to 1.1"),
    ([1.0, 1.0], "sums to 2.0"),
    ([0.0, 0.0], "sums to 0.0"),
    ([math.nan, 1.0], "has a negative, NaN or infinite entry"),
    ([], "sums to 0.0"),
])
def test_a_simplex_parameter_off_the_simplex_is_refused(values, problem) -> None:
    w = torch.nn.Parameter(torch.tensor(values, dtype=torch.float64))
    match = r"ProxSGD: with prox='simplex' every parameter must lie on .* but parameter 0 of "
    with pytest.raises(ValueError, match=match + rf"param group 0 .*{problem}"):
        ProxSGD([w], prox="simplex")


def test_a_simplex_parameter_on_the_simplex_up_to_rounding_is_accepted() -> None:
    w = torch.nn.Parameter(torch.softmax(torch.randn(1000), 0))  # float32, sum off by ~1e-7
    ProxSGD([w], prox="simplex")
    ProxSGD([torch.nn.Parameter(torch.tensor([0.0, 1.0]))], prox="simplex")  # a vertex
    with pytest.raises(TypeError, match="prox='simplex' needs real parameters"):
        ProxSGD([torch.nn.Parameter(torch.tensor([1.0 + 0j]))], prox="simplex")


def test_add_param_group_off_the_simplex_changes_nothing() -> None:
    first = _on_simplex()
    opt = ProxSGD([first], lr=0.1, prox="simplex")
    first.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    off = torch.nn.Parameter(torch.tensor([2.0, -1.0], dtype=torch.float64))
    assert_unchanged(lambda: opt.add_param_group({"params": [off]}), opt,
                     names=("parameter 0 of param group 1",))
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [off], "prox": "box", "lower": -1.0, "upper": 2.0})


def test_loading_prox_simplex_onto_parameters_off_the_simplex_changes_nothing() -> None:
    source = ProxSGD([_on_simplex()], lr=0.1, prox="simplex")
    w = torch.nn.Parameter(torch.tensor([0.2, 0.2, 0.2], dtype=torch.float64))
    opt = ProxSGD([w], lr=0.1, prox="none")
    assert_unchanged(lambda: opt.load_state_dict(source.state_dict()), opt,
                     names=("ProxSGD.load_state_dict", "sums to 0.6"))


@pytest.mark.parametrize(("group", "kind", "match"), [
    ({"lower": "a"}, TypeError, "lower must be a real number"),
    ({"upper": [1.0]}, TypeError, "upper must be a real number"),
    ({"lower": 1.0, "upper": 0.0}, ValueError, r"lower must be <= upper, got 1\.0 > 0\.0"),
    ({"lower": math.inf}, ValueError, "lower must be in"),
    ({"upper": -math.inf}, ValueError, "upper must be in"),
    ({"upper": math.nan}, ValueError, "upper must be in"),
    ({"lr": math.inf}, ValueError, r"lr must be in \[0, inf\)"),
])
def test_bad_bounds_in_a_new_group_change_nothing(group, kind, match) -> None:
    opt = ProxSGD([torch.nn.Parameter(torch.zeros(2))], prox="box", lower=-1.0, upper=1.0)
    extra = torch.nn.Parameter(torch.zeros(2))
    assert_unchanged(lambda: opt.add_param_group({"params": [extra], **group}), opt,
                     names=("ProxSGD",))
    with pytest.raises(kind, match=match):
        opt.add_param_group({"params": [extra], **group})
    with pytest.raises(kind, match=match):
        ProxSGD([extra], prox="box", **group)


def test_an_infinite_scheduled_step_size_never_reaches_the_parameters() -> None:
    w = torch.nn.Parameter(torch.tensor([0.5, 0.5]))
    opt = ProxSGD([w], lr=0.1, prox="simplex")
    schedule = ScheduleLR(opt, lambda t: 0.1 if t < 1 else math.inf)
    w.grad = torch.tensor([1.0, 0.0])
    opt.step()
    before = snapshot(opt), schedule.state_dict()
    with pytest.raises(ValueError, match=r"ScheduleLR: schedule\(1\) must be a finite"):
        schedule.step()
    assert_same(before, (snapshot(opt), schedule.state_dict()))
    with pytest.raises(ValueError, match="eta must be in"):
        InverseSqrt(eta=math.inf)


def test_the_simplex_step_is_kept_whole_by_chunked_state() -> None:
    opt = ProxSGD([{"params": [_on_simplex()], "prox": "simplex"},
                   {"params": [torch.nn.Parameter(torch.zeros(2))], "prox": "l1"}])
    assert [opt.splittable(g) for g in opt.param_groups] == [False, True]


def test_soft_threshold_needs_a_tensor() -> None:
    with pytest.raises(TypeError, match="soft_threshold: z must be a tensor, got"):
        soft_threshold([1.0, -2.0], 0.5)
