"""Reports: a table per task (one row per method, aggregated over seeds) and figures.

``write_report(directory)`` rebuilds ``report.md`` and the PNG figures next to the run records,
from the records alone, so a report can be regenerated at any time (``stochopt report DIR``);
``write_merged_report(directories, out)`` reports the records of one study kept in several
directories (shards; ``stochopt report DIR1 DIR2 ... --out DIR``, see
:mod:`stochopt_bench.merge`). A record that cannot be read back is reported by file and left
out; the report is built from the rest (and refused, naming the files, if nothing is left).
The report gives each method's optimizer, learning rate, options and schedule, the machines
the runs were made on, and the suite's runs that have no record.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stochopt._checks import show
from stochopt_bench.merge import gather
from stochopt_bench.store import check_record, output_directory, write_text_atomic
from stochopt_bench.suite import SUITE_FILE, read_suite_file

__all__ = ["Row", "figures", "in_suite_order", "markdown", "read_suite", "summarize",
           "write_merged_report", "write_report"]


@dataclass(frozen=True)
class Row:
    """One method on one task, aggregated over its seeds."""

    task: str
    method: str
    optimizer: str
    seeds: int
    metric: str
    higher_is_better: bool
    final_mean: float
    final_std: float
    best_mean: float
    reached: int
    steps_to_target: float | None
    time_to_target: float | None
    step_ms: float
    state_bytes_per_param: float
    diverged: int

    def cells(self) -> list[str]:
        spread = f" ± {self.final_std:.4g}" if self.seeds > 1 else ""
        steps = (f"{self.steps_to_target:.0f} ({self.reached}/{self.seeds})"
                 if self.steps_to_target is not None else f"not reached (0/{self.seeds})")
        seconds = f"{self.time_to_target:.2f}" if self.time_to_target is not None else "—"
        return [self.method, self.optimizer, f"{self.final_mean:.4g}{spread}",
                f"{self.best_mean:.4g}", steps, seconds, f"{self.step_ms:.3f}",
                f"{self.state_bytes_per_param:.2f}"]


_log = logging.getLogger(__name__)

HEADER = ["method", "optimizer", "final {metric}", "best {metric}", "steps to target",
          "time to target (s)", "step (ms)", "state B/param"]


def in_suite_order(records: list[dict[str, Any]],
                   suite: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Records sorted by the suite's task and method order, then seed."""
    _check_records(records, empty=True)
    if suite is None:
        return records
    tasks, labels = _suite_order(suite)

    def key(r: dict[str, Any]) -> tuple[int, int, int]:
        task, label = r["task"], r["method"]["label"]
        return (tasks.index(task) if task in tasks else len(tasks),
                labels.index(label) if label in labels else len(labels), r["seed"])

    return sorted(records, key=key)


def _suite_order(suite: Any) -> tuple[list[str], list[str]]:
    """The task labels and method labels of a suite (as :meth:`Suite.as_dict` gives it)."""
    try:
        tasks = [t["name"] if t.get("batch_size") is None else f"{t['name']}@{t['batch_size']}"
                 for t in suite["tasks"]]
        return tasks, list(suite["methods"])
    except (KeyError, TypeError, AttributeError):
        raise ValueError(f"suite must be a suite as Suite.as_dict() gives it (tasks, methods), "
                         f"got {show(suite)}") from None


def summarize(records: list[dict[str, Any]],
              suite: dict[str, Any] | None = None) -> dict[str, list[Row]]:
    """Rows by task; tasks and methods in the suite's order (else as they first appear).

    Raises:
        TypeError, ValueError: a record is not shaped as a run record (naming which).
    """
    records = in_suite_order(records, suite)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["method"]["label"])].append(r)
    rows: dict[str, list[Row]] = defaultdict(list)
    for (task, label), runs in groups.items():
        finals = [r["summary"]["final"] for r in runs]
        hit = [r["summary"] for r in runs if r["summary"]["steps_to_target"] is not None]
        rows[task].append(Row(
            task=task, method=label, optimizer=runs[0]["method"]["optimizer"], seeds=len(runs),
            metric=runs[0]["summary"]["metric"],
            higher_is_better=runs[0]["summary"]["higher_is_better"],
            final_mean=statistics.fmean(finals),
            final_std=_stdev(finals),
            best_mean=statistics.fmean(r["summary"]["best"] for r in runs), reached=len(hit),
            steps_to_target=statistics.median(h["steps_to_target"] for h in hit) if hit else None,
            time_to_target=statistics.median(h["time_to_target"] for h in hit) if hit else None,
            step_ms=1e3 * statistics.median(r["step_time"]["median"] for r in runs),
            state_bytes_per_param=runs[0]["state_bytes_per_param"],
            diverged=sum(bool(r["diverged"]) for r in runs),
        ))
    return dict(rows)


