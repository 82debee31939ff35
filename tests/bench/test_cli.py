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


def test_version(capsys) -> None:
    import stochopt

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"stochopt {stochopt.__version__} (torch ")


LONG = "adamw-with-a-label-much-longer-than-an-80-column-terminal-leaves-to-a-table-column"


def test_tables_print_at_full_width_and_the_last_progress_line_counts_the_runs(
        tmp_path: Path, capsys, monkeypatch) -> None:
    from stochopt_bench import cli

    monkeypatch.setattr(cli, "write_report", lambda directory: directory / "report.md")
    suite_file = tmp_path / "wide.toml"
    suite_file.write_text(f'name = "wide"\nseeds = [0, 1, 2]\ntasks = [{{ name = "rosenbrock", '
                          f'steps = 7 }}]\n[methods.{LONG}]\noptimizer = "AdamW"\nlr = 0.01\n')
    assert main(["bench", str(suite_file), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out  # captured: not a terminal
    row = next(line for line in out.splitlines() if LONG in line)
    assert "…" not in out  # nothing cut
    cells = [cell.strip() for cell in row.split("│")[1:-1]]  # one line, every column whole
    assert cells[0] == LONG and cells[3] == "not reached (0/3)" and len(cells) == 7
    progress = [line for line in out.splitlines() if "━" in line and "/" in line]
    assert len(progress) == 1 and progress[0].startswith("suite 3/3") and "3/3" in progress[0]
    assert "run:" not in out  # no last-run line left showing 0 of its steps


def test_reproduce_help_lists_every_reproduction_with_its_expected_run_time(capsys) -> None:
    from stochopt_bench.reproductions import REPRODUCTIONS

    text = _help_text("reproduce", capsys)
    lines = text.split("reproductions (expected run time on a 2-core CPU):\n")[1].splitlines()
    assert [line.split()[0] for line in lines] == list(REPRODUCTIONS)
    for line, repro in zip(lines, REPRODUCTIONS.values(), strict=True):
        assert repro.expected_time() in line and repro.paper.split(",")[0] in line
        if repro.minutes is not None:
            assert repro.minutes > 0 and "min" in repro.expected_time()
    assert sum(r.minutes is not None for r in REPRODUCTIONS.values()) >= 11
