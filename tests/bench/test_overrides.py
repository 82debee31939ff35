"""``bench --steps/--methods/--threads``: checked before anything is written, recorded in the
results directory, and a directory made with other overrides is another study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stochopt_bench import cli
from stochopt_bench.cli import main
from stochopt_bench.overrides import Overrides, parse_methods, parse_positive
from stochopt_bench.runner import run_suite
from stochopt_bench.suite import SuiteError, apply_overrides, parse_suite, read_suite_file
from tests.contract import raises_clearly

SUITE = """name = "over"
seeds = [0]
tasks = [{ name = "rosenbrock", steps = 30 }, { name = "beale", steps = 20 }]
[methods.a]
optimizer = "AdamW"
lr = 0.01
[methods.b]
optimizer = "torch.SGD"
lr = 0.001
[methods.c]
optimizer = "AdamW"
lr = 0.01
schedule = { kind = "cosine", warmup = 10 }
"""


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "over.toml"
    path.write_text(SUITE)
    return path


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def test_overrides_reach_the_runs_and_the_results_directory(suite_file: Path, tmp_path: Path,
                                                            capsys) -> None:
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    assert main(["bench", str(suite_file), "--out", str(out), "--steps", "12",
                 "--methods", "c,a", "--threads", "1"]) == 0
    assert "over: 4 runs, --steps 12 --methods c,a --threads 1" in capsys.readouterr().out
    records = _records(out)
    assert sorted((r["task"], r["method"]["label"]) for r in records) == [
        ("beale", "a"), ("beale", "c"), ("rosenbrock", "a"), ("rosenbrock", "c")]
    assert all(r["steps"] == 12 and r["curve"][-1]["step"] == 12 for r in records)
    assert all(r["machine"]["torch_threads"] == 1 for r in records)
    assert torch.get_num_threads() == threads  # restored after the runs
    held = read_suite_file(out / "suite.json", recover="-")
    assert held.overrides == Overrides(steps=12, methods=("c", "a"), threads=1)
    assert [m.label for m in held.methods] == ["a", "c"]  # the suite's order
    assert "Run with --steps 12 --methods c,a --threads 1." in (out / "report.md").read_text()


@pytest.mark.parametrize(("flags", "message"), [
    (["--steps", "0"], "--steps '0': must be an integer >= 1"),
    (["--steps", "1e3"], "--steps '1e3': must be an integer >= 1"),
    (["--threads", "-2"], "--threads '-2': must be an integer >= 1"),
    (["--methods", "a,,b"], "--methods 'a,,b': must be method labels of the suite"),
    (["--methods", "a,a"], "--methods 'a,a': repeats 'a'"),
    (["--methods", "d"], "--methods: suite over has no method 'd'; its methods: a, b, c"),
    # a warm-up no shorter than the new steps: the flag and the key are named
    (["--steps", "10"], "suite over with --steps 10: methods.c.schedule.warmup: must be less "
                        "than the steps of every task, got 10"),
    (["--shard", "1/2", "--steps", "x"], "--steps 'x'"),
])
def test_a_bad_override_is_one_line_before_anything_is_written(
        suite_file: Path, tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    out = tmp_path / "out"
    assert main(["bench", str(suite_file), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stochopt: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_directory_made_with_other_overrides_is_another_study(
        suite_file: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(cli, "write_report", lambda directory: directory / "report.md")
    out = tmp_path / "out"
    assert main(["bench", str(suite_file), "--out", str(out), "--steps", "12",
                 "--methods", "a"]) == 0
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    capsys.readouterr()
    for flags, held, asked in (([], "--steps 12 --methods a", "no overrides"),
                               (["--steps", "13", "--methods", "a"], "--steps 12 --methods a",
                                "--steps 13 --methods a"),
                               (["--steps", "12", "--methods", "a", "--threads", "1"],
                                "--steps 12 --methods a", "--steps 12 --methods a --threads 1")):
        assert main(["bench", str(suite_file), "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err
        assert f"holds suite 'over' run with {held}, not with {asked} (another study)" in err
        assert "--fresh" in err
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    # the same overrides resume (nothing run again); --fresh starts the other study over
    assert main(["bench", str(suite_file), "--out", str(out), "--methods", "a", "--steps",
                 "12"]) == 0
    assert before == {p: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    assert main(["bench", str(suite_file), "--out", str(out), "--fresh"]) == 0
    assert len(_records(out)) == 6 and all(r["steps"] in (30, 20) for r in _records(out))
    assert "overrides" not in json.loads((out / "suite.json").read_text())


def test_apply_overrides_checks_everything_and_changes_nothing() -> None:
    suite = parse_suite({"name": "s", "tasks": [{"name": "beale", "steps": 5}],
                         "methods": {"a": {"optimizer": "AdamW", "lr": 0.1}}})
    with raises_clearly("suite"):
        apply_overrides("s", Overrides(steps=2))  # type: ignore[arg-type]
    with raises_clearly("overrides"):
        apply_overrides(suite, {"steps": 2})  # type: ignore[arg-type]
    changed = apply_overrides(suite, Overrides(steps=2))
    assert suite.tasks[0].steps == 5 and changed.tasks[0].steps == 2
    with pytest.raises(SuiteError, match="has overrides already"):
        apply_overrides(changed, Overrides(steps=3))
    with raises_clearly("steps (--steps)"):
        Overrides(steps=0)
    with raises_clearly("methods (--methods)"):
        Overrides(methods=["a"])  # type: ignore[arg-type]
    with raises_clearly("methods (--methods)", match="repeats"):
        Overrides(methods=("a", "a"))
    assert Overrides.from_dict(Overrides(2, ("a",), 1).as_dict()) == Overrides(2, ("a",), 1)
    assert not Overrides() and Overrides().describe() == "no overrides"
    assert parse_positive("--steps", None) is None and parse_methods(" a , b") == ("a", "b")


def test_a_damaged_overrides_entry_in_suite_json_is_named(tmp_path: Path) -> None:
    suite = parse_suite({"name": "s", "tasks": [{"name": "beale", "steps": 5}],
                         "methods": {"a": {"optimizer": "AdamW", "lr": 0.1}}})
    run_suite(apply_overrides(suite, Overrides(steps=3)), tmp_path)
    marker = tmp_path / "suite.json"
    data = json.loads(marker.read_text())
    assert data["overrides"] == {"steps": 3}
    for bad in ({"steps": "3"}, {"stepz": 3}, [3], {"methods": "a"}):
        marker.write_text(json.dumps({**data, "overrides": bad}))
        with raises_clearly(str(marker), match="'overrides' entry is not valid"):
            run_suite(suite, tmp_path)
