"""The Optuna sampler on real Optuna studies: two worker processes on one SQLite storage get
distinct trials and the study resumes; distributions, failures, pruning and maximization."""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path

import pytest
import torch

optuna = pytest.importorskip("optuna")

from stochopt.integrations.optuna import StochoptSampler  # noqa: E402

FAST = {"raw_samples": 64, "restarts": 2}


@pytest.fixture(autouse=True)
def quiet_optuna():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(verbosity)


def _storage(path: Path) -> optuna.storages.RDBStorage:
    # two processes write one SQLite file: wait for its lock rather than fail
    return optuna.storages.RDBStorage(f"sqlite:///{path}",
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def _quadratic(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -2.0, 2.0)
    y = trial.suggest_float("y", -2.0, 2.0)
    return (x - 0.5) ** 2 + (y + 0.25) ** 2


def _worker(path: str, n_trials: int) -> None:
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="two-workers", storage=_storage(Path(path)),
                              sampler=StochoptSampler(seed=0, n_startup_trials=3, **FAST))
    study.optimize(_quadratic, n_trials=n_trials)


def test_two_workers_on_sqlite_get_distinct_trials_and_the_study_resumes(tmp_path: Path
                                                                         ) -> None:
    path = tmp_path / "study.db"
    optuna.create_study(study_name="two-workers", storage=_storage(path))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(str(path), 6)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    study = optuna.load_study(study_name="two-workers", storage=_storage(path))
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    points = {(t.params["x"], t.params["y"]) for t in trials}
    # both workers had the same seed: trial numbers and pending points keep them apart
    assert len(trials) == 12 and len(points) == 12
    before = [(t.number, t.params, t.value) for t in study.trials]
    resumed = optuna.load_study(study_name="two-workers", storage=_storage(path),
                                sampler=StochoptSampler(seed=0, n_startup_trials=3, **FAST))
    resumed.optimize(_quadratic, n_trials=3)
    after = resumed.trials
    assert [(t.number, t.params, t.value) for t in after[:12]] == before
    assert [t.number for t in after[12:]] == [12, 13, 14]
    assert len({(t.params["x"], t.params["y"]) for t in after}) == 15
    # 15 trials of a 2-d quadratic: the model-based ones get close to (0.5, -0.25)
    assert resumed.best_value < 0.05


def test_a_running_trial_is_a_pending_point() -> None:
    # the two-worker test above would pass without pending points (seeds differ by trial
    # number, so points are never exactly equal); here, without them, the second trial lands
    # within 1e-6 of the first, at the same acquisition maximum
    study = optuna.create_study(sampler=StochoptSampler(seed=0, n_startup_trials=4, **FAST))
    for _ in range(4):
        trial = study.ask()
        study.tell(trial, _quadratic(trial))
    first, second = study.ask(), None
    _quadratic(first)  # suggests both parameters: first is RUNNING with its point stored
    second = study.ask()
    _quadratic(second)
    a, b = (torch.tensor([t.params["x"], t.params["y"]]) for t in (first, second))
    assert float((a - b).norm()) / 4 > 0.05  # a fraction of the box's width


class _Recording(StochoptSampler):
    """Remembers what the relative sampling returned (to see the model was used)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.relative: dict[int, dict] = {}

    def sample_relative(self, study, trial, search_space):
        params = super().sample_relative(study, trial, search_space)
        self.relative[trial.number] = params
        return params


def test_every_distribution_failures_and_pruning_are_handled() -> None:
    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -3.0, 3.0)
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        k = trial.suggest_int("k", 0, 10, step=2)
        n = trial.suggest_int("n", 1, 64, log=True)
        s = trial.suggest_float("s", 0.0, 1.0, step=0.25)
        c = trial.suggest_categorical("c", ["a", "b", None])
        if x > 2.5:
            raise FloatingPointError("diverged")
        if x < -2.5:
            return math.nan  # Optuna records a FAIL
        if x > 2.0:
            raise optuna.TrialPruned
        return ((x - 1) ** 2 + (math.log10(lr) + 2) ** 2 + (k - 4) ** 2 / 10
                + abs(math.log2(n) - 3) + s + (c != "b"))

    sampler = _Recording(seed=1, n_startup_trials=4, **FAST)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"x": 2.2, "lr": 0.1, "k": 2, "n": 4, "s": 0.5, "c": "a"})  # pruned
    study.enqueue_trial({"x": -2.8, "lr": 0.1, "k": 2, "n": 4, "s": 0.5, "c": "a"})  # NaN
    study.enqueue_trial({"x": 2.8, "lr": 0.1, "k": 2, "n": 4, "s": 0.5, "c": "a"})  # raises
    study.optimize(objective, n_trials=16, catch=(FloatingPointError,))
    states = [t.state for t in study.trials]
    assert states[:3] == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL,
                          optuna.trial.TrialState.FAIL]
    model_based = [p for p in sampler.relative.values() if p]
    assert len(model_based) >= 8  # after 4 completed trials every trial used the model
    for p in model_based:  # every value on its distribution's grid and in range
        assert p["k"] in range(0, 11, 2) and 1 <= p["n"] <= 64 and isinstance(p["n"], int)
        assert p["s"] in (0.0, 0.25, 0.5, 0.75, 1.0) and p["c"] in ("a", "b", None)
        assert 1e-4 <= p["lr"] <= 1.0
    for t in study.trials:  # a failed or pruned point is never proposed again
        if t.state != optuna.trial.TrialState.COMPLETE:
            assert all(p != t.params for n, p in sampler.relative.items() if n > t.number)


def test_maximization_and_bad_settings() -> None:
    study = optuna.create_study(direction="maximize",
                                sampler=StochoptSampler(seed=0, n_startup_trials=4, **FAST))
    study.optimize(lambda t: -((t.suggest_float("x", 0.0, 1.0) - 0.3) ** 2), n_trials=10)
    assert abs(study.best_params["x"] - 0.3) < 0.05
    with pytest.raises(ValueError, match="StochoptSampler: surrogate must be one of"):
        StochoptSampler(surrogate="forest")
    with pytest.raises(ValueError, match="n_startup_trials must be >= 1, got 0"):
        StochoptSampler(n_startup_trials=0)
    multi = optuna.create_study(directions=["minimize", "minimize"], sampler=StochoptSampler())
    with pytest.raises(ValueError, match="single-objective studies only"):
        multi.optimize(lambda t: (t.suggest_float("x", 0, 1), 0.0), n_trials=1)