def _stdev(values: list[float]) -> float:
    """The sample standard deviation; 0 for one value, NaN if a value is not finite (a
    diverged run), where :func:`statistics.stdev` would raise."""
    if len(values) < 2:
        return 0.0
    if not all(math.isfinite(v) for v in values):
        return math.nan
    return statistics.stdev(values)


def markdown(rows: dict[str, list[Row]], records: list[dict[str, Any]],
             figure_names: dict[str, str], title: str, notes: tuple[str, ...] = ()) -> str:
    """The report as markdown: provenance (machines, versions, then ``notes``, one paragraph
    each), the methods' settings, then per task a table and its figure.

    Raises:
        TypeError, ValueError: ``records`` are not run records, or ``rows`` names a task that
            has no record or no figure in ``figure_names``.
    """
    _check_records(records)
    tasks = {r["task"] for r in records}
    for task in rows:
        if task not in tasks or task not in figure_names:
            raise ValueError(f"markdown: rows has task {task!r}, which has no record or no "
                             f"entry in figure_names")
    lines = [f"# {title}", "", f"{_machines(records)}; {_versions(records)}.", ""]
    for note in notes:
        lines += [note, ""]
    lines += ["Final and best are the validation metric at the last and the best evaluation "
              "(mean over seeds, ± standard deviation); steps and time to target are medians "
              "over the seeds that reached it; step time is the median optimizer.step() "
              "alone; state is the optimizer's peak state memory per parameter.", ""]
    lines += _methods_table(records)
    for task, task_rows in rows.items():
        metric = task_rows[0].metric
        target = next(r["summary"]["target"] for r in records if r["task"] == task)
        lines += [f"## {task}", "", f"Metric: {metric}, target {target:g}.", ""]
        lines.append("| " + " | ".join(h.format(metric=metric) for h in HEADER) + " |")
        lines.append("|" + "---|" * len(HEADER))
        lines += ["| " + " | ".join(row.cells()) + " |" for row in task_rows]
        diverged = [f"{r.method} ({r.diverged})" for r in task_rows if r.diverged]
        if diverged:
            lines += ["", f"Diverged runs: {', '.join(diverged)}."]
        lines += ["", f"![{task}]({figure_names[task]})", ""]
    return "\n".join(lines)


def _machines(records: list[dict[str, Any]]) -> str:
    """``Machine: ...``, or ``Machines: ...`` with each one's number of runs where the runs
    were made on several (shards on several machines)."""
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        m = r["machine"]
        counts[f"{m['processor']}, {m['logical_cpus']} logical CPUs, {m['torch_threads']} "
               f"torch threads"] += 1
    if len(counts) == 1:
        return f"Machine: {next(iter(counts))}"
    return "Machines: " + "; ".join(f"{name} ({n} runs)" for name, n in counts.items())


def _versions(records: list[dict[str, Any]]) -> str:
    """``stochopt ..., torch ..., Python ...``, or each set of versions with its number of
    runs where the runs were made with several (shards run on differently set-up machines)."""
    counts: dict[str, int] = defaultdict(int)
    for r in records:
        v = r["versions"]
        counts[f"stochopt {v['stochopt']}, torch {v['torch']}, Python {v['python']}"] += 1
    if len(counts) == 1:
        return next(iter(counts))
    return "versions differ between runs: " + "; ".join(f"{name} ({n} runs)"
                                                        for name, n in counts.items())


