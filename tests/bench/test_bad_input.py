"""Bad input to the harness: every mistake in a suite is reported before any record is written;
damaged records are reported, moved aside and re-run; the CLI ends every mistake with one line
on stderr and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stochopt.errors import DamagedFileError
from stochopt_bench import cli
from stochopt_bench.cli import main
from stochopt_bench.methods import Method, build_schedule
from stochopt_bench.report import markdown, summarize, write_report
from stochopt_bench.reproductions._base import cached
from stochopt_bench.runner import run_one, run_suite
from stochopt_bench.store import read_record, run_path
from stochopt_bench.suite import Suite, SuiteError, TaskSpec, load_suite, parse_suite
from tests.bench.conftest import MICRO_SUITE
from tests.contract import raises_clearly

GOOD = """name = "good"
seeds = [0]
tasks = [{ name = "rosenbrock", steps = 20 }]
[methods.a]
optimizer = "AdamW"
lr = 0.01
"""


def _bench(capsys, *argv: str) -> tuple[int, str]:
    """``stochopt bench ...`` in process: the exit code and stderr (one line expected)."""
    code = main(["bench", *argv])
    err = capsys.readouterr().err
    return code, err


# Each mistake (a change to GOOD) and the key the message must name. docs/guide/harness.md promises
# that every one is reported before anything runs.
MISTAKES = [
    ("seeds = [0]", "seeds = [-1]", "seeds[0]"),
    ("seeds = [0]", "seeds = [0, 0]", "seeds[1]"),
    ("seeds = [0]", "seeds = [1.5]", "seeds[0]"),
    ("seeds = [0]", "seeds = [18446744073709551616]", "seeds[0]"),
    ("steps = 20", "steps = 0", "tasks[0].steps"),
    ("steps = 20", "steps = 2.5", "tasks[0].steps"),
    ("steps = 20", "steps = 20, batch_size = 8", "tasks[0].batch_size"),
    ('name = "rosenbrock"', 'name = "mnist"', "tasks[0].name"),
    ("lr = 0.01", "lr = -1", "lr"),
    ("lr = 0.01", 'lr = "fast"', "methods.a.lr"),
    ("lr = 0.01", "lr = { rosenbrock = 0.01, mnist = 0.1 }", "methods.a.lr.mnist"),
    ("lr = 0.01", "lr = { beale = 0.01 }", "methods.a.lr"),
    ('optimizer = "AdamW"', 'optimizer = "Adamw"', "methods.a.optimizer"),
    ("lr = 0.01", "lr = 0.01\nweight_decy = 0.1", "methods.a.weight_decy"),
    ("lr = 0.01", "lr = 0.01\nbetas = [0.9, 1.5]", "betas[1]"),
    ("lr = 0.01", 'lr = 0.01\nschedule = { kind = "cosine", warmup = 20 }',
     "methods.a.schedule.warmup"),
    ("lr = 0.01", 'lr = 0.01\nschedule = { kind = "linear", warmup = 30 }',
     "methods.a.schedule.warmup"),  # the example: a warm-up longer than the run
    ("lr = 0.01", 'lr = 0.01\nschedule = { kind = "cosine", warmup = -1 }',
     "methods.a.schedule.warmup"),
    ("lr = 0.01", 'lr = 0.01\nschedule = { kind = "step", milestones = [0.5, 0.2] }',
     "methods.a.schedule.milestones[1]"),
    ("lr = 0.01", 'lr = 0.01\nschedule = { kind = "step", gamma = -0.5 }',
     "methods.a.schedule.gamma"),
    ("lr = 0.01", 'lr = 0.01\nschedule = { kind = "refined" }', "methods.a.schedule.shape"),
    ("lr = 0.01", 'lr = 0.01\nschedule = { kind = "cosine", final = 2 }',
     "methods.a.schedule.final"),
    ("lr = 0.01", 'lr = 0.01\nschedule = { kind = "cosnie" }', "methods.a.schedule"),
    ('name = "good"', 'name = "a/b"', "name"),
    ('name = "good"', 'name = "good"\ndescription = 3', "description"),
    ('name = "good"', 'name = "good"\nmethod = 1', "method"),
    ("[methods.a]", '[methods."a/b"]', "methods.a/b"),
    ("[methods.a]", "[methods.a]\ncapturable = true", "methods.a: AdamW: capturable=True"),
    ("[methods.a]", "[methods.a]\ncapturabel = true", "methods.a.capturabel"),
]


@pytest.mark.parametrize(("old", "new", "key"), MISTAKES, ids=[m[1] for m in MISTAKES])
def test_every_suite_mistake_is_reported_before_any_record(tmp_path: Path, capsys, old: str,
                                                           new: str, key: str) -> None:
    assert old in GOOD
    suite = tmp_path / "bad.toml"
    suite.write_text(GOOD.replace(old, new, 1))
    out = tmp_path / "out"
    code, err = _bench(capsys, str(suite), "--out", str(out))
    assert code == 2
    assert err.startswith("stochopt: error: suite ") and err.count("\n") == 1, err
    assert key in err and "Traceback" not in err
    assert not out.exists()  # nothing written, not even the directory


def test_a_warmup_is_checked_against_the_shortest_task(tmp_path: Path, capsys) -> None:
    suite = tmp_path / "two.toml"
    suite.write_text(GOOD.replace('tasks = [{ name = "rosenbrock", steps = 20 }]',
                                  'tasks = [{ name = "beale", steps = 200 }, '
                                  '{ name = "rosenbrock", steps = 20 }]')
                     .replace("lr = 0.01", 'lr = 0.01\nschedule = { kind = "cosine", '
                                           'warmup = 50 }'))
    out = tmp_path / "out"
    code, err = _bench(capsys, str(suite), "--out", str(out))
    assert code == 2 and err.count("\n") == 1, err
    assert "methods.a.schedule.warmup" in err and "task rosenbrock has 20 steps" in err
    assert not out.exists()  # beale's runs, which the warm-up fits, are not run either


@pytest.mark.parametrize("optimizer", ["SophiaG", "SophiaG8bit"])
@pytest.mark.parametrize("task", ["rosenbrock", "breast-cancer-logreg"])
def test_sophia_g_on_a_task_without_logits_is_reported_before_any_record(
        tmp_path: Path, capsys, optimizer: str, task: str) -> None:
    """Sophia-G's estimate resamples labels from the logits, which test functions and the
    binary logistic regression do not give: found at parse time, not after the records of the
    tasks before it (it used to fail in the first run of such a task)."""
    suite = tmp_path / "sophia.toml"
    suite.write_text(GOOD.replace('tasks = [{ name = "rosenbrock", steps = 20 }]',
                                  f'tasks = [{{ name = "digits-mlp", steps = 3 }}, '
                                  f'{{ name = "{task}", steps = 3 }}]')
                     .replace('optimizer = "AdamW"', f'optimizer = "{optimizer}"'))
    out = tmp_path / "out"
    code, err = _bench(capsys, str(suite), "--out", str(out))
    assert code == 2 and err.startswith("stochopt: error: suite ") and err.count("\n") == 1
    assert f"methods.a: {optimizer} needs the logits" in err and f"task {task} gives none" in err
    assert not out.exists()
    parse_suite({**MICRO_SUITE, "tasks": [{"name": "digits-mlp", "steps": 3}],  # logits: fine
                 "methods": {"a": {"optimizer": optimizer, "lr": 0.01}}})


def test_torch_flags_that_only_fail_at_step_time_are_caught_before_running() -> None:
    """``capturable`` passes torch's constructor and fails in its first step on a CPU."""
    methods = {"a": {"optimizer": "torch.AdamW", "lr": 0.01, "capturable": True}}
    with raises_clearly("methods.a"):
        parse_suite({**MICRO_SUITE, "methods": methods}, "s.toml")


