"""Mutation check: apply each curated plausible bug to a copy of the source, run the tests that
should catch it, and fail if any mutant survives.

    python benchmarks/mutants/run.py              # every mutant; writes docs/mutants.md
    python benchmarks/mutants/run.py --list       # the catalog (and whether it still applies)
    python benchmarks/mutants/run.py --only ID... # some mutants; prints, writes no report
    python benchmarks/mutants/run.py -j 2         # two mutants at a time

The catalog is ``benchmarks/mutants/catalog.py``. Each mutant's snippet must occur exactly
once in its file: a missing or ambiguous snippet stops the run before anything is tested (the
list cannot go stale silently). The source tree is never modified: ``src/`` is copied once into
a temporary directory (a snapshot, so edits made meanwhile do not mix in), each mutant gets its
own copy of that snapshot, and pytest runs from the repository root with the copy first on
``PYTHONPATH``; a small plugin checks that ``stochopt`` really was imported from the copy (the
virtual environment installs the project in editable mode, pointing at ``src/``). Each
selection of tests is first run on the unmutated snapshot: it must pass, else its mutants are
not run and the check fails.

Exit status: 0 every mutant killed; 1 a mutant survived, timed out or errored, or a baseline
failed; 2 a stale catalog or bad usage. Standard library only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.util
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PACKAGE = "stochopt"
REPORT = ROOT / "docs" / "mutants.md"
GUARD_MODULE = "_stochopt_mutant_guard"
GUARD_EXIT = 17  # pytest's own exit codes are 0 to 5
GUARD_SOURCE = f'''\
"""Loaded by the mutation runner (-p {GUARD_MODULE}): refuse to test anything but the copy."""

import os

import pytest


def pytest_sessionstart(session):
    import stochopt

    expected = os.path.realpath(os.environ["STOCHOPT_MUTANT_SRC"])
    actual = os.path.realpath(os.path.dirname(stochopt.__file__))
    if actual != expected:
        pytest.exit(f"mutants: stochopt was imported from {{actual}}, not from the copy "
                    f"{{expected}}", returncode={GUARD_EXIT})
'''

KILLED, SURVIVED, TIMEOUT, ERROR, NOT_RUN = "killed", "survived", "timeout", "error", "not run"


class StaleMutationError(ValueError):
    """A mutant's snippet does not occur exactly once in its file."""


def load_module(path: Path, name: str) -> ModuleType:
    """Import a Python file by path (``benchmarks/`` is not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def load_catalog(path: Path = HERE / "catalog.py") -> tuple[Any, ...]:
    """The curated mutants of ``catalog.py``."""
    return tuple(load_module(path, "stochopt_mutant_catalog").MUTANTS)


# ------------------------------------------------------------------------ applying mutations
def apply_mutation(text: str, original: str, replacement: str, where: str = "") -> str:
    """``text`` with the one occurrence of ``original`` replaced.

    Raises:
        StaleMutationError: ``original`` occurs zero times or more than once.
    """
    count = text.count(original)
    if count != 1:
        what = "does not occur" if count == 0 else f"occurs {count} times"
        raise StaleMutationError(
            f"{where}: the original snippet {what} (it must occur exactly once; update the "
            f"catalog entry to the current source, with enough context to be unique):\n"
            f"{textwrap.indent(original, '    | ')}")
    return text.replace(original, replacement, 1)


def check_catalog(mutants: Sequence[Any], src: Path, repo: Path = ROOT) -> list[str]:
    """Every problem of the catalog against the package sources under ``src`` and the tests
    under ``repo``: duplicate ids, missing files, snippets that do not occur exactly once,
    no-op replacements, test selections that name no existing file. Empty if it applies."""
    problems: list[str] = []
    seen: set[str] = set()
    for mutant in mutants:
        where = f"{mutant.id} ({mutant.file})"
        if mutant.id in seen:
            problems.append(f"{mutant.id}: duplicate id")
        seen.add(mutant.id)
        if mutant.original == mutant.replacement:
            problems.append(f"{where}: the replacement equals the original")
        if not mutant.tests:
            problems.append(f"{where}: no tests selected")
        for selection in mutant.tests:
            if not (repo / selection.split("::")[0]).exists():
                problems.append(f"{where}: selected test {selection!r} does not exist")
        path = src / PACKAGE / mutant.file
        if not path.is_file():
            problems.append(f"{where}: no file {path}")
            continue
        try:
            apply_mutation(path.read_text(), mutant.original, mutant.replacement, where)
        except StaleMutationError as error:
            problems.append(str(error))
    return problems


def copy_source(src: Path, destination: Path) -> Path:
    """Copy the package directories of ``src`` (no caches, no egg-info) to ``destination``."""
    shutil.copytree(src, destination,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    return destination


def mutate_copy(base: Path, destination: Path, mutant: Any) -> Path:
    """A copy of the snapshot ``base`` (a ``src/`` directory) with ``mutant`` applied."""
    copy_source(base, destination)
    path = destination / PACKAGE / mutant.file
    path.write_text(apply_mutation(path.read_text(), mutant.original, mutant.replacement,
                                   f"{mutant.id} ({mutant.file})"))
    return destination


# ------------------------------------------------------------------------------ running tests
@dataclass(frozen=True)
class Selection:
    """The pytest arguments that choose a mutant's tests."""

    tests: tuple[str, ...]
    keyword: str | None

    @classmethod
    def of(cls, mutant: Any) -> Selection:
        return cls(tuple(mutant.tests), mutant.keyword)

    def args(self) -> list[str]:
        return [*self.tests, *(["-k", self.keyword] if self.keyword else [])]

    def label(self) -> str:
        return " ".join(self.tests) + (f" -k {self.keyword!r}" if self.keyword else "")


