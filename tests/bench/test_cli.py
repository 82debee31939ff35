"""The ``stochopt`` command line end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stochopt_bench.cli import main


def test_help_from_the_module_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "stochopt_bench.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert "usage: stochopt" in result.stdout


def _help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["bench", "list", "report", "reproduce", "bo"])
def test_help_of_every_command(command: str, capsys) -> None:
    assert f"usage: stochopt {command}" in _help_text(command, capsys)


def test_list_names_tasks_optimizers_suites_and_reproductions(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("charlm", "digits-cnn", "AdaBelief", "torch.AdamW", "default", "adabelief"):
        assert name in out


def test_bench_then_report(tiny_suite_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "results"
    assert main(["bench", str(tiny_suite_file), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rosenbrock" in printed and "report:" in printed
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").is_file()


def test_report_of_an_empty_directory(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no run records" in capsys.readouterr().err


def test_unknown_reproduction(capsys) -> None:
    assert main(["reproduce", "nope"]) == 2
    assert "available: adabelief" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["bench", "reproduce"])
def test_commands_are_wired(command: str, capsys) -> None:
    assert "--out" in _help_text(command, capsys)