@pytest.mark.parametrize(("name", "content"), [
    ("missing.toml", None), ("s.toml", "name = \n"), ("s.toml", b"\xff\xfe"),
    ("s.toml", ""), ("s.yaml", "- a list\n"), ("s.yaml", "a: [1\nb: 2\n"),
    ("s.yml", "a: !!python/tuple [1, 2]\n"),
])
def test_suite_files_that_cannot_be_read(tmp_path: Path, capsys, name: str, content) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    code, err = _bench(capsys, str(path), "--out", str(out))
    assert code == 2 and err.count("\n") == 1 and str(path) in err, err
    assert not out.exists()


def test_unknown_builtin_suite_directory_and_file_type(tmp_path: Path, capsys) -> None:
    assert _bench(capsys, "nope")[1].startswith("stochopt: error: suite 'nope': not a built-in")
    assert "is a directory" in _bench(capsys, str(tmp_path))[1]
    (tmp_path / "s.json").write_text("{}")
    assert "unknown file type '.json'" in _bench(capsys, str(tmp_path / "s.json"))[1]


def test_out_is_a_file_or_cannot_be_written(tmp_path: Path, capsys, monkeypatch) -> None:
    suite = tmp_path / "good.toml"
    suite.write_text(GOOD)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, err = _bench(capsys, str(suite), "--out", str(a_file))
    assert code == 2 and f"--out {a_file}: is a file" in err
    code, err = _bench(capsys, str(suite), "--out", str(a_file / "sub"))
    assert code == 2 and "cannot be created" in err
    monkeypatch.setattr(cli.os, "access", lambda *a: False)  # as a non-root user would see
    code, err = _bench(capsys, str(suite), "--out", str(tmp_path / "locked"))
    assert code == 2 and "cannot be written" in err
    assert a_file.read_text() == "x"