@dataclass
class Outcome:
    status: str  # KILLED, SURVIVED, TIMEOUT or ERROR (for a baseline: SURVIVED means passed)
    seconds: float
    detail: str  # the first failing test, the pytest summary line, or what went wrong
    log: str


def classify(returncode: int | None, timed_out: bool) -> str:
    """A mutant's status from its pytest exit code: 1 (a test failed) kills it, 0 (all
    passed) lets it survive; anything else (collection errors, no tests, the import guard)
    is an error of the check itself."""
    if timed_out:
        return TIMEOUT
    return {0: SURVIVED, 1: KILLED}.get(returncode, ERROR)


_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
_SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed|error).*?)\s*=*$", re.MULTILINE)


def first_failure(log: str) -> str:
    """The node id of the first failing test in a pytest log, or its summary line."""
    found = _FAILED.search(log)
    if found:
        return found.group(1)
    summaries = _SUMMARY.findall(log)
    return summaries[-1] if summaries else ""


def child_env(copy: Path, plugin_dir: Path, jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(copy), str(plugin_dir), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["STOCHOPT_MUTANT_SRC"] = str(copy / PACKAGE)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no caches in the repository's tests/
    return env


def run_pytest(selection: Selection, copy: Path, plugin_dir: Path, timeout: float,
               jobs: int, first_failure_stops: bool = True) -> Outcome:
    """pytest on ``selection`` from the repository root with ``copy`` first on the path."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-p", GUARD_MODULE, *(["-x"] if first_failure_stops else []), *selection.args()]
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=child_env(copy, plugin_dir, jobs),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # its own group: a timeout ends it all
    try:
        log, _ = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        log, _ = process.communicate()
        timed_out = True
    seconds = time.monotonic() - start
    if process.returncode == GUARD_EXIT:
        raise RuntimeError(f"the tests did not import the copy under test:\n{log[-2000:]}")
    status = classify(process.returncode, timed_out)
    detail = first_failure(log) if status != TIMEOUT else f"no result after {timeout:.0f} s"
    if status == ERROR:
        detail = f"pytest exit code {process.returncode}: {first_failure(log) or 'see log'}"
    return Outcome(status, seconds, detail, log)


def check_import(copy: Path, plugin_dir: Path) -> str:
    """Import ``stochopt`` as the tests will and return torch's version; raise unless the
    import resolves to ``copy``."""
    script = ("import os, stochopt, torch; "
              "print(os.path.realpath(os.path.dirname(stochopt.__file__))); "
              "print(torch.__version__)")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, env=child_env(copy, plugin_dir, 1), check=False)
    lines = result.stdout.split()
    expected = os.path.realpath(copy / PACKAGE)
    if result.returncode != 0 or len(lines) != 2 or lines[0] != expected:
        raise RuntimeError(f"stochopt does not import from the copy {expected}: "
                           f"{result.stdout}{result.stderr}")
    return lines[1]


# --------------------------------------------------------------------------------- reporting
@dataclass
class Result:
    mutant: Any
    outcome: Outcome


def machine() -> str:
    """The CPU model and count, the OS, Python."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{model}, {os.cpu_count()} CPUs; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_report(results: Sequence[Result], meta: dict[str, str]) -> str:
    """The markdown report: what ran where, counts per area, one row per mutant."""
    areas: dict[str, dict[str, int]] = {}
    for r in results:
        counts = areas.setdefault(r.mutant.file.split("/")[0], {})
        counts[r.outcome.status] = counts.get(r.outcome.status, 0) + 1
    statuses = (KILLED, SURVIVED, TIMEOUT, ERROR, NOT_RUN)
    lines = [
        "# Mutation check",
        "",
        "Generated by `make mutants` (`benchmarks/mutants/run.py`); do not edit by hand. Each",
        "row is a plausible bug from `benchmarks/mutants/catalog.py`, applied to a copy of",
        "`src/`; the tests named in the catalog must fail on it (*killed*). See CONTRIBUTING.md",
        "(\"Mutation check\") for when to run it and how to add a mutant.",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine']}",
        f"- torch {meta['torch']}; {meta['jobs']} job(s); total {meta['runtime']}",
        f"- Result: {meta['verdict']}",
        "",
        "| Area | " + " | ".join(statuses) + " | total |",
        "|---|" + "---:|" * (len(statuses) + 1),
    ]
    for area, counts in sorted(areas.items()):
        lines.append(f"| {area} | " + " | ".join(str(counts.get(s, 0)) for s in statuses)
                     + f" | {sum(counts.values())} |")
    total = {s: sum(c.get(s, 0) for c in areas.values()) for s in statuses}
    lines.append("| **all** | " + " | ".join(str(total[s]) for s in statuses)
                 + f" | {len(results)} |")
    lines += ["", "| ID | File | Plausible bug | Result | Failing test / detail | s |",
              "|---|---|---|---|---|---:|"]
    for r in results:
        status = r.outcome.status
        shown = f"**{status}**" if status != KILLED else status
        lines.append(f"| `{r.mutant.id}` | `{r.mutant.file}` | {_cell(r.mutant.description)} | "
                     f"{shown} | {_cell(r.outcome.detail)} | {r.outcome.seconds:.0f} |")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Apply curated plausible bugs to a copy of src/ and check that the tests "
                    "catch every one.")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the catalog and check it")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at a time (1)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant (default: 5x its baseline, at least 120)")
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown report (default docs/mutants.md for a full run, none "
                             "with --only)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"-j must be at least 1, got {args.jobs}")
    return args


def _print(*parts: Any) -> None:
    print(*parts, flush=True)


def list_catalog(mutants: Iterable[Any]) -> None:
    for m in mutants:
        keyword = f" -k {m.keyword!r}" if m.keyword else ""
        _print(f"{m.id:44} {m.file:26} {m.description}\n{'':44} tests: "
               f"{' '.join(m.tests)}{keyword}")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    catalog = load_catalog()
    chosen = list(catalog)
    if args.only:
        known = {m.id for m in catalog}
        unknown = [i for i in args.only if i not in known]
        if unknown:
            _print(f"mutants: no mutant {', '.join(unknown)} in the catalog (see --list)")
            return 2
        chosen = [m for m in catalog if m.id in set(args.only)]
    if args.list:
        list_catalog(chosen)
    problems = check_catalog(catalog, ROOT / "src")
    if problems:
        _print("mutants: the catalog no longer applies to the source:\n"
               + "\n".join(f"- {p}" for p in problems))
        return 2
    if args.list:
        _print(f"{len(chosen)} mutants; every snippet occurs exactly once")
        return 0
    output = args.output if args.output is not None else (None if args.only else REPORT)
    started = time.monotonic()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    work = Path(tempfile.mkdtemp(prefix="stochopt-mutants-"))
    try:
        results = _run(chosen, work, args)
    except RuntimeError as error:  # the tests would not have tested the copy
        _print(f"mutants: {error}")
        results = None
    finally:
        if args.keep:
            _print(f"mutants: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if results is None:
        return 2
    results, torch_version = results
    survivors = [r for r in results if r.outcome.status != KILLED]
    verdict = (f"all {len(results)} mutants killed" if not survivors else
               f"{len(survivors)} of {len(results)} mutants not killed: "
               + ", ".join(f"{r.mutant.id} ({r.outcome.status})" for r in survivors))
    meta = {"date": date, "machine": machine(), "torch": torch_version, "jobs": str(args.jobs),
            "runtime": _duration(time.monotonic() - started), "verdict": verdict}
    report = render_report(results, meta)
    if output is not None:
        write_atomic(output, report)
        _print(f"mutants: report written to {output}")
    _print(f"mutants: {verdict} ({meta['runtime']})")
    return 1 if survivors else 0


def _run(chosen: list[Any], work: Path, args: argparse.Namespace
         ) -> tuple[list[Result], str] | None:
    base = copy_source(ROOT / "src", work / "base" / "src")  # the snapshot every mutant copies
    problems = check_catalog(chosen, base)
    if problems:  # the source changed between the check and the snapshot
        _print("mutants: the catalog no longer applies to the snapshot:\n"
               + "\n".join(f"- {p}" for p in problems))
        return None
    plugin_dir = work / "plugin"
    plugin_dir.mkdir()
    (plugin_dir / f"{GUARD_MODULE}.py").write_text(GUARD_SOURCE)
    torch_version = check_import(base, plugin_dir)
    _print(f"mutants: snapshot of src/ in {base}; stochopt imports from the copy (torch "
           f"{torch_version})")

    selections = list(dict.fromkeys(Selection.of(m) for m in chosen))
    baselines: dict[Selection, Outcome] = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(run_pytest, s, base, plugin_dir, args.timeout or 1800.0,
                               args.jobs, False): s for s in selections}
        for future in concurrent.futures.as_completed(futures):
            selection, outcome = futures[future], future.result()
            baselines[selection] = outcome
            ok = outcome.status == SURVIVED  # every test passed
            _print(f"baseline {'passed' if ok else 'FAILED'} in {outcome.seconds:.0f} s "
                   f"({outcome.detail}): {selection.label()}")
            if not ok:
                _print(textwrap.indent(outcome.log[-3000:], "    "))

    lock = threading.Lock()
    done = [0]

    def one(mutant: Any) -> Result:
        baseline = baselines[Selection.of(mutant)]
        if baseline.status != SURVIVED:
            outcome = Outcome(NOT_RUN, 0.0, f"its tests fail unmutated ({baseline.detail})", "")
        else:
            copy = mutate_copy(base, work / "mutants" / mutant.id / "src", mutant)
            timeout = args.timeout or max(120.0, 5 * baseline.seconds)
            try:
                outcome = run_pytest(Selection.of(mutant), copy, plugin_dir, timeout, args.jobs)
            finally:
                if not args.keep:
                    shutil.rmtree(copy.parent, ignore_errors=True)
        with lock:
            done[0] += 1
            _print(f"[{done[0]:3d}/{len(chosen)}] {mutant.id}: {outcome.status} "
                   f"({outcome.seconds:.0f} s) {outcome.detail}")
            if outcome.status in (SURVIVED, ERROR):
                _print(textwrap.indent(outcome.log[-1500:], "    "))
        return Result(mutant, outcome)

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, chosen))
    return results, torch_version


if __name__ == "__main__":
    sys.exit(main())
