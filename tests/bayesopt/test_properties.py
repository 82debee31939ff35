"""Property-based: random and corrupted input to Bayesian optimization (settings, told
evaluations, saved states, checkpoint files, run records, surrogates) either works or raises a
documented exception naming the argument or file, and never leaves the study or model changed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.bayesopt import GP, Hyperparameters, Study
from stochopt.bayesopt.neural import DKL, HMCBNN, DeepEnsemble
from stochopt.errors import DamagedFileError
from stochopt_bench import bo
from tests.contract import PROPERTIES, assert_clear_error, assert_same, snapshot

F64 = torch.float64
BOX = [[0.0, 1.0], [-1.0, 1.0]]
SETTINGS = ["surrogate", "acquisition", "q", "noise", "n_initial", "n_constraints", "seed",
            "raw_samples", "restarts"]

#: numbers and non-numbers, in and out of every range the settings use
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-3, max_value=5),
    st.sampled_from([0, 1, 2, 2**63, -(2**63), 0.5, "1", "gp", "hmc", "logei", "qei", "kg_sga",
                     None, True, [1.0], {"q": 1}]),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=4)
    | st.floats(allow_nan=True, allow_infinity=True),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=6)
BOUNDS = st.one_of(
    st.just(BOX), st.just([[0.0, 1.0]]), st.just([[1.0, 0.0]]), st.just([0.0, 1.0]),
    st.just([["0", "1"]]), st.just([[0.0, math.inf]]), st.just([]), st.just(None),
    st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=3),
             max_size=3),
)
FILL = st.sampled_from([0.0, 0.25, 0.9, -0.5, 1.5, math.nan, math.inf])


def _filled(shape: tuple[int, ...], fill: float, dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.full(shape, fill, dtype=dtype)
    return torch.zeros(shape, dtype=dtype)


SHAPES = st.lists(st.integers(0, 3), max_size=3).map(tuple)
TENSORS = st.builds(_filled, SHAPES, FILL, st.sampled_from([F64, torch.float32, torch.int64,
                                                            torch.bool]))


def _plain(model: object) -> dict:
    """A model's attributes as plain data (dataclasses as dicts), deep-copied."""
    return snapshot({k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                     for k, v in vars(model).items()})[0]


def _study(k: int = 1) -> Study:
    study = Study(BOX, n_initial=3, n_constraints=k, seed=1, raw_samples=8, restarts=1)
    for _ in range(3):
        x = study.ask()
        study.tell(x, x.sum(-1), x[:, :1] - 0.5 if k else None)
    return study


@PROPERTIES
@given(bounds=BOUNDS, data=st.data())
def test_study_settings_work_or_name_the_argument(bounds, data) -> None:
    chosen = data.draw(st.lists(st.sampled_from(SETTINGS), max_size=3, unique=True))
    settings = {name: data.draw(VALUES, label=name) for name in chosen}
    try:
        study = Study(bounds, **settings)
    except Exception as error:
        assert_clear_error(error, "bounds", *chosen)
        return
    state = json.loads(json.dumps(study.state_dict()))  # JSON-ready, and it reads back
    assert Study.from_state_dict(state).settings == study.settings


@PROPERTIES
@given(X=TENSORS, y=TENSORS, constraints=st.none() | TENSORS)
def test_tell_works_or_changes_nothing(X, y, constraints) -> None:
    study = _study()
    before = snapshot(study)
    try:
        study.tell(X, y, constraints)
    except Exception as error:
        assert_clear_error(error, "X", "y", "constraints")
        assert_same(before, snapshot(study), "a tell that raised changed the study")
        return
    assert study.n == 3 + len(X) and bool(torch.isfinite(study.y).all())


def _corrupt(state: dict, data) -> dict:
    """One random change: a top-level or settings entry deleted or replaced by random JSON,
    or one told value replaced."""
    where = data.draw(st.sampled_from(["top", "settings", "X", "y", "constraints"]))
    target = state if where in ("top", "X", "y", "constraints") else state["settings"]
    if where in ("X", "y", "constraints"):
        rows = state[where]
        rows[data.draw(st.integers(0, len(rows) - 1))] = data.draw(JSON)
        return state
    key = data.draw(st.sampled_from(sorted(target)))
    if data.draw(st.booleans()):
        del target[key]
    else:
        target[key] = data.draw(JSON | VALUES)
    return state


