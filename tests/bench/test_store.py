"""Atomic writes: the target is always a whole file; no temporaries are left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from stochopt_bench import store


def test_write_then_overwrite_atomically(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "a.json"
    store.write_json_atomic(path, {"x": 1})
    store.write_json_atomic(path, {"x": 2})
    assert store.read_json(path) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    store.write_json_atomic(path, {"x": 1})
    with pytest.raises(TypeError):
        store.write_json_atomic(path, {"x": object()})  # not JSON-serializable
    assert store.read_json(path) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_load_runs_ignores_temporaries(tmp_path: Path, micro_record: dict) -> None:
    store.write_json_atomic(store.run_path(tmp_path, "t", "m", 0), micro_record)
    (tmp_path / "runs" / ".t__m__seed1.json.abc.tmp").write_text("{partial")
    assert store.load_runs(tmp_path) == [micro_record]
