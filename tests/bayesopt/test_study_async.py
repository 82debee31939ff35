"""Asynchronous workers and failures: pending points (the kriging believer) and failed
evaluations (recorded, imputed with the worst value), through save and load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from stochopt.bayesopt import GP, Categorical, Float, NotReadyError, Space, Study, minimize
from stochopt.errors import DamagedFileError
from stochopt.tasks import Branin

F64 = torch.float64
FAST = {"raw_samples": 64, "restarts": 2}
BRANIN = Branin()


def _warm(**settings) -> Study:
    """A Branin study past its 5-point design."""
    study = Study(BRANIN.bounds, n_initial=5, seed=0, **FAST, **settings)
    while study.n < 5:
        X = study.ask()
        study.tell(X, BRANIN(X))
    return study


def _unit_distance(study: Study, a: torch.Tensor, b: torch.Tensor) -> float:
    width = study.bounds[:, 1] - study.bounds[:, 0]
    return float(((a - b) / width).norm())


# ------------------------------------------------------------------------- pending points
def test_believer_keeps_the_mean_and_shrinks_the_variance_at_pending_points() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(8, 2, generator=g, dtype=F64)
    gp = GP().fit(X, (X - 0.4).square().sum(-1), torch.tensor([[0.0, 1.0]] * 2), g)
    P = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=F64)
    grid = torch.rand(50, 2, generator=g, dtype=F64)
    believed = gp.fantasize(P)
    before, after = gp.posterior(torch.cat([grid, P])), believed.posterior(torch.cat([grid, P]))
    # conditioning on y = mu(P) leaves mu unchanged (up to the solves' rounding)
    torch.testing.assert_close(after.mean, before.mean, rtol=0, atol=1e-9)
    assert (after.variance <= before.variance + 1e-12).all()
    # believed without noise: the latent variance at P drops to zero, up to rounding (the
    # variances are differences of terms of the prior variance's size) and the jitter
    prior = gp.hyperparameters.outputscale * float(gp.y_std) ** 2
    assert (after.variance[-2:] <= 1e-7 * prior).all() and (before.variance[-2:] > 0).all()
    # one pending point near the data: the rank-one update at the grid,
    # v(x) - c(x, P)^2 / v(P) (Rasmussen & Williams eq. 2.24)
    joint = gp.posterior(torch.cat([grid[:5], P[1:]]), covariance=True).covariance
    expected = joint.diagonal()[:5] - joint[:5, 5].square() / joint[5, 5]
    single = gp.fantasize(P[1:]).posterior(grid[:5])
    torch.testing.assert_close(single.variance, expected.clamp(min=0), rtol=0,
                               atol=1e-7 * prior)
    assert gp.X.shape == (8, 2)  # the original is untouched


def test_a_second_ask_before_tell_gives_other_points_and_tell_clears_them() -> None:
    study = _warm()
    first = study.ask()
    second = study.ask()
    assert _unit_distance(study, first[0], second[0]) > 0.05
    assert torch.equal(study.pending, torch.cat([first, second]))
    study.tell(first, BRANIN(first))  # the first worker reports
    assert torch.equal(study.pending, second)
    study.tell(second.float(), BRANIN(second))  # float32 rounding still matches
    assert len(study.pending) == 0 and study.n == 7


def test_pending_points_advance_the_design_and_can_be_cancelled() -> None:
    study = Study(BRANIN.bounds, n_initial=4, seed=0)
    reference = Study(BRANIN.bounds, n_initial=4, seed=0)
    design = []
    for _ in range(4):
        x = reference.ask()
        reference.tell(x, [0.0])
        design.append(x)
    asked = torch.cat([study.ask() for _ in range(3)])
    assert torch.equal(asked, torch.cat(design[:3]))  # three workers, three design points
    study.cancel(asked[1:2])
    assert torch.equal(study.pending, asked[[0, 2]])
    study.cancel()
    assert len(study.pending) == 0


def test_pending_points_survive_save_and_load(tmp_path: Path) -> None:
    study = _warm()
    study.ask()
    path = tmp_path / "study.json"
    study.save(path)
    loaded = Study.load(path)
    assert torch.equal(loaded.pending, study.pending)
    assert torch.equal(loaded.ask(), study.ask())  # the same fantasies, the same proposal
    state = json.loads(path.read_text())
    state["pending"] = [[100.0, 0.0]]  # outside the box
    path.write_text(json.dumps(state))
    with pytest.raises(DamagedFileError, match=r"pending points.*outside the bounds") as caught:
        Study.load(path)
    assert caught.value.path == path


def test_a_format_1_checkpoint_still_loads(tmp_path: Path) -> None:
    state = _warm().state_dict()
    for key in ("pending", "space"):
        del state[key]
    state["format"] = 1
    study = Study.from_state_dict(state)
    assert study.n == 5 and len(study.pending) == 0 and study.space is None


def test_pending_points_work_with_constraints_and_batch_acquisitions() -> None:
    study = Study([[0.0, 1.0]] * 2, n_initial=4, seed=1, n_constraints=1, **FAST)
    while study.n < 4:
        X = study.ask()
        study.tell(X, X.sum(-1), 0.5 - X[:, :1])
    a, b = study.ask(), study.ask()
    assert _unit_distance(study, a[0], b[0]) > 0.01
    batch = Study([[0.0, 1.0]] * 2, q=2, n_initial=2, seed=1, **FAST)
    X = batch.ask()
    batch.tell(X, X.sum(-1))
    a, b = batch.ask(), batch.ask()
    assert a.shape == b.shape == (2, 2) and torch.cdist(a, b).min() > 0.01


# -------------------------------------------------------------------- failed evaluations
def test_a_failed_evaluation_is_recorded_imputed_and_not_proposed_again() -> None:
    study = _warm()
    x = study.ask()
    study.tell(x, [math.nan])
    assert study.n == 6 and study.n_failed == 1 and study.y[-1].isnan()
    _, y, _ = study._training()
    assert y[-1] == study.y[:5].max()  # the worst successful value stands in for it
    again = study.ask()
    assert _unit_distance(study, again[0], x[0]) > 0.05
    study.tell(again, [math.inf])  # infinite is a failure too, recorded as NaN
    result = study.result()
    assert result.failed.tolist() == [False] * 5 + [True, True]
    assert result.y_best == float(study.y[:5].min())
    assert not any(torch.equal(result.x_recommended, x_) for x_ in study.X[5:])


def test_failures_round_trip_as_null(tmp_path: Path) -> None:
    study = _warm(n_constraints=0)
    study.tell(study.ask(), [math.nan])
    path = tmp_path / "study.json"
    study.save(path)
    assert json.loads(path.read_text())["y"][-1] is None  # strict JSON, no NaN token
    loaded = Study.load(path)
    assert torch.equal(loaded.y.isnan(), study.y.isnan()) and loaded.n_failed == 1


def test_minimize_keeps_going_through_nan_inf_and_caught_exceptions() -> None:
    calls = []

    def f(x: torch.Tensor) -> float:
        calls.append(x)
        if x[0] > 0.7:
            raise FloatingPointError("diverged")
        if x[0] > 0.5:
            return math.nan if x[1] > 0.5 else math.inf
        return float((x - 0.25).square().sum())

    result = minimize(f, [[0.0, 1.0]] * 2, 14, n_initial=5, seed=0,
                      catch=(FloatingPointError,), **FAST)
    assert len(result.y) == 14 == len(calls)
    failed = result.failed
    assert failed.any() and torch.equal(failed, result.X[:, 0] > 0.5)
    assert result.x_best[0] <= 0.5 and result.y_best < 0.05
    with pytest.raises(FloatingPointError):  # not caught unless asked
        minimize(f, [[0.7, 1.0]] * 2, 3, n_initial=2, **FAST)
    with pytest.raises(TypeError, match="catch must be a tuple of exception classes"):
        minimize(f, [[0.0, 1.0]], 3, catch=("ValueError",))


def test_a_study_whose_every_evaluation_failed_keeps_sampling_and_says_so() -> None:
    study = Study([[0.0, 1.0]], n_initial=2, seed=0)
    for _ in range(4):
        study.tell(study.ask(), [math.nan])
    assert len(set(study.X[:, 0].tolist())) == 4  # Sobol points, all different
    with pytest.raises(NotReadyError, match="all 4 evaluations failed"):
        study.result()
    study.tell(study.ask(), [1.0])
    assert study.result(recommend=False).y_best == 1.0


def test_a_neural_surrogate_believes_its_mean_at_pending_points(monkeypatch) -> None:
    from stochopt.bayesopt.fantasy import Believer
    from stochopt.bayesopt.neural import DeepEnsemble
    from stochopt.bayesopt.surrogates import SURROGATES

    # a small ensemble (the registered one trains 10 nets of 3 x 128 for 1000 steps)
    monkeypatch.setitem(SURROGATES, "ensemble", lambda noise: DeepEnsemble(
        noise=noise, members=3, widths=(16,), steps=50, lr=1e-2))
    study = Study([[0.0, 1.0]] * 2, surrogate="ensemble", n_initial=4, seed=0, **FAST)
    while study.n < 4:
        X = study.ask()
        study.tell(X, (X - 0.3).square().sum(-1))
    first, second = study.ask(), study.ask()
    assert len(study.pending) == 2 and torch.cdist(first, second).item() > 0.05
    # the believer keeps the ensemble's mean and shrinks its variance at the pending point
    model = DeepEnsemble(members=3, widths=(16,), steps=50, lr=1e-2).fit(
        study.X, study.y, study.bounds, torch.Generator().manual_seed(0))
    grid = torch.cat([torch.rand(20, 2, generator=torch.Generator().manual_seed(1),
                                 dtype=F64), first])
    before, after = model.posterior(grid), Believer(model, first).posterior(grid)
    torch.testing.assert_close(after.mean, before.mean, rtol=0, atol=0)
    assert (after.variance <= before.variance + 1e-12).all()
    assert after.variance[-1] <= 1e-6 * before.variance[-1]


def test_tell_clears_the_right_pending_point_on_a_log_scale() -> None:
    # 1e-6 of the range [1e-9, 0.1] is 1e-7: a width-based match would merge these two
    space = Space({"wd": Float(1e-9, 0.1, log=True), "act": Categorical(["relu", "tanh"])})
    study = Study(space, seed=0)
    a, b = [[2e-9, 0.0]], [[5e-8, 0.0]]
    study.add_pending(a)
    study.add_pending(b)
    study.tell(torch.tensor(b, dtype=torch.float32), [1.0])  # float32 rounding still matches
    torch.testing.assert_close(study.pending, torch.tensor(a, dtype=F64), rtol=0, atol=0)
