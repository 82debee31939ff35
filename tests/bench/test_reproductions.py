"""Reproductions: registered suites are valid; the verdict rule reads the numbers right."""

from __future__ import annotations

from pathlib import Path

from stochopt_bench.report import Row
from stochopt_bench.reproductions import REPRODUCTIONS, Verdict, compare, record_section


def _row(method: str, mean: float, std: float, higher: bool = True) -> Row:
    return Row(task="t", method=method, optimizer="x", seeds=3, metric="m",
               higher_is_better=higher, final_mean=mean, final_std=std, best_mean=mean,
               reached=3, steps_to_target=100.0, time_to_target=1.0, step_ms=1.0,
               state_bytes_per_param=8.0, diverged=0)


def test_compare_uses_the_metric_direction_and_seed_noise() -> None:
    assert compare([_row("a", 0.95, 0.001), _row("b", 0.90, 0.001)], "a", "b")[2] == "better"
    assert compare([_row("a", 0.90, 0.001), _row("b", 0.95, 0.001)], "a", "b")[2] == "worse"
    assert compare([_row("a", 0.91, 0.05), _row("b", 0.90, 0.05)], "a", "b")[2].startswith("no")
    loss = [_row("a", 1.0, 0.001, higher=False), _row("b", 1.2, 0.001, higher=False)]
    better, noise, word = compare(loss, "a", "b")
    assert word == "better" and abs(better - 0.2) < 1e-12 and noise < 0.01


def test_adabelief_reproduction_is_registered_and_judged() -> None:
    repro = REPRODUCTIONS["adabelief"]
    assert {s.tasks[0].name for s in repro.suites} == {"digits-cnn", "charlm"}
    assert all(s.seeds == (0, 1, 2) for s in repro.suites)
    rows = {"digits-cnn": [_row("adam", 0.95, 0.01), _row("adabelief", 0.97, 0.001)]}
    assert repro.judge(rows).verdict.startswith("reproduced")
    rows = {"digits-cnn": [_row("adam", 0.97, 0.001), _row("adabelief", 0.90, 0.001)]}
    assert repro.judge(rows).verdict.startswith("not reproduced")
    rows = {"digits-cnn": [_row("adam", 0.97, 0.05), _row("adabelief", 0.96, 0.05)]}
    assert "within seed noise of Adam's on every task" in repro.judge(rows).verdict


def test_record_section_rewrites_only_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "reproductions.md"
    doc.write_text("# Reproductions\n\nIntro stays.\n")
    figure = tmp_path / "fig.png"
    figure.write_bytes(b"\x89PNG")
    repro = REPRODUCTIONS["adabelief"]
    record_section(doc, repro, Verdict("- first", "v1"), [figure], "run 1")
    record_section(doc, repro, Verdict("- second", "v2"), [figure], "run 2")
    text = doc.read_text()
    assert text.count("<!-- reproduction:adabelief -->") == 1
    assert "Intro stays." in text and "- second" in text and "- first" not in text
    assert (tmp_path / "figures" / "adabelief-fig.png").is_file()
