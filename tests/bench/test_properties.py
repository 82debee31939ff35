"""Property-based checks of the harness's readers: random suites either load or raise a
``SuiteError`` naming the key; random damage to run records and ``suite.json`` is either
harmless or reported naming the file, and a resumed suite moves the damaged record aside and
runs it again."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stochopt.errors import DamagedFileError
from stochopt_bench.runner import run_suite
from stochopt_bench.store import read_record, run_path
from stochopt_bench.suite import (
    SuiteError,
    load_suite,
    parse_suite,
    read_suite_file,
)
from tests.contract import PROPERTIES, assert_clear_error

#: a valid suite with every kind of entry; mutations start from it
BASE: dict[str, Any] = {
    "name": "p", "description": "d", "seeds": [0, 1],
    "tasks": ["beale", {"name": "digits-mlp", "steps": 5, "batch_size": 8}],
    "methods": {
        "a": {"optimizer": "AdamW", "lr": {"beale": 0.1, "digits-mlp": 0.01},
              "betas": [0.9, 0.99], "schedule": {"kind": "cosine", "warmup": 2, "final": 0.1}},
        "b": {"optimizer": "AdaGradNorm", "lr": 0.3, "mode": "row",
              "schedule": {"kind": "step", "milestones": [0.5], "gamma": 0.5}},
    },
}
ONE_RUN = {"name": "one", "seeds": [0], "tasks": [{"name": "rosenbrock", "steps": 3}],
           "methods": {"adamw": {"optimizer": "AdamW", "lr": 0.01}}}

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**64), st.floats(),
                    st.text(max_size=6), st.sampled_from(["beale", "AdamW", "cosine", "row"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to an entry of nested dicts and lists."""
    paths = [prefix] if prefix else []
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        paths += _paths(child, (*prefix, key))
    return paths


@st.composite
def mutated_suites(draw: st.DrawFn) -> dict[str, Any]:
    """BASE with one to three entries replaced, removed or added."""
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "remove" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=6))] = draw(VALUES)
    return data


def _names_a_key(error: SuiteError, data: dict[str, Any]) -> None:
    """The message is ``suite <source>: <key>: <problem>``, the key a top-level one or below."""
    assert_clear_error(error)
    message = str(error)
    assert message.startswith("suite random.toml: "), message
    keys = {"name", "tasks", "methods"} | {str(k) for k in data} | {repr(k) for k in data}
    assert any(message.startswith(f"suite random.toml: {key}") for key in keys), message


@PROPERTIES
@given(mutated_suites())
def test_random_suites_load_or_name_the_key(data: dict[str, Any]) -> None:
    try:
        suite = parse_suite(data, "random.toml")
    except SuiteError as error:
        _names_a_key(error, data)
        return
    assert parse_suite(suite.as_dict()) == suite  # what a results directory records reads back


@PROPERTIES
@given(st.text(max_size=60), st.sampled_from([".toml", ".yaml"]))
def test_random_suite_files_load_or_raise_suite_error(text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"s{suffix}"
        path.write_text(text)
        try:
            load_suite(str(path))
        except SuiteError as error:
            assert_clear_error(error, str(path))


def _corrupt(text: str, kind: str, position: float, value: Any) -> str:
    """``text`` (a JSON object) truncated, with a byte changed, or with an entry removed or
    replaced by ``value``."""
    at = int(position * len(text))
    if kind == "truncate":
        return text[:at]
    if kind == "flip":
        return text[:at] + chr((ord(text[at]) + 1 + int(position * 50)) % 128) + text[at + 1:]
    data = json.loads(text)
    paths = [p for p in _paths(data) if isinstance(p[-1], str)]
    path = paths[int(position * len(paths))]
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if kind == "remove":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return json.dumps(data)


CORRUPTIONS = (st.sampled_from(["truncate", "flip", "remove", "replace"]),
               st.floats(0, 0.999), VALUES)


@PROPERTIES
@given(*CORRUPTIONS)
def test_damaged_records_are_reported_by_file(micro_record: dict, kind: str, position: float,
                                              value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.json"
        path.write_text(_corrupt(json.dumps(micro_record, indent=1), kind, position, value))
        try:
            record = read_record(path)
        except DamagedFileError as error:
            assert_clear_error(error, str(path))
            assert error.path == path
        else:
            assert isinstance(record, dict) and record["curve"]


@PROPERTIES
@given(*CORRUPTIONS)
def test_damaged_suite_json_is_reported_by_file(kind: str, position: float, value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.json"
        path.write_text(_corrupt(json.dumps(parse_suite(BASE).as_dict()), kind, position, value))
        try:
            read_suite_file(path, recover="start over with --fresh")
        except DamagedFileError as error:
            assert_clear_error(error, str(path))
            assert "--fresh" in str(error)


def _fresh_record(tmp: Path) -> Path:
    run_suite(parse_suite(ONE_RUN), tmp)
    return run_path(tmp, "rosenbrock", "adamw", 0)


@PROPERTIES
@given(*CORRUPTIONS)
def test_a_resumed_suite_moves_damaged_records_aside_and_runs_them_again(
        kind: str, position: float, value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _fresh_record(Path(tmp))
        corrupted = _corrupt(path.read_text(), kind, position, value)
        path.write_text(corrupted)
        [record] = run_suite(parse_suite(ONE_RUN), Path(tmp))
        aside = sorted(path.parent.glob(path.name + ".*"))
        if aside:  # reported and moved aside, unchanged; the run made again
            assert len(aside) == 1 and aside[0].read_text() == corrupted
            assert read_record(path) == record
        else:  # the damage left a record of this very run (a digit of a measurement)
            assert path.read_text() == corrupted and read_record(path) == record
