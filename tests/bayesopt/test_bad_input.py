"""Bad input to Bayesian optimization: each is refused where it enters, with a message naming
the argument (or file), and leaves the study or model as it was (issue #20)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from stochopt.bayesopt import (
    GP,
    Hyperparameters,
    NotReadyError,
    NumericalError,
    Posterior,
    Study,
    expected_improvement,
    expected_max_of_lines,
    knowledge_gradient,
    log_expected_improvement,
    matern52,
    minimize,
    noisy_expected_improvement,
    robust_cholesky,
)
from stochopt.bayesopt.acquisition import (
    knowledge_gradient_batch,
    max_value_entropy_search,
    noisy_expected_improvement_batch,
    normal_base_samples,
    q_expected_improvement,
)
from stochopt.bayesopt.kg_ascent import continuous_knowledge_gradient
from stochopt.bayesopt.neural import DKL, HMCBNN, DeepEnsemble, DualAveraging, hmc
from stochopt.bayesopt.optimize import optimize_acquisition, sobol
from stochopt.errors import DamagedFileError, NonFiniteError
from tests.contract import (
    assert_clear_error,
    assert_same,
    assert_unchanged,
    raises_clearly,
    snapshot,
)

F64 = torch.float64
BOX = [[0.0, 1.0], [0.0, 2.0]]
X = torch.tensor([[0.1, 0.2], [0.5, 1.5], [0.9, 0.7], [0.3, 1.9], [0.7, 0.1]], dtype=F64)
Y = X.sum(-1)
BOUNDS = torch.tensor(BOX, dtype=F64)
FAST = {"raw_samples": 16, "restarts": 1}


@contextmanager
def refused(kind: type[Exception], *names: str, match: str | None = None):
    """``pytest.raises(kind)`` of an error that is clear (documented, naming one of
    ``names``); yields the ``ExceptionInfo``."""
    with pytest.raises(kind) as caught:
        yield caught
    assert_clear_error(caught.value, *names)
    if match is not None:
        assert re.search(match, str(caught.value)), f"{match!r} not in: {caught.value}"


def _never(x: torch.Tensor) -> float:
    raise AssertionError("f was called, though the arguments were bad")


def _told(**settings) -> Study:
    """A study told its 3-point design."""
    study = Study(BOX, n_initial=3, seed=0, **FAST, **settings)
    for _ in range(3):
        X0 = study.ask()
        study.tell(X0, X0.sum(-1))
    return study


def _state(model: object) -> dict:
    """A model's attributes as plain data (dataclasses as dicts), deep-copied."""
    return snapshot({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                     for k, v in vars(model).items()})[0]


# ------------------------------------------------------------------------- Study settings
@pytest.mark.parametrize(("bounds", "kind"), [
    ([["a", "b"]], TypeError), ("abc", TypeError), (None, TypeError), ([[0.0, 1.0], [0.0]],
                                                                       TypeError),
    ([[0j, 1j]], TypeError), ([[False, True]], TypeError), ([0.0, 1.0], ValueError),
    ([[0.0, 1.0, 2.0]], ValueError), ([], ValueError), ([[1.0, 0.0]], ValueError),
    ([[0.0, math.inf]], ValueError), ([[math.nan, 1.0]], ValueError),
    ([[-1e308, 1e308]], ValueError),
])
def test_bad_bounds_are_refused_by_study_and_minimize(bounds, kind) -> None:
    with refused(kind, "bounds"):
        Study(bounds)
    with raises_clearly("bounds"):
        minimize(_never, bounds, 3)


@pytest.mark.parametrize(("setting", "value", "kind"), [
    ("seed", 1.5, TypeError), ("seed", "0", TypeError), ("seed", True, TypeError),
    ("seed", -1, ValueError), ("seed", 2**64, ValueError),
    ("n_initial", 2.0, TypeError), ("n_initial", True, TypeError), ("n_initial", 0, ValueError),
    ("q", True, TypeError), ("q", 0, ValueError), ("raw_samples", 0, ValueError),
    ("restarts", False, TypeError), ("n_constraints", -1, ValueError),
    ("acquisition", "ucb", ValueError), ("acquisition", ["ei"], ValueError),
    ("acquisition", "", ValueError), ("surrogate", ["gp"], ValueError),
    ("noise", -1.0, ValueError), ("noise", math.nan, ValueError), ("noise", math.inf, ValueError),
    ("noise", "0.1", TypeError), ("noise", True, TypeError),
])
def test_bad_settings_are_refused_at_entry_before_f_is_called(setting, value, kind) -> None:
    with refused(kind, setting):
        Study(BOX, **{setting: value})
    with refused(kind, setting):
        minimize(_never, BOX, 3, **{setting: value})


