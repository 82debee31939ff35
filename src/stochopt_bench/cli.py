"""The ``stochopt`` command line: ``bench``, ``list``, ``report``, ``reproduce``, ``bo``.

``bench`` runs a suite, or one shard of it (``--shard I/N``), optionally changed for one study
(``--steps``, ``--methods``, ``--threads``); ``report`` rebuilds a results directory's report
or merges several (``report DIR1 DIR2 ... --out DIR``). Output that is not a terminal gets
tables at full width.

A mistake in the arguments, a suite or a file ends with one line on stderr,
``stochopt: error: ...``, and exit code 2, before anything runs; damaged run records are
reported as ``stochopt: warning: ...`` lines and the command goes on without them.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import stochopt
from stochopt.errors import StochoptError
from stochopt_bench.overrides import Overrides, parse_methods, parse_positive
from stochopt_bench.report import Row, summarize, write_report
from stochopt_bench.shard import Shard, parse_shard
from stochopt_bench.store import output_directory
from stochopt_bench.suite import BUILTIN_SUITES, Suite, apply_overrides, load_suite

__all__ = ["main"]


@contextmanager
def _progress(console: Console) -> Iterator[tuple[Any, Any]]:
    """Two bars, suite and current run; yields the runner's ``on_run`` and ``on_step``."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        suite_bar = progress.add_task("suite", total=None)
        run_bar = progress.add_task("run", total=None)

        def on_run(done: int, total: int, name: str) -> None:
            progress.update(suite_bar, completed=done, total=total,
                            description=f"suite {done}/{total}")
            if done == total:  # the last line counts the suite's runs, not the last run's steps
                progress.update(run_bar, visible=False)
            else:
                progress.reset(run_bar, description=f"run: {name}")

        def on_step(step: int, steps: int) -> None:
            progress.update(run_bar, completed=step, total=steps)

        yield on_run, on_step


_CONSOLE_HEADER = ("method", "final", "best", "steps to target", "time to target (s)",
                   "step (ms)", "state B/param")


def _print_tables(console: Console, rows: dict[str, list[Row]]) -> None:
    """The report's tables, without the optimizer column, to fit a terminal."""
    for task, task_rows in rows.items():
        table = Table(title=f"{task} ({task_rows[0].metric})")
        for i, header in enumerate(_CONSOLE_HEADER):
            table.add_column(header, justify="left" if i == 0 else "right")
        for row in task_rows:
            method, _, *figures = row.cells()
            table.add_row(method, *figures)
        console.print(table)


def _run(suite: Suite, out: Path, console: Console, fresh: bool = False,
         shard: Shard | None = None) -> list[dict[str, Any]]:
    from stochopt_bench.runner import check_directory, run_suite

    check_directory(out, suite, fresh)
    total = len(suite.runs())
    share = f"{len(shard.select(suite.runs()))} of {total} runs (shard {shard})" if shard \
        else f"{total} runs"
    extra = f", {suite.overrides.describe()}" if suite.overrides else ""
    console.print(f"[bold]{suite.name}[/]: {share}{extra} -> {out}")
    with _progress(console) as (on_run, on_step):
        return run_suite(suite, out, on_run=on_run, on_step=on_step, fresh=fresh, shard=shard)


def _bench(args: argparse.Namespace, console: Console) -> int:
    # every argument is checked before anything is written
    shard = None if args.shard is None else parse_shard(args.shard)
    overrides = Overrides(steps=parse_positive("--steps", args.steps),
                          methods=parse_methods(args.methods),
                          threads=parse_positive("--threads", args.threads))
    suite = load_suite(args.suite)
    if overrides:
        suite = apply_overrides(suite, overrides)
    if shard is not None and shard.count > len(suite.runs()):
        total = len(suite.runs())
        raise ValueError(f"--shard {shard}: suite {suite.name} has {total} run(s), so shard "
                         f"{shard.index} of {shard.count} would hold none; use at most {total} "
                         f"shard(s) (i/n with 1 <= i <= n <= {total})")
    out = output_directory(args.out or Path("results") / suite.name, "--out")
    records = _run(suite, out, console, fresh=args.fresh, shard=shard)
    _print_tables(console, summarize(records, suite.as_dict()))
    console.print(f"report: {write_report(out)}")
    if shard is not None:
        console.print(f"shard {shard} done; when every shard is, merge their reports: stochopt "
                      f"report DIR1 DIR2 ... --out DIR")
    return 0


