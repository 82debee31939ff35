"""Merging results directories: one study only, each run once, missing runs said."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stochopt_bench.cli import main
from stochopt_bench.merge import gather
from stochopt_bench.overrides import Overrides
from stochopt_bench.report import write_merged_report
from stochopt_bench.runner import run_suite
from stochopt_bench.shard import Shard
from stochopt_bench.suite import apply_overrides, parse_suite
from tests.contract import raises_clearly

#: 4 runs of 3 steps on rosenbrock (milliseconds each)
FOUR = {"name": "four", "seeds": [0, 1],
        "tasks": [{"name": "rosenbrock", "steps": 3}],
        "methods": {"a": {"optimizer": "AdamW", "lr": 0.01},
                    "b": {"optimizer": "torch.Adam", "lr": 0.01}}}


def _shards(tmp_path: Path, count: int, suite_data: dict = FOUR, **overrides) -> list[Path]:
    suite = parse_suite(suite_data)
    if overrides:
        suite = apply_overrides(suite, Overrides(**overrides))
    paths = []
    for i in range(1, count + 1):
        path = tmp_path / f"{suite.name}-{i}of{count}"
        run_suite(suite, path, shard=Shard(i, count))
        paths.append(path)
    return paths


def test_shards_of_one_study_merge(tmp_path: Path) -> None:
    found = gather(_shards(tmp_path, 2), print)
    assert len(found.records) == 4 and found.missing == []
    assert [n for _, n in found.sources] == [2, 2] and found.suite.name == "four"


def test_directories_of_different_studies_are_refused_naming_both(tmp_path: Path) -> None:
    one, _ = _shards(tmp_path, 2)
    (other,) = _shards(tmp_path / "x", 1, steps=2)  # the same suite with --steps 2
    with raises_clearly(str(one), match=rf"{other}.*tasks\[0\]\.steps: 3 in .*, 2 in .*--steps"):
        gather([one, other], print)
    (renamed,) = _shards(tmp_path / "y", 1, {**FOUR, "name": "five"})
    with raises_clearly(str(renamed), match="name: 'four' in .*'five'"):
        gather([one, renamed], print)
    (threads,) = _shards(tmp_path / "z", 1, threads=1)
    with raises_clearly(str(threads), match="overrides: '.absent.' in .*threads"):
        gather([one, threads], print)


def test_overlapping_shards_are_refused_naming_the_runs_and_directories(tmp_path: Path) -> None:
    halves, thirds = _shards(tmp_path / "h", 2), _shards(tmp_path / "t", 3)
    with raises_clearly(str(halves[0]), match=rf"seed \d in {halves[0]} and {thirds[0]}"):
        gather([halves[0], thirds[0]], print)
    with raises_clearly("given twice"):
        gather([halves[0], halves[0]], print)


def test_missing_runs_are_listed_and_reported(tmp_path: Path, capsys) -> None:
    first, _ = _shards(tmp_path, 2)
    found = gather([first], print)
    held = {(r["method"]["label"], r["seed"]) for r in found.records}
    assert len(found.missing) == 2 and len(held) == 2
    assert all(f"rosenbrock / {m} / seed {s}" not in found.missing for m, s in held)
    assert main(["report", str(first)]) == 0
    err = capsys.readouterr().err
    assert "stochopt: warning: 2 of the suite's runs have no record" in err
    text = (first / "report.md").read_text()
    assert "**Incomplete:** 2 of the suite's 4 runs have no record here: " \
           + ", ".join(found.missing) in text


def test_merging_needs_each_suite_json_and_an_out_directory(tmp_path: Path, capsys) -> None:
    one, two = _shards(tmp_path, 2)
    assert main(["report", str(one), str(two)]) == 2
    assert "--out is required" in capsys.readouterr().err
    (two / "suite.json").unlink()
    out = tmp_path / "merged"
    assert main(["report", str(one), str(two), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot merge results directory {two}: it has no suite.json" in err
    assert not out.exists()  # refused before anything was written
    (two / "suite.json").write_text("{")
    with raises_clearly(str(two / "suite.json"), match="leave the directory out"):
        write_merged_report([one, two], out)
    assert not out.exists()


def test_a_record_of_another_configuration_is_left_out_and_named(tmp_path: Path) -> None:
    one, two = _shards(tmp_path, 2)
    stale = next((two / "runs").glob("*.json"))
    record = json.loads(stale.read_text())
    stale.write_text(json.dumps({**record, "steps": 2}))
    said: list[str] = []
    found = gather([one, two], said.append)
    assert len(found.records) == 3 and len(found.missing) == 1
    assert said == [f"run record {stale} was made with another configuration than the suite's "
                    f"(steps: 2 -> 3); it is left out of the report; run `stochopt bench` on "
                    f"{two} again to repeat its run"]


def test_gather_checks_its_arguments(tmp_path: Path) -> None:
    with raises_clearly("directories"):
        gather([], print)
    with raises_clearly("directories"):
        gather(tmp_path, print)  # type: ignore[arg-type]
    with raises_clearly(str(tmp_path / "nope"), match="does not exist"):
        gather([tmp_path / "nope"], print)
    with pytest.raises(FileNotFoundError, match="no run records"):
        gather([tmp_path], print)
    with raises_clearly("directories"):
        write_merged_report("results", tmp_path / "out")  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_a_merged_report_names_each_set_of_versions_where_shards_differ(tmp_path: Path) -> None:
    one, two = _shards(tmp_path, 2)
    for path in (two / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "versions": {**record["versions"],
                                                           "torch": "0.0.1"}}))
    text = write_merged_report([one, two], tmp_path / "merged").read_text()
    assert re.search(r"; versions differ between runs: stochopt \S+, torch \S+, Python \S+ "
                     r"\(2 runs\); stochopt \S+, torch 0\.0\.1, Python \S+ \(2 runs\)\.", text)