def test_a_seed_at_the_top_of_its_range_seeds_every_generator() -> None:
    study = Study([[0.0, 1.0]], n_initial=2, seed=2**63 - 1, **FAST)
    study.tell(study.ask(), [1.0])
    for purpose in range(4):  # the model fit's, the acquisition's and constraints' generators
        assert isinstance(study._generator(purpose), torch.Generator)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"n_calls": 0}, "n_calls"), ({"n_calls": 2.0}, "n_calls"), ({"n_calls": True}, "n_calls"),
    ({"callback": 3}, "callback"), ({"checkpoint": 3}, "checkpoint"),
    ({"surogate": "gp"}, "surogate"),
])
def test_minimize_refuses_bad_arguments_before_f_is_called(kwargs, name) -> None:
    kwargs = {"n_calls": 3} | kwargs
    with raises_clearly(name):
        minimize(_never, BOX, **kwargs)
    with raises_clearly("f must be callable"):
        minimize(3, BOX, 3)


def test_minimize_refuses_a_directory_or_a_path_under_a_file_as_checkpoint(tmp_path) -> None:
    with raises_clearly("is a directory"):
        minimize(_never, BOX, 3, checkpoint=tmp_path)
    (tmp_path / "file").write_text("")
    with raises_clearly("is a file"):
        minimize(_never, BOX, 3, checkpoint=tmp_path / "file" / "study.json")


# ---------------------------------------------------------------------- the objective
@pytest.mark.parametrize(("value", "kind", "words"), [
    (lambda x: x, ValueError, "single number, got a tensor of shape (2,)"),
    (lambda x: "1.0", TypeError, "must return a real number, got '1.0'"),
    (lambda x: None, TypeError, "must return a real number, got None"),
    (lambda x: True, TypeError, "must return a real number, got True"),
    (lambda x: torch.tensor([True]), TypeError, "dtype torch.bool"),
])
def test_an_objective_that_returns_no_single_finite_number_is_named(value, kind, words) -> None:
    with refused(kind, "f ", match=re.escape(words)):
        minimize(value, BOX, 3, n_initial=2)


def test_scalar_tensors_and_numpy_numbers_are_accepted_as_values() -> None:
    import numpy as np

    for f in (lambda x: x.sum(), lambda x: x.sum()[None], lambda x: np.float64(x.sum()),
              lambda x: np.array([float(x.sum())]), lambda x: 1):
        assert minimize(f, BOX, 1, n_initial=1).y.dtype == F64


@pytest.mark.parametrize(("f", "words"), [
    (lambda x: 1.0, "must return \\(value, \\[c_1"),
    (lambda x: (1.0, [1.0, 2.0]), "must be a sequence of 1 real"),
    (lambda x: (1.0, "1"), "must be a sequence of 1 real"),
])
def test_constrained_objectives_must_return_a_value_and_k_finite_constraints(f, words) -> None:
    with raises_clearly("f", match=words):
        minimize(f, BOX, 2, n_initial=2, n_constraints=1)


def test_the_objective_gets_a_copy_of_the_point() -> None:
    def f(x: torch.Tensor) -> float:
        value = float(x.sum())
        x.fill_(123.0)  # changing its argument must not change what the study records
        return value

    result = minimize(f, BOX, 1, n_initial=1)
    assert (result.X < 3).all()


