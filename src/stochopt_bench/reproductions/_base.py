"""What a reproduction is, the shared comparison rule, and recording into the docs."""

from __future__ import annotations

import math
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stochopt_bench.report import Row
from stochopt_bench.store import write_text_atomic
from stochopt_bench.suite import Suite

__all__ = ["Execute", "Outcome", "Reproduction", "Verdict", "compare", "final_metric",
           "record_section", "steps_to"]

#: runs a suite (resuming finished runs), reports it, and returns its records
Execute = Callable[[Suite], list[dict[str, Any]]]


@dataclass(frozen=True)
class Verdict:
    measurement: str  # markdown lines
    verdict: str


@dataclass(frozen=True)
class Outcome:
    rows: dict[str, list[Row]]  # tables to print, by task
    verdict: Verdict


@dataclass(frozen=True)
class Reproduction:
    name: str
    paper: str
    claim: str
    setup: str
    run: Callable[[Execute], Outcome]


def compare(rows: list[Row], ours: str, baseline: str) -> tuple[float, float, str]:
    """Difference of final metric (positive = ``ours`` better), 2 standard errors, wording."""
    a = next(r for r in rows if r.method == ours)
    b = next(r for r in rows if r.method == baseline)
    sign = 1.0 if a.higher_is_better else -1.0
    better = sign * (a.final_mean - b.final_mean)
    noise = 2 * math.sqrt(a.final_std**2 / a.seeds + b.final_std**2 / b.seeds)
    if better > noise:
        word = "better"
    elif better >= -noise:
        word = "no worse (within 2 standard errors)"
    else:
        word = "worse"
    return better, noise, word


def final_metric(records: list[dict[str, Any]], label: str) -> float:
    """Mean over seeds of the final value of the task's metric for method ``label``."""
    return statistics.fmean(r["summary"]["final"] for r in records
                            if r["method"]["label"] == label)


def steps_to(record: dict[str, Any], value: float) -> int | None:
    """The first evaluated step at which the run's metric is at least as good as ``value``."""
    higher = record["summary"]["higher_is_better"]
    metric = record["summary"]["metric"]
    for point in record["curve"]:
        if (point[metric] >= value) if higher else (point[metric] <= value):
            return point["step"]
    return None


def record_section(document: Path, reproduction: Reproduction, verdict: Verdict,
                   figures: list[Path], provenance: str) -> None:
    """Rewrite the reproduction's section of ``document`` (between its markers)."""
    figure_dir = document.parent / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    links = []
    for figure in figures:  # results/<run>/<suite>/<task>.png -> docs/figures/<suite>.png
        suite = figure.parent.name
        stem = suite if figure.stem in suite else f"{suite}-{figure.stem}"
        target = figure_dir / f"{stem}.png"
        shutil.copyfile(figure, target)
        links.append(f"![{stem}](figures/{target.name})")
    begin = f"<!-- reproduction:{reproduction.name} -->"
    end = f"<!-- /reproduction:{reproduction.name} -->"
    section = "\n".join([
        begin, f"## {reproduction.name}", "", f"**Paper:** {reproduction.paper}", "",
        f"**Claim:** {reproduction.claim}", "", f"**Setup:** {reproduction.setup}", "",
        "**Measurement:**", "", verdict.measurement, "", f"**Verdict:** {verdict.verdict}.", "",
        f"_{provenance}_", "", *links, end])
    text = document.read_text() if document.is_file() else "# Reproductions\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    write_text_atomic(document, text)