def _methods_table(records: list[dict[str, Any]]) -> list[str]:
    """Each method's optimizer, learning rate (by task where it differs), options and
    schedule, as its first record gives them."""
    methods: dict[str, dict[str, Any]] = {}
    for r in records:
        methods.setdefault(r["method"]["label"], r["method"])
    lines = ["## Methods", "", "| method | optimizer | lr | options | schedule |",
             "|---|---|---|---|---|"]
    for label, method in methods.items():
        lr = method["lr"]
        lr_text = (", ".join(f"{task} {_value(value)}" for task, value in lr.items())
                   if isinstance(lr, dict) else _value(lr))
        options = ", ".join(f"{k}={_value(v)}" for k, v in method["options"].items())
        schedule = method.get("schedule")
        schedule_text = "constant" if not isinstance(schedule, dict) else (
            str(schedule.get("kind")) + "".join(
                f", {k} {_value(v)}" for k, v in schedule.items() if k != "kind"))
        lines.append(f"| {label} | {method['optimizer']} | {lr_text} | "
                     f"{options or 'defaults'} | {schedule_text} |")
    return [*lines, ""]


def _value(value: Any) -> str:
    """A setting as the suite file writes it (``1e-08``, ``[0.9, 0.999]``, ``true``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def figures(records: list[dict[str, Any]], directory: Path) -> dict[str, str]:
    """One PNG per task: validation loss against step and against training time, and the
    win rate against step where runs recorded one (:func:`_win_rate_axis`)."""
    _check_records(records)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_task: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    for r in records:
        by_task[r["task"]][r["method"]["label"]].append(r)
    names = {}
    for task, methods in by_task.items():
        win_rates = any("win_rate" in p for runs in methods.values() for r in runs
                        for p in r["curve"])
        fig, axes = plt.subplots(1, 2 + win_rates, figsize=(11 + 5 * win_rates, 4.2),
                                 constrained_layout=True)
        ax_step, ax_time = axes[:2]
        if len(methods) > 10:  # the default cycle repeats after 10 colors
            ax_step.set_prop_cycle(color=plt.get_cmap("tab20").colors)
        for label, runs in methods.items():
            steps = [p["step"] for p in runs[0]["curve"]]
            n = min(len(r["curve"]) for r in runs)
            loss = [statistics.fmean(r["curve"][i]["val_loss"] for r in runs) for i in range(n)]
            seconds = [statistics.fmean(r["curve"][i]["time"] for r in runs) for i in range(n)]
            (line,) = ax_step.plot(steps[:n], loss, marker=".", label=label)
            ax_time.plot(seconds, loss, marker=".", color=line.get_color(), label=label)
        for ax, xlabel in ((ax_step, "training step"), (ax_time, "training time (s)")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation loss")
            ax.grid(alpha=0.3, which="both")
            _log_axis(ax)
        ax_step.legend(fontsize=9)
        if win_rates:
            _win_rate_axis(axes[2], methods, {line.get_label(): line.get_color()
                                              for line in ax_step.get_lines()})
        seeds = len(next(iter(methods.values())))
        fig.suptitle(f"{task}: validation loss (mean over {seeds} seed{'s' * (seeds > 1)})")
        names[task] = f"{task}.png"
        fig.savefig(directory / names[task], dpi=110)
        plt.close(fig)
    return names


def _win_rate_axis(ax: Any, methods: dict[str, list[dict[str, Any]]],
                   colors: dict[str, str]) -> None:
    """The win rate (fraction of coordinates whose update is not clipped) against step, mean
    over seeds, of each method whose runs recorded it, in its loss curve's color."""
    for label, runs in methods.items():
        by_step: dict[int, list[float]] = defaultdict(list)
        for r in runs:
            for p in r["curve"]:
                if "win_rate" in p:
                    by_step[p["step"]].append(p["win_rate"])
        steps = sorted(s for s, values in by_step.items() if len(values) == len(runs))
        if steps:
            ax.plot(steps, [statistics.fmean(by_step[s]) for s in steps], marker=".",
                    color=colors.get(label), label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("win rate (unclipped fraction)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)


def _check_records(records: Any, empty: bool = False) -> None:
    """``records`` is a list of run records, non-empty unless ``empty``
    (:func:`~stochopt_bench.store.check_record` names the first entry at fault)."""
    if not isinstance(records, list) or not (records or empty):
        raise ValueError(f"records must be a non-empty list of run records, got {show(records)}")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise TypeError(f"records[{i}] must be a run record (a dict), got {show(record)}")
        check_record(record, f"records[{i}]", "pass the records run_suite returns")


def read_suite(directory: Path) -> dict[str, Any] | None:
    """The suite a results directory was run with, if recorded.

    Raises:
        DamagedFileError: ``suite.json`` is there but cannot be read back as a suite.
    """
    path = Path(directory) / SUITE_FILE
    if not path.exists():
        return None
    recover = ("the report does without it (suite order, title); delete it, and the next run "
               "of the suite writes it again")
    return read_suite_file(path, recover).as_dict()


def _log_axis(ax: Any) -> None:
    """Log scale (unless a plotted value is <= 0); over less than a factor 30, label ticks as
    plain numbers (2, 3, 4)."""
    from matplotlib.ticker import FormatStrFormatter

    values = [y for line in ax.get_lines() for y in line.get_ydata()]
    if any(y <= 0 for y in values):  # NaN compares False: plotted as a gap either way
        return
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    if high / low < 30:
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))