# -------------------------------------------------------------------------------- tell
@pytest.mark.parametrize(("args", "names"), [
    ((torch.zeros(4, 1), torch.zeros(2)), ("X must have shape (b, 2)",)),  # was reshaped
    ((torch.zeros(2), torch.zeros(1)), ("X must have shape (b, 2)",)),
    ((torch.zeros(1, 1, 2), torch.zeros(1)), ("X must have shape",)),
    ((torch.zeros(2, 2), torch.zeros(2, 1)), ("y must have shape (b,) = (2,)",)),
    ((torch.zeros(2, 2), torch.zeros(3)), ("y must have shape",)),
    ((torch.tensor([[math.nan, 0.0]]), [1.0]), ("X must be finite",)),
    ((torch.tensor([[0.5, 2.5]]), [1.0]), ("X[0] = [0.5, 2.5] lies outside the bounds",)),
    ((torch.tensor([[-0.1, 0.5]]), [1.0]), ("coordinate 0 must be in [0, 1]",)),
    (("ab", [1.0]), ("X must be a tensor",)), ((torch.zeros(1, 2), ["a"]), ("y must be",)),
    ((torch.zeros(1, 2), None), ("y must be",)),
    ((torch.zeros(1, 2, dtype=torch.bool), [1.0]), ("X must hold real numbers",)),
    ((torch.zeros(1, 2), [1.0], [[1.0]]), ("no constraints (n_constraints=0)",)),
])
def test_tell_refuses_bad_evaluations_and_changes_nothing(args, names) -> None:
    study = _told()
    assert_unchanged(lambda: study.tell(*args), study, names=names)


@pytest.mark.parametrize(("constraints", "names"), [
    (None, ("n_constraints=1; pass constraints of shape (1, 1)",)),
    ([[1.0, 2.0]], ("constraints must have shape (b, k) = (1, 1)",)),
    ([1.0], ("constraints must have shape",)),
])
def test_tell_checks_constraint_values_whole(constraints, names) -> None:
    study = Study(BOX, n_constraints=1)
    study.tell(torch.zeros(1, 2), [1.0], [[0.5]])
    assert_unchanged(lambda: study.tell(torch.zeros(1, 2), [1.0], constraints), study,
                     names=names)


def test_tell_accepts_points_never_asked_and_the_rounding_of_the_box_edges() -> None:
    study = Study([[-5.0, 10.0], [1e6, 1e6 + 1e-4]])
    edge = torch.tensor([[10.0, 1e6 + 1e-4]], dtype=F64)
    study.tell(edge.nextafter(torch.full_like(edge, math.inf)), [1.0])  # one ulp above
    study.tell([[0, 1_000_000]], [2])  # integers and lists are converted to float64
    assert study.n == 2 and study.X.dtype == study.y.dtype == F64


def test_results_before_any_evaluation_say_so() -> None:
    study = Study(BOX)
    for call in (study.result, study.recommend):
        with refused(RuntimeError, "no evaluations yet"):
            call()
        with pytest.raises(NotReadyError):
            call()


# ------------------------------------------------------------------ state and checkpoints
def _saved() -> dict:
    return _told(n_constraints=0).state_dict()


@pytest.mark.parametrize(("change", "names"), [
    (lambda s: s.pop("X"), ("'X'",)), (lambda s: s.pop("settings"), ("'settings'",)),
    (lambda s: s.update(format=3), ("format 3",)),
    (lambda s: s["settings"].update(foo=1), ("unknown ['foo']",)),
    (lambda s: s["settings"].pop("seed"), ("lack ['seed']",)),
    (lambda s: s["settings"].update(seed=-3), ("seed",)),
    (lambda s: s["settings"].update(surrogate="forest"), ("surrogate",)),
    (lambda s: s.update(bounds=[[1.0, 0.0]]), ("bounds",)),
    (lambda s: s.update(X=[[0.5]] * 3), ("X must have shape (b, 2)",)),
    (lambda s: s.update(y=s["y"][:2]), ("y must have shape",)),
    (lambda s: s["X"][0].__setitem__(0, math.nan), ("X must be finite",)),
    (lambda s: s.update(pending=[[0.5]]), ("pending points", "shape (b, 2)")),
    (lambda s: s["X"].__setitem__(0, [5.0, 0.0]), ("outside the bounds",)),
    (lambda s: s.update(X="abc"), ("'X'",)), (lambda s: s.update(fit_seconds=3),
                                               ("'fit_seconds'",)),
    (lambda s: s.update(fit_seconds=["1"]), ("'fit_seconds'",)),
    (lambda s: s.update(constraints=[[1.0]] * 3), ("n_constraints=0",)),
])
def test_a_damaged_state_dict_is_refused_with_what_is_wrong(change, names) -> None:
    state = _saved()
    change(state)
    with refused(ValueError, *names, match="Study.from_state_dict"):
        Study.from_state_dict(state)