def _list(args: argparse.Namespace, console: Console) -> int:
    from stochopt.tasks import TASKS
    from stochopt_bench.methods import OPTIMIZERS
    from stochopt_bench.reproductions import REPRODUCTIONS

    tasks = Table(title="tasks")
    for column in ("name", "description", "metric (target)", "default steps"):
        tasks.add_column(column)
    for name, task in TASKS.items():
        direction = ">=" if task.metric.higher_is_better else "<="
        tasks.add_row(name, task.description, f"{task.metric.name} {direction} "
                      f"{task.metric.target:g}", str(task.default_steps))
    console.print(tasks)
    console.print("[bold]optimizers:[/] " + ", ".join(OPTIMIZERS))
    console.print("[bold]suites:[/] " + ", ".join(BUILTIN_SUITES))
    console.print("[bold]reproductions:[/] " + ", ".join(
        f"{name} ({r.authors()})" for name, r in REPRODUCTIONS.items()))
    return 0


def _report(args: argparse.Namespace, console: Console) -> int:
    from stochopt_bench.report import _build

    directories = args.directories
    if len(directories) > 1 and args.out is None:
        raise ValueError(f"--out is required to merge {len(directories)} results directories "
                         f"(the merged report and figures go there): stochopt report "
                         f"{' '.join(map(str, directories))} --out DIR")
    warn = logging.getLogger("stochopt_bench").warning
    path, records, suite, missing = _build(directories, args.out or directories[0], warn)
    if missing:
        warn(f"{len(missing)} of the suite's runs have no record (listed in {path}); run "
             f"`stochopt bench` again to finish them, or merge every shard's directory")
    _print_tables(console, summarize(records, suite))
    console.print(f"report: {path}")
    return 0


def _record_file(path: Path) -> Path:
    """``--record FILE``, checked before the reproduction runs: a file (or a new one in a
    directory that can be made) that can be read and written."""
    if path.exists() and not path.is_file():
        raise ValueError(f"--record {path}: is not a file")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ValueError(f"--record {path}: cannot be read and written (permission denied)")
    output_directory(path.parent, "--record")
    return path


def _reproduce(args: argparse.Namespace, console: Console) -> int:
    from stochopt_bench.reproductions import REPRODUCTIONS, record_section
    from stochopt_bench.runner import environment

    if args.name not in REPRODUCTIONS:
        print(f"stochopt: error: unknown reproduction {args.name!r}; available: "
              f"{', '.join(REPRODUCTIONS)}", file=sys.stderr)
        return 2
    repro = REPRODUCTIONS[args.name]
    out = output_directory(args.out or Path("results") / f"reproduce-{repro.name}", "--out")
    if args.record:
        _record_file(args.record)
    figures: list[Path] = []

    def execute(suite: Suite) -> list[dict[str, Any]]:
        directory = out / suite.name
        records = _run(suite, directory, console)
        write_report(directory)
        figures.extend(sorted(directory.glob("*.png")))
        return records

    outcome = repro.run(execute, out)
    _print_tables(console, outcome.rows)
    verdict = outcome.verdict
    console.print(f"[bold]Claim:[/] {repro.claim}\n[bold]Measurement:[/]\n{verdict.measurement}"
                  f"\n[bold]Verdict:[/] {verdict.verdict}\nfigures: "
                  + ", ".join(str(f) for f in figures))
    if args.record:
        env = environment()
        provenance = (f"Measured by `stochopt reproduce {repro.name}` on "
                      f"{env['machine']['processor']} ({env['machine']['logical_cpus']} logical "
                      f"CPUs), stochopt {env['versions']['stochopt']}, torch "
                      f"{env['versions']['torch']}, Python {env['versions']['python']}.")
        record_section(args.record, repro, verdict, figures if repro.figures else [],
                       provenance)
        console.print(f"recorded in {args.record}")
    return 0


