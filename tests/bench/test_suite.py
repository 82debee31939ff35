"""Suite files: the schema, and errors that name the bad key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from stochopt_bench.cli import main
from stochopt_bench.suite import BUILTIN_SUITES, SuiteError, load_suite, parse_suite


def test_tiny_suite_parses(tiny_suite_file: Path) -> None:
    suite = load_suite(str(tiny_suite_file))
    assert suite.name == "tiny" and suite.seeds == (0, 1)
    assert [(t.name, t.steps) for t in suite.tasks] == [("rosenbrock", 150),
                                                        ("breast-cancer-logreg", 60)]
    assert [m.label for m in suite.methods] == ["adamw", "torch-adam"]
    assert suite.methods[0].lr_for("rosenbrock") == 5e-2
    assert len(suite.runs()) == 2 * 2 * 2


def test_yaml_has_the_same_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: y\ntasks: [beale]\nmethods:\n  sgd: {optimizer: torch.SGD, lr: 0.01,"
                    " momentum: 0.9}\n")
    suite = load_suite(str(path))
    assert suite.methods[0].options == {"momentum": 0.9}
    assert suite.tasks[0].steps == 2000  # the task's default budget


@pytest.mark.parametrize("name", list(BUILTIN_SUITES))
def test_builtin_suites_are_valid(name: str) -> None:
    assert load_suite(name).name == name


BASE = {"name": "s", "tasks": ["beale"], "methods": {"a": {"optimizer": "AdamW", "lr": 0.1}}}


@pytest.mark.parametrize(("change", "message"), [
    ({"method": {}}, r"method: unknown key; allowed: name, description, seeds, tasks, methods"),
    ({"name": ""}, r"name: must be a non-empty string"),
    ({"seeds": [0, "1"]}, r"seeds\[1\]: must be an integer, got '1'"),
    ({"tasks": ["mnist"]}, r"tasks\[0\]\.name: unknown task 'mnist'; available: digits-mlp"),
    ({"tasks": [{"name": "beale", "step": 3}]}, r"tasks\[0\]: unknown key 'step'; allowed: name"),
    ({"tasks": [{"name": "beale", "steps": 0}]}, r"tasks\[0\]\.steps: must be >= 1, got 0"),
    ({"methods": {"a": {"optimizer": "Adamw", "lr": 0.1}}},
     r"methods\.a\.optimizer: unknown optimizer 'Adamw'; available: AdaBelief"),
    ({"methods": {"a": {"optimizer": "AdamW"}}}, r"methods\.a\.lr: is required"),
    ({"methods": {"a": {"optimizer": "AdamW", "lr": {"charlm": 0.1}}}},
     r"methods\.a\.lr: has no entry for task 'beale'; it gives: charlm"),
    ({"methods": {"a": {"optimizer": "AdamW", "lr": 0.1, "weight_decy": 0.1}}},
     r"methods\.a\.weight_decy: is not an option of AdamW; allowed: betas, eps, weight_decay"),
    ({"methods": {"a": {"optimizer": "AdamW", "lr": 0.1, "betas": [0.9, 1.5]}}},
     r"methods\.a: AdamW: betas\[1\] must be in \[0, 1\), got 1\.5"),
])
def test_malformed_suites_name_the_problem(change: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        parse_suite({**BASE, **change}, "test.toml")


def test_malformed_file_gives_a_clear_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\ntasks = ["charlm"]\n[methods.a]\noptimizer = "AdamW"\nlr = -1\n')
    out = tmp_path / "out"
    assert main(["bench", str(bad), "--out", str(out)]) == 2
    printed = capsys.readouterr().err
    assert "methods.a: AdamW: lr must be in [0, inf), got -1" in printed
    assert not out.exists()
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    assert main(["bench", str(broken), "--out", str(out)]) == 2
    assert "not valid TOML: Invalid value (at line 1, column 8)" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_suite_name() -> None:
    with pytest.raises(SuiteError, match=r"'nope': not a built-in suite \(default"):
        load_suite("nope")


def test_schedules_and_batch_sizes_in_a_suite() -> None:
    suite = parse_suite({
        "name": "s", "tasks": [{"name": "digits-mlp", "steps": 10, "batch_size": 16}],
        "methods": {"sgd": {"optimizer": "torch.SGD", "lr": 0.1,
                            "schedule": {"kind": "step", "milestones": [0.5], "warmup": 2}}},
    })
    assert suite.tasks[0].label == "digits-mlp@16"
    assert suite.methods[0].schedule == {"kind": "step", "milestones": [0.5], "warmup": 2}
    assert suite.as_dict()["tasks"][0]["batch_size"] == 16
    assert parse_suite(suite.as_dict()) == suite
    with pytest.raises(SuiteError, match=r"methods\.sgd\.schedule\.peak: unknown key; allowed: "
                                         r"kind, warmup, final"):
        parse_suite({**BASE, "methods": {"sgd": {"optimizer": "torch.SGD", "lr": 0.1,
                                                 "schedule": {"kind": "cosine", "peak": 1}}}})
    with pytest.raises(SuiteError, match=r"tasks\[0\]\.batch_size: must be a positive integer "
                                         r"for a task with minibatches, got 8"):
        parse_suite({**BASE, "tasks": [{"name": "beale", "batch_size": 8}]})