def test_a_state_that_is_not_a_dict_is_a_type_error() -> None:
    with refused(TypeError, "state must be a dict"):
        Study.from_state_dict([1, 2])


@pytest.mark.parametrize("text", [
    lambda good: good[: len(good) // 2],  # truncated
    lambda good: "", lambda good: "[1, 2]", lambda good: "{}",
    lambda good: good.replace('"y"', '"why"'),
    lambda good: good.replace('"settings": {', '"settings": {"foo": 1, '),
])
def test_a_damaged_checkpoint_names_the_file_and_the_way_out(tmp_path: Path, text) -> None:
    path = tmp_path / "study.json"
    _told().save(path)
    path.write_text(text(path.read_text()))
    with refused(DamagedFileError, str(path), match="is damaged: .*; delete it") as caught:
        Study.load(path)
    assert caught.value.path == path
    with refused(DamagedFileError, str(path)):
        minimize(_never, BOX, 5, checkpoint=path)  # before f is called


def test_a_missing_or_unnamed_checkpoint(tmp_path: Path) -> None:
    with refused(FileNotFoundError, "does not exist"):
        Study.load(tmp_path / "none.json")
    with raises_clearly("is damaged: it is a directory"):
        Study.load(tmp_path)
    for call in (lambda: Study.load(3), lambda: _told().save(None)):
        with refused(TypeError, "path must be a path"):
            call()


def test_resuming_another_study_names_the_checkpoint_and_the_values(tmp_path: Path) -> None:
    path = tmp_path / "study.json"
    _told().save(path)
    with raises_clearly(str(path), match=r"differs in \['bounds', 'seed'\].*seed: 0 saved, "
                                         r"4 given"):
        minimize(_never, [[0.0, 1.0]], 5, checkpoint=path, seed=4)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "study.json"
    study = _told()
    study.save(path)
    before = path.read_text()
    study.tell(torch.tensor([[0.5, 0.5]]), [1.0])

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        study.save(path)
    assert path.read_text() == before and os.listdir(tmp_path) == ["study.json"]


# ------------------------------------------------------------------------------------- GP
@pytest.mark.parametrize(("kwargs", "name"), [
    ({"kernel": ["rbf"]}, "kernel"), ({"kernel": "periodic"}, "kernel"),
    ({"noise": "0.1"}, "noise"), ({"noise": -1.0}, "noise"), ({"noise": math.nan}, "noise"),
    ({"noise": math.inf}, "noise"), ({"restarts": 2.5}, "restarts"), ({"restarts": 0},
                                                                       "restarts"),
])
def test_gp_constructor_names_the_argument(kwargs, name) -> None:
    with raises_clearly(f"GP: {name}"):
        GP(**kwargs)


@pytest.fixture(scope="module")
def fitted() -> GP:
    hp = Hyperparameters(torch.tensor([0.3, 0.5], dtype=F64), 1.7, 1e-3, 0.2)
    return GP(restarts=1).condition(X, Y, BOUNDS, hp)


def _bad_data() -> list:
    nan_X = X.clone()
    nan_X[1, 0] = math.nan
    return [
        ((X, Y[:3], BOUNDS), "y must have shape (n,) = (5,)"),
        ((X[:, 0], Y, BOUNDS), "X must have shape"),
        ((X, Y, BOUNDS[:1]), "X must have shape (n, 1)"),
        ((nan_X, Y, BOUNDS), "X must be finite, got nan at index (1, 0)"),
        ((X, Y.clone().fill_(math.inf), BOUNDS), "y must be finite"),
        ((X[:0], Y[:0], BOUNDS), "need at least one point"),
        ((X, Y, BOUNDS.flip(1)), "lower < upper"),
        ((X.bool(), Y, BOUNDS), "X must hold real numbers"),
        ((X, [str(v) for v in Y.tolist()], BOUNDS), "y must be a tensor"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_data())))