def write_report(directory: Path, say: Callable[[str], None] | None = None) -> Path:
    """Rebuild ``report.md`` and the figures from the records in ``directory``.

    A damaged record or ``suite.json`` is reported through ``say`` (default: a logged
    warning) and left out.

    Raises:
        NotADirectoryError: ``directory`` is not a directory.
        FileNotFoundError: ``directory`` holds no run records.
        DamagedFileError: every record there is damaged (the message names each file).
    """
    return _build([Path(directory)], Path(directory), say or _log.warning)[0]


def write_merged_report(directories: list[Path], out: Path,
                        say: Callable[[str], None] | None = None) -> Path:
    """``report.md`` and the figures in ``out`` (created if missing) from the records of one
    study kept in ``directories`` (shards of a suite), checked to be one study
    (:func:`stochopt_bench.merge.gather`) before anything is written.

    Raises:
        TypeError, ValueError, NotADirectoryError, FileNotFoundError, DamagedFileError: see
            :func:`~stochopt_bench.merge.gather`; ``ValueError`` also if ``out`` is a file or
            cannot be written.
    """
    if not isinstance(out, str | Path):
        raise TypeError(f"write_merged_report: out must be a path, got {show(out)}")
    return _build(directories, Path(out), say or _log.warning)[0]


def _build(given: list[Path], out: Path, say: Callable[[str], None]
           ) -> tuple[Path, list[dict[str, Any]], dict[str, Any] | None, list[str]]:
    """The report of the records in the directories ``given``, written to ``out``; returns
    its path, its records, its suite and the suite's runs without a record."""
    found = gather(given, say)  # checks the directories
    directories = [path for path, _ in found.sources]
    suite = found.suite.as_dict() if found.suite else None
    title = suite["name"] if suite else directories[0].name
    records = in_suite_order(found.records, suite)
    notes, study = [], found.suite
    if len(directories) > 1:
        notes.append(f"Merged from {len(directories)} results directories: " + ", ".join(
            f"{path} ({n} runs)" for path, n in found.sources) + ".")
    if study is not None and study.overrides:
        notes.append(f"Run with {study.overrides.describe()}.")
    if study is not None and found.missing:
        notes.append(f"**Incomplete:** {len(found.missing)} of the suite's "
                     f"{len(study.runs())} runs have no "
                     f"record here: {_listed(found.missing)}. Run `stochopt bench` again to "
                     f"finish an interrupted suite; for a sharded suite, merge every shard's "
                     f"directory (`stochopt report DIR1 DIR2 ... --out DIR`).")
    rows = summarize(records, suite)
    text = markdown(rows, records, {task: f"{task}.png" for task in rows},
                    f"stochopt report: {title}", tuple(notes))  # checked before writing
    if out not in directories:  # a merged report's own directory
        output_directory(out, "--out")
    figures(records, out)
    path = out / "report.md"
    write_text_atomic(path, text + "\n")
    return path, records, suite, found.missing


def _listed(names: list[str], limit: int = 10) -> str:
    """``names`` joined, the first ``limit`` of them and how many more."""
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {more} more" if more > 0 else "")
