"""What a reproduction is, the shared comparison rule, and recording into the docs."""

from __future__ import annotations

import logging
import math
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stochopt.errors import DamagedFileError
from stochopt_bench.report import Row
from stochopt_bench.store import read_json, set_aside, write_json_atomic, write_text_atomic
from stochopt_bench.suite import Suite, parse_suite

__all__ = [
    "Execute",
    "Families",
    "Outcome",
    "Reproduction",
    "Verdict",
    "best_learning_rates",
    "cached",
    "compare",
    "final_metric",
    "grid_line",
    "grid_suite",
    "paired",
    "record_section",
    "seeded_suite",
    "steps_to",
]

_log = logging.getLogger(__name__)

#: method families of a study: label -> (suite method options without lr, learning-rate grid)
Families = dict[str, tuple[dict[str, Any], tuple[float, ...]]]

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
    #: runs the study: suites through ``execute``; anything else under the given directory
    run: Callable[[Execute, Path], Outcome]
    #: copy the suites' figures into the docs (off where a suite has too many curves to read)
    figures: bool = True
    #: expected run time in minutes on a 2-core CPU (shown by ``stochopt reproduce --help``):
    #: measured with one torch thread, each suite run timed over its first 25 steps and
    #: scaled to its length, studies outside suites timed whole (a guide, not a promise)
    minutes: float | None = None

    def authors(self) -> str:
        """``paper``'s authors as a citation shows them: ``Frazier``, ``Liu & Zhou``, ``Liu et
        al.`` (the author list ends at the first part holding ``&`` or ``et al.``)."""
        parts = self.paper.split(", ")
        end = next((i for i, part in enumerate(parts) if "&" in part or "et al." in part), 0)
        names = ", ".join(parts[:end + 1])
        return names if end == 0 and names.count("&") <= 1 else f"{parts[0]} et al."

    def expected_time(self) -> str:
        """The expected run time as ``stochopt reproduce --help`` shows it."""
        if self.minutes is None:
            return "not measured"
        if self.minutes < 1:
            return "under 1 min"
        return f"about {self.minutes:.0f} min"


def compare(rows: list[Row], ours: str, baseline: str) -> tuple[float, float, str]:
    """Difference of final metric (positive = ``ours`` better), 2 standard errors, wording."""
    a, b = _row(rows, ours), _row(rows, baseline)
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


def _row(rows: list[Row], method: str) -> Row:
    found = next((r for r in rows if r.method == method), None)
    if found is None:
        raise ValueError(f"compare: no row for method {method!r}; rows: "
                         f"{', '.join(r.method for r in rows) or 'none'}")
    return found


def paired(ours: list[float], base: list[float]) -> tuple[float, float]:
    """Mean of ``ours - base`` over seeds paired by index, and two standard errors of it."""
    diffs = [a - b for a, b in zip(ours, base, strict=True)]
    return statistics.fmean(diffs), 2 * statistics.stdev(diffs) / math.sqrt(len(diffs))


def cached(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The record at ``path``, computing and writing it (atomically) if it is not there yet:
    studies outside suites resume like suites do. A record that cannot be read back (not
    JSON, truncated) is reported, moved aside as ``<name>.damaged`` and computed again."""
    if path.exists():
        try:
            return read_json(path, what="study record", recover="moved aside")
        except DamagedFileError as error:
            _log.warning("%s as %s; computing it again", error, set_aside(path).name)
    record = compute()
    write_json_atomic(path, record)
    return record


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


def _suite(name: str, task: str, steps: int, methods: dict[str, Any], seeds: list[int]) -> Suite:
    return parse_suite({"name": name, "seeds": seeds, "tasks": [{"name": task, "steps": steps}],
                        "methods": methods}, source=f"reproduction ({name})")


def grid_suite(prefix: str, task: str, families: Families, steps: int) -> Suite:
    """Every family at every learning rate of its grid, seed 0 (methods ``family-lr<lr>``)."""
    methods = {f"{family}-lr{lr:g}": {**options, "lr": lr}
               for family, (options, lrs) in families.items() for lr in lrs}
    return _suite(f"{prefix}-grid-{task}", task, steps, methods, [0])


def best_learning_rates(records: list[dict[str, Any]], families: Families) -> dict[str, float]:
    """Per family, the grid learning rate with the best final metric."""
    higher = records[0]["summary"]["higher_is_better"]
    best = {}
    for family, (_, lrs) in families.items():
        scored = [(final_metric(records, f"{family}-lr{lr:g}"), lr) for lr in lrs]
        best[family] = (max(scored) if higher else min(scored))[1]
    return best


def seeded_suite(prefix: str, task: str, families: Families, best: dict[str, float],
                 steps: int, seeds: list[int]) -> Suite:
    """Every family at its best learning rate, over ``seeds`` (methods named by family)."""
    methods = {family: {**options, "lr": best[family]}
               for family, (options, _) in families.items()}
    return _suite(f"{prefix}-seeds-{task}", task, steps, methods, seeds)


def grid_line(records: list[dict[str, Any]], families: Families) -> str:
    """A markdown line with every grid point's final metric."""
    parts = []
    for family, (_, lrs) in families.items():
        scores = ", ".join(f"{lr:g}: {final_metric(records, f'{family}-lr{lr:g}'):.4f}"
                           for lr in lrs)
        parts.append(f"{family} ({scores})")
    metric = records[0]["summary"]["metric"]
    return f"- grid, final {metric} by learning rate, seed 0: " + "; ".join(parts) + "."


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