def test_gp_fit_and_condition_refuse_bad_data_and_change_nothing(fitted: GP, case) -> None:
    args, words = _bad_data()[case]
    hp = fitted.hyperparameters
    for call in (lambda: fitted.fit(*args), lambda: fitted.condition(*args, hp)):
        before = _state(fitted)
        with raises_clearly(words):
            call()
        assert_same(before, _state(fitted))


def test_gp_fit_that_fails_numerically_changes_nothing(fitted: GP, monkeypatch) -> None:
    before = _state(fitted)
    monkeypatch.setattr(GP, "_optimize", lambda self, raw: math.inf)
    with refused(NumericalError, "every one of the 1 MAP restarts failed"):
        fitted.fit(X[:3], Y[:3], BOUNDS)
    assert_same(before, _state(fitted))
    with raises_clearly("generator"):
        fitted.fit(X, Y, BOUNDS, generator=3)


def test_gp_condition_checks_the_hyperparameters(fitted: GP) -> None:
    hp = fitted.hyperparameters
    for bad, words in ((3, "hp must be a Hyperparameters"),
                       (dataclasses.replace(hp, lengthscales=hp.lengthscales[:1]),
                        "hp.lengthscales must have shape (2,)"),
                       (dataclasses.replace(hp, lengthscales=-hp.lengthscales),
                        "hp.lengthscales must be finite and > 0"),
                       (dataclasses.replace(hp, outputscale=0.0), "hp.outputscale"),
                       (dataclasses.replace(hp, noise=-1e-3), "hp.noise"),
                       (dataclasses.replace(hp, mean=math.nan), "hp.mean")):
        before = _state(fitted)
        with raises_clearly(words):
            fitted.condition(X, Y, BOUNDS, bad)
        assert_same(before, _state(fitted))
    Hyperparameters(torch.ones(2, dtype=F64), 1.0, 0.0, 0.0)  # a zero noise is allowed
    GP().condition(X, Y, BOUNDS, Hyperparameters(torch.ones(2, dtype=F64), 1.0, 0.0, 0.0))


def test_gp_posterior_checks_the_points(fitted: GP) -> None:
    with refused(NotReadyError, "fit or condition the model first"):
        GP().posterior(X)
    for points, words in ((torch.zeros(3, 3), "X must have shape (m, 2)"),
                          (torch.zeros(2), "X must have shape"),
                          (torch.full((1, 2), math.nan), "X must be finite")):
        with raises_clearly(words):
            fitted.posterior(points)
    assert fitted.posterior([[0.1, 0.2]]).mean.shape == (1,)


# ------------------------------------------------------------------------ neural surrogates
TINY = {"widths": (4,), "dtype": F64}


@pytest.mark.parametrize(("cls", "kwargs", "name"), [
    (DKL, {"widths": ()}, "widths"), (DKL, {"widths": (-1,)}, "widths[0]"),
    (DKL, {"widths": "128"}, "widths"), (DKL, {"lr": -1.0}, "lr"),
    (DKL, {"train_steps": -1}, "train_steps"), (DKL, {"dtype": "float32"}, "dtype"),
    (DKL, {"dtype": torch.int64}, "dtype"), (DKL, {"noise": -1.0}, "noise"),
    (DeepEnsemble, {"members": 1}, "members"), (DeepEnsemble, {"members": 2.5}, "members"),
    (DeepEnsemble, {"subset": "a"}, "subset"), (DeepEnsemble, {"subset": math.nan}, "subset"),
    (DeepEnsemble, {"noise": -1.0}, "noise"), (DeepEnsemble, {"noise_std": 0.0}, "noise_std"),
    (DeepEnsemble, {"prior_var": 0.0}, "prior_var"), (DeepEnsemble, {"steps": -2}, "steps"),
    (HMCBNN, {"thin": 0}, "thin"), (HMCBNN, {"step": 0.0}, "step"),
    (HMCBNN, {"path_length": 0.0}, "path_length"), (HMCBNN, {"burn_in": -1}, "burn_in"),
    (HMCBNN, {"samples": 2, "thin": 5}, "samples"), (HMCBNN, {"noise": math.nan}, "noise"),
])
def test_neural_surrogate_constructors_name_the_argument(cls, kwargs, name) -> None:
    with raises_clearly(f"{cls.__name__}: {name}"):
        cls(**kwargs)