def test_reproduce_checks_its_paths_before_running(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["reproduce", "adabelief", "--out", str(a_file)]) == 2
    assert f"--out {a_file}: is a file" in capsys.readouterr().err
    assert main(["reproduce", "adabelief", "--out", str(tmp_path / "o"), "--record",
                 str(tmp_path)]) == 2
    assert "--record" in capsys.readouterr().err
    assert not (tmp_path / "o" / "adabelief-digits-cnn").exists()


def test_report_of_a_missing_directory_or_a_file(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert main(["report", str(tmp_path / "f")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def _micro(tmp_path: Path) -> tuple[object, list[dict]]:
    suite = parse_suite(MICRO_SUITE)
    return suite, run_suite(suite, tmp_path)


def test_damaged_records_are_reported_moved_aside_and_rerun(tmp_path: Path, caplog) -> None:
    suite, first = _micro(tmp_path)
    truncated, foreign = (run_path(tmp_path, "rosenbrock", "adamw", s) for s in (0, 1))
    truncated.write_text(truncated.read_text()[:200])
    record = json.loads(foreign.read_text())
    foreign.write_text(json.dumps({**record, "seed": 7}))  # another run's record
    second = run_suite(suite, tmp_path)
    messages = [r.getMessage() for r in caplog.records]
    assert any(str(truncated) in m and "not valid JSON" in m for m in messages)
    assert any(str(foreign) in m and "seed 7" in m for m in messages)
    assert len(second) == 2 and all(read_record(p) for p in (truncated, foreign))
    def losses(records: list[dict]) -> list[list[float]]:
        return [[point["val_loss"] for point in r["curve"]] for r in records]

    assert losses(second) == losses(first)  # run again, from the same seeds
    kept = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert kept == ["rosenbrock__adamw__seed0.json", "rosenbrock__adamw__seed0.json.damaged",
                    "rosenbrock__adamw__seed1.json", "rosenbrock__adamw__seed1.json.damaged"]


def test_records_of_an_edited_suite_are_moved_aside_as_outdated(tmp_path: Path, caplog) -> None:
    _micro(tmp_path)
    edited = parse_suite({**MICRO_SUITE, "methods": {"adamw": {"optimizer": "AdamW",
                                                               "lr": 0.02}}})
    assert [r["method"]["lr"] for r in run_suite(edited, tmp_path)] == [0.02, 0.02]
    assert any("method.lr: 0.01 -> 0.02" in r.getMessage() for r in caplog.records)
    assert len(list((tmp_path / "runs").glob("*.json.outdated"))) == 2


def test_damaged_or_foreign_suite_json(tmp_path: Path, capsys) -> None:
    suite, _ = _micro(tmp_path)
    marker = tmp_path / "suite.json"
    marker.write_text(marker.read_text()[:30])
    with raises_clearly(str(marker), match="--fresh"):
        run_suite(suite, tmp_path)
    marker.write_text(json.dumps({**suite.as_dict(), "name": "other"}))
    with raises_clearly(str(tmp_path), match="'other', not 'micro'.*--fresh"):
        run_suite(suite, tmp_path)
    marker.write_text(json.dumps({**suite.as_dict(), "seeds": "x"}))
    with raises_clearly(str(marker), match="seeds"):
        run_suite(suite, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").iterdir()}
    records = run_suite(suite, tmp_path, fresh=True)  # starts over
    assert len(records) == 2 and json.loads(marker.read_text())["name"] == "micro"
    assert all(p.stat().st_mtime_ns != s for p, s in stamps.items())


def test_report_leaves_out_damaged_records_naming_them(tmp_path: Path, capsys) -> None:
    _micro(tmp_path)
    bad = run_path(tmp_path, "rosenbrock", "adamw", 1)
    bad.write_text(json.dumps({"schema": 2, "task": "rosenbrock"}))
    (tmp_path / "suite.json").write_text("{")
    assert main(["report", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"stochopt: warning: run record {bad} is damaged: it has no 'complete' entry" in err
    assert "suite.json is damaged" in err
    assert "| adamw | AdamW |" in (tmp_path / "report.md").read_text()
    good = run_path(tmp_path, "rosenbrock", "adamw", 0)
    good.write_text("")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("stochopt: error: no readable run records") and str(good) in err


def test_report_functions_name_the_record_at_fault(micro_record: dict, tmp_path: Path) -> None:
    broken = {**micro_record, "summary": {**micro_record["summary"], "final": "x"}}
    with raises_clearly("records[1]", match="summary.final"):
        summarize([micro_record, broken])
    with raises_clearly("records"):
        markdown({}, [], {}, "t")
    with raises_clearly("'beale'"):
        markdown({"beale": []}, [micro_record], {}, "t")
    with raises_clearly("suite"):
        summarize([micro_record], {"tasks": 3})
    with pytest.raises(FileNotFoundError, match="no run records"):
        write_report(tmp_path)


def test_a_damaged_study_record_is_computed_again(tmp_path: Path, caplog) -> None:
    path = tmp_path / "study.json"
    path.write_text('{"x": ')
    assert cached(path, lambda: {"x": 1}) == {"x": 1}
    assert json.loads(path.read_text()) == {"x": 1}
    assert (tmp_path / "study.json.damaged").read_text() == '{"x": '
    assert any(str(path) in r.getMessage() for r in caplog.records)


def test_run_one_and_its_parts_check_their_arguments() -> None:
    spec, method, _ = parse_suite(MICRO_SUITE).runs()[0]
    with raises_clearly("seed"):
        run_one(spec, method, -1)
    with raises_clearly("spec"):
        run_one("rosenbrock", method, 0)  # type: ignore[arg-type]
    with raises_clearly("beale"):
        run_one(TaskSpec("beale", 3), Method("m", "AdamW", {"rosenbrock": 0.1}), 0)
    with raises_clearly("unknown task"):
        TaskSpec("mnist", 3)
    with raises_clearly("batch_size"):
        TaskSpec("rosenbrock", 3, batch_size=8)
    with raises_clearly("optimizer"):
        Method("m", "Adamw", 0.1)
    with raises_clearly("seeds[0]"):
        Suite("s", "", (-1,), (spec,), (method,))
    with raises_clearly("tasks"):
        Suite("s", "", (0,), ("rosenbrock",), (method,))  # type: ignore[arg-type]
    with raises_clearly("warmup"):
        build_schedule({"kind": "linear", "warmup": 5}, 0.1, 5)
    with raises_clearly("kind"):
        build_schedule({"warmup": 5}, 0.1, 5)


def test_load_suite_refuses_what_is_not_a_name(tmp_path: Path) -> None:
    with raises_clearly("spec"):
        load_suite(3)  # type: ignore[arg-type]
    with pytest.raises(SuiteError, match="not a built-in suite"):
        load_suite(str(tmp_path / "missing.toml"))


def test_damaged_file_errors_are_value_errors_with_the_path(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("[1, 2]")
    with pytest.raises(DamagedFileError) as info:
        read_record(path)
    assert info.value.path == path and "holds a JSON list" in str(info.value)


def test_bench_refuses_another_suites_directory_until_fresh(tmp_path: Path, capsys,
                                                           monkeypatch) -> None:
    suite_file = tmp_path / "micro.toml"
    suite_file.write_text(GOOD.replace("steps = 20", "steps = 3"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "suite.json").write_text(json.dumps(parse_suite(MICRO_SUITE).as_dict()))
    code, err = _bench(capsys, str(suite_file), "--out", str(out))
    assert code == 2 and "holds the results of suite 'micro', not 'good'" in err
    assert not (out / "runs").exists()
    monkeypatch.setattr(cli, "write_report", lambda directory: directory / "report.md")
    assert main(["bench", str(suite_file), "--out", str(out), "--fresh"]) == 0
    assert json.loads((out / "suite.json").read_text())["name"] == "good"
    assert len(list((out / "runs").glob("*.json"))) == 1


def test_a_runs_entry_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("")
    with raises_clearly(str(tmp_path / "runs")):
        run_suite(parse_suite(MICRO_SUITE), tmp_path)