def _reproductions_listed() -> str:
    """The reproductions, each with its paper and expected run time, for ``reproduce --help``."""
    from stochopt_bench.reproductions import REPRODUCTIONS

    width = max(map(len, REPRODUCTIONS))
    lines = [f"  {name:<{width}}  {r.expected_time():<16}  {r.authors()}"
             for name, r in REPRODUCTIONS.items()]
    return "reproductions (expected run time on a 2-core CPU):\n" + "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stochopt", description="Benchmark and reproduce stochastic optimization methods.")
    parser.add_argument("--version", action="version",
                        version=f"stochopt {stochopt.__version__} (torch {torch.__version__}, "
                                f"Python {platform.python_version()})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = commands.add_parser("bench", help="run a suite and report it",
                                description="Run a suite (tasks x methods x seeds); results, "
                                            "report and figures go to the output directory; an "
                                            "interrupted suite resumes where it stopped.")
    bench.add_argument("suite", nargs="?", default="default",
                       help=f"built-in suite ({', '.join(BUILTIN_SUITES)}) or a .toml/.yaml file")
    bench.add_argument("--out", type=Path, help="results directory (default results/<suite>)")
    bench.add_argument("--fresh", action="store_true",
                       help="delete the suite's records already in the results directory and "
                            "run everything again (default: resume)")
    bench.add_argument("--shard", metavar="I/N",
                       help="run only shard I of N (1 <= I <= N): a deterministic share of the "
                            "runs, each run in exactly one shard; merge the shards' directories "
                            "with stochopt report DIR1 DIR2 ... --out DIR")
    bench.add_argument("--steps", metavar="N", help="steps of every task's runs (overrides the "
                                                    "suite's)")
    bench.add_argument("--methods", metavar="A,B",
                       help="run only these methods of the suite (labels, comma-separated)")
    bench.add_argument("--threads", metavar="N", help="torch threads during the runs "
                                                      "(default: torch's choice)")
    bench.set_defaults(handler=_bench)
    listing = commands.add_parser("list", help="list tasks, optimizers, suites, reproductions")
    listing.set_defaults(handler=_list)
    report = commands.add_parser(
        "report", help="rebuild the report of a results directory, or merge several",
        description="Rebuild report.md and the figures from run records. Several directories "
                    "(the shards of a suite) are merged into one report in --out, if they "
                    "hold the same suite with the same --steps, --methods and --threads.")
    report.add_argument("directories", type=Path, nargs="+", metavar="DIR")
    report.add_argument("--out", type=Path,
                        help="where the report goes (required with several directories; "
                             "default: the one directory)")
    report.set_defaults(handler=_report)
    reproduce = commands.add_parser(
        "reproduce", help="run a paper's reproduction",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a paper's claim at small scale: claim, measurement, verdict, figures.",
        epilog=_reproductions_listed())
    reproduce.add_argument("name")
    reproduce.add_argument("--out", type=Path, help="default results/reproduce-<name>")
    reproduce.add_argument("--record", type=Path, metavar="FILE",
                           help="rewrite this reproduction's section of FILE "
                                "(e.g. docs/reproductions.md)")
    reproduce.set_defaults(handler=_reproduce)
    from stochopt_bench.bo_cli import add_parser

    add_parser(commands)
    return parser


class _Warnings(logging.Handler):
    """The harness's logged warnings (damaged records moved aside, ...) as
    ``stochopt: warning: ...`` lines on the current ``sys.stderr`` (which the progress bars
    redirect above themselves)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"stochopt: warning: {record.getMessage()}", file=sys.stderr)


def _show_warnings() -> None:
    logger = logging.getLogger("stochopt_bench")
    if not any(isinstance(h, _Warnings) for h in logger.handlers):
        logger.addHandler(_Warnings(logging.WARNING))


#: the width of output that is not a terminal (a file, a pipe): wide enough that no table
#: is cut or wrapped
_UNLIMITED = 10_000


def _console() -> Console:
    """Rich's console on stdout; where stdout is not a terminal, tables print at full width
    instead of being cut to 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=_UNLIMITED)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a mistake, with one line on
    stderr)."""
    args = _parser().parse_args(argv)
    console = _console()
    _show_warnings()
    try:
        return args.handler(args, console)
    except (StochoptError, ValueError, TypeError, OSError) as error:
        message = " ".join(str(error).splitlines())  # one line, whatever raised it
        print(f"stochopt: error: {message or type(error).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stochopt: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