def _neural() -> list:
    return [DKL(pretrain_steps=2, train_steps=2, **TINY),
            DeepEnsemble(members=2, steps=2, **TINY),
            HMCBNN(burn_in=2, samples=2, thin=1, pretrain_steps=2, **TINY)]


@pytest.mark.parametrize("index", range(3))
def test_neural_surrogates_check_data_and_points_and_change_nothing(index: int) -> None:
    model = _neural()[index]
    name = type(model).__name__
    with refused(NotReadyError, f"{name}.posterior: fit"):
        model.posterior(X)
    model.fit(X, Y, BOUNDS)
    for args, words in _bad_data()[:6]:
        before = _state(model)
        with raises_clearly(f"{name}.fit: {words}"):
            model.fit(*args)
        assert_same(before, _state(model))
    with raises_clearly(f"{name}.posterior: X must have shape (m, 2)"):
        model.posterior(torch.zeros(3, 3))


def test_dkl_condition_needs_a_trained_network() -> None:
    hp = Hyperparameters(torch.ones(4, dtype=F64), 1.0, 0.1, 0.0)
    with refused(NotReadyError, "DKL.condition: fit first"):
        DKL(**TINY).condition(X, Y, BOUNDS, hp)


def test_hmc_and_its_step_adaptation_check_their_arguments() -> None:
    theta = torch.zeros(2, dtype=F64)
    g = torch.Generator().manual_seed(0)
    for kwargs, name in (({"step": 0.0}, "step"), ({"path_length": 0.0}, "path_length"),
                         ({"burn_in": -1}, "burn_in"), ({"samples": 0}, "samples"),
                         ({"generator": None}, "generator"),
                         ({"max_leapfrog": 0}, "max_leapfrog")):
        args = {"burn_in": 1, "samples": 1, "step": 0.1, "path_length": 0.1,
                "generator": g} | kwargs
        with raises_clearly(f"hmc: {name}"):
            hmc(lambda t: -t.square().sum(), theta, **args)
    with raises_clearly("DualAveraging: step"):
        DualAveraging(0.0)
    with raises_clearly("DualAveraging: target"):
        DualAveraging(0.1, target=1.5)


# ------------------------------------------------------------------------- acquisitions
def _posterior(m: int = 3, covariance: bool = True) -> Posterior:
    cov = torch.eye(m, dtype=F64) * 0.5 + 0.1
    return Posterior(torch.zeros(m, dtype=F64), cov.diagonal().clone(),
                     cov if covariance else None, 0.01)


@pytest.mark.parametrize("best", [math.nan, math.inf, torch.tensor(math.nan), "0",
                                  torch.zeros(5), None])
def test_expected_improvement_needs_a_finite_incumbent(best) -> None:
    for acquisition in (expected_improvement, log_expected_improvement):
        with raises_clearly(f"{acquisition.__name__}: best"):
            acquisition(_posterior(), best)
    with raises_clearly("q_expected_improvement: best"):
        q_expected_improvement(_posterior(), best, torch.zeros(4, 3, dtype=F64))
    assert expected_improvement(_posterior(), torch.tensor(0.5)).shape == (3,)


def test_posteriors_check_shapes_and_a_negative_noise() -> None:
    mean = torch.zeros(3, dtype=F64)
    for args, words in (((mean, mean, None, -1.0), "noise must be in [0, inf)"),
                        ((mean, mean, None, math.nan), "noise"),
                        ((mean, mean[:2]), "need mean (m,), variance (m,)"),
                        ((mean, mean, torch.eye(2)), "got (3,), (3,), (2, 2)"),
                        ((mean[None], mean), "need mean (m,)"),
                        (([0.0], mean), "mean must be a tensor")):
        with raises_clearly(words, match="^Posterior: "):
            Posterior(*args)
    for n in (-1, 0, 2.5):
        with raises_clearly("Posterior.sample: n"):
            _posterior().sample(n)
    with raises_clearly("covariance"):
        _posterior(covariance=False).sample(2)