@PROPERTIES
@given(data=st.data())
def test_corrupted_state_dicts_load_or_say_what_is_wrong(data) -> None:
    state = _corrupt(_study().state_dict(), data)
    try:
        study = Study.from_state_dict(state)
    except (TypeError, ValueError) as error:
        assert_clear_error(error, "Study.from_state_dict")
        return
    assert study.n == len(study.y) == len(study.X) == len(study.c)


@PROPERTIES
@given(data=st.data())
def test_corrupted_checkpoints_load_or_name_the_file(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("checkpoint") / "study.json"
    _study(k=0).save(path)
    raw = path.read_bytes()
    how = data.draw(st.sampled_from(["truncate", "byte", "json"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "byte":
        at = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([data.draw(st.integers(0, 255))]) + raw[at + 1:]
    else:
        raw = json.dumps(_corrupt(json.loads(raw), data)).encode()
    path.write_bytes(raw)
    try:
        Study.load(path)
    except DamagedFileError as error:
        assert_clear_error(error, str(path))
        assert error.path == path and "delete it" in str(error)


@PROPERTIES
@given(kernel=st.sampled_from(["matern52", "rbf", "nngp", "cubic", 3]), noise=VALUES,
       restarts=VALUES, X=TENSORS, y=TENSORS)
def test_gp_arguments_and_data_work_or_change_nothing(kernel, noise, restarts, X, y) -> None:
    try:
        gp = GP(kernel=kernel, noise=noise, restarts=restarts)
    except Exception as error:
        assert_clear_error(error, "kernel", "noise", "restarts")
        return
    hp = Hyperparameters(torch.tensor([0.3, 0.5], dtype=F64), 1.0, 1e-3, 0.0)
    base = torch.tensor([[0.1, 0.2], [0.7, -0.4], [0.4, 0.9]], dtype=F64)
    gp.condition(base, base.sum(-1), torch.tensor(BOX), hp)
    before = _plain(gp)
    try:
        gp.condition(X, y, torch.tensor(BOX), hp)
    except Exception as error:
        assert_clear_error(error, "X", "y")
        assert_same(before, _plain(gp), "a condition that raised changed the GP")
        return
    assert bool(torch.isfinite(gp.posterior(base).mean).all())


NEURAL = {
    DKL: ["noise", "widths", "pretrain_steps", "train_steps", "lr", "dtype"],
    DeepEnsemble: ["noise", "members", "widths", "subset", "steps", "lr", "prior_var",
                   "noise_std", "dtype"],
    HMCBNN: ["noise", "widths", "prior_var", "noise_std", "burn_in", "samples", "thin", "step",
             "path_length", "pretrain_steps", "lr", "dtype"],
}


@PROPERTIES
@given(cls=st.sampled_from(list(NEURAL)), data=st.data())
def test_neural_surrogate_arguments_work_or_name_the_argument(cls, data) -> None:
    chosen = data.draw(st.lists(st.sampled_from(NEURAL[cls]), max_size=3, unique=True))
    extra = st.sampled_from([(), (4, 0), (2, 2), "12", F64, torch.int32, "float32"])
    kwargs = {name: data.draw(VALUES | extra, label=name) for name in chosen}
    try:
        cls(**kwargs)
    except Exception as error:
        assert_clear_error(error, *chosen)


def _record(path: Path) -> dict:
    run = {"problem": "branin", "noisy": False, "method": "random", "seed": 0,
           "curve": [[1, 2.5], [2, 0.5]], "seconds": [], "X": [[0.0, 0.0]], "y": [1.0]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return run


@PROPERTIES
@given(data=st.data())
def test_corrupted_run_records_read_or_name_the_file(tmp_path_factory, data) -> None:
    out = tmp_path_factory.mktemp("bo")
    path = bo._path(out, "branin", False, "random", 0)
    run = _record(path)
    if data.draw(st.booleans()):
        raw = path.read_bytes()
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw)))])
    else:
        key = data.draw(st.sampled_from(sorted(run)))
        run[key] = data.draw(JSON)
        path.write_text(json.dumps(run))
    try:
        bo.check_record(path, ("branin", False, "random", 0))
    except DamagedFileError as error:
        assert_clear_error(error, str(path))
        said: list[str] = []
        assert bo.load_runs(out, said.append) == [] and str(path) in said[0]
        assert not path.exists() and path.with_name(path.name + ".damaged").exists()