def test_knowledge_gradients_check_their_posteriors_and_counts() -> None:
    for rule in (noisy_expected_improvement, knowledge_gradient):
        with raises_clearly(f"{rule.__name__}: needs the joint posterior covariance"):
            rule(_posterior(covariance=False))
        with raises_clearly(f"{rule.__name__}: posterior must be a Posterior"):
            rule("posterior")
    with raises_clearly("noisy_expected_improvement: the posterior must be over at least 2"):
        noisy_expected_improvement(_posterior(1))
    for batch, low in ((noisy_expected_improvement_batch, 1), (knowledge_gradient_batch, 0)):
        for n in (low - 1, 3, 1.0):
            with raises_clearly(f"{batch.__name__}: n"):
                batch(_posterior(), n)
    with raises_clearly("expected_max_of_lines: a and b must have the same shape"):
        expected_max_of_lines(torch.zeros(3), torch.zeros(2))
    with raises_clearly("expected_max_of_lines"):
        expected_max_of_lines(torch.zeros(0), torch.zeros(0))
    nan = expected_max_of_lines(torch.tensor([0.0, math.nan]), torch.tensor([1.0, 2.0]))
    assert nan.isnan()  # NaN in, NaN out: the acquisition optimizer skips such candidates


def test_monte_carlo_and_entropy_acquisitions_check_their_draws() -> None:
    with raises_clearly("base must be a tensor of shape (S, q) = (S, 3)"):
        q_expected_improvement(_posterior(), 0.0, torch.zeros(4, 2, dtype=F64))
    with raises_clearly("minima must be a tensor of shape (S,)"):
        max_value_entropy_search(_posterior(), torch.zeros(2, 2))
    for kwargs, name in (({"n": 0}, "n"), ({"q": 0}, "q"), ({"seed": -1}, "seed"),
                         ({"seed": 0.5}, "seed")):
        with raises_clearly(f"normal_base_samples: {name}"):
            normal_base_samples(**({"n": 4, "q": 2, "seed": 0} | kwargs))


def test_kernels_and_cholesky_check_shapes_and_non_finite_matrices() -> None:
    ones = torch.ones(2, dtype=F64)
    with raises_clearly("matern52: need tensors X1 (n, d), X2 (m, d), lengthscales (d,)"):
        matern52(torch.zeros(3, 2), torch.zeros(3, 3), ones, torch.tensor(1.0))
    with raises_clearly("lengthscales"):
        matern52(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(3), torch.tensor(1.0))
    with raises_clearly("robust_cholesky: K must be a square matrix"):
        robust_cholesky(torch.zeros(2, 3))
    with refused(NumericalError, "NaN or infinite entries"):
        robust_cholesky(torch.full((2, 2), math.nan, dtype=F64))


def test_the_acquisition_optimizer_checks_its_arguments() -> None:
    g = torch.Generator().manual_seed(0)
    with refused(NonFiniteError, "not finite at any raw sample"):
        optimize_acquisition(lambda U: torch.full((len(U),), math.nan), 2, g, raw_samples=4)
    with pytest.raises(FloatingPointError):  # what it raised before, still caught the same way
        optimize_acquisition(lambda U: torch.full((len(U),), math.nan), 2, g, raw_samples=4)
    for kwargs, name in (({"q": 0}, "q"), ({"raw_samples": 0}, "raw_samples"),
                         ({"restarts": 1.5}, "restarts")):
        with raises_clearly(f"optimize_acquisition: {name}"):
            optimize_acquisition(lambda U: U.sum((1, 2)), 2, g, **kwargs)
    with raises_clearly("score must be callable"):
        optimize_acquisition(3, 2, g)
    with raises_clearly("sobol: d"):
        sobol(4, 30_000, g)
    with raises_clearly("sobol: generator"):
        sobol(4, 2, None)
    with raises_clearly("continuous_knowledge_gradient: restarts"):
        continuous_knowledge_gradient(None, restarts=0)


def test_numpy_settings_are_kept_as_plain_numbers_for_the_checkpoint() -> None:
    import numpy as np

    study = Study(BOX, q=np.int64(1), seed=np.int64(3), n_initial=np.int32(2),
                  noise=np.float32(0))
    assert json.loads(json.dumps(study.state_dict()))["settings"]["seed"] == 3


def test_log_h_needs_a_floating_tensor() -> None:
    from stochopt.bayesopt import log_h

    for z in (0.5, torch.tensor([1, 2])):
        with raises_clearly("log_h: z must be a floating-point tensor"):
            log_h(z)
