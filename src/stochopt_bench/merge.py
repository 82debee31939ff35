"""The run records of one study, gathered from one results directory or merged from several
(the shards of a suite run on several machines, or in parallel on one).

Directories are merged only when they hold the same study: their ``suite.json`` files give the
same suite with the same overrides (``--steps``, ``--methods``, ``--threads``); otherwise the
merge is refused, naming the two directories and the first setting that differs. A run with a
record in two directories is refused too (naming both files): shards of different counts
overlap. A run of the suite with no record anywhere is listed as missing (the report says
so); a record made with another configuration than the suite's (left over from an edit of the
suite) is reported and left out. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stochopt._checks import show
from stochopt.errors import DamagedFileError
from stochopt_bench.runner import differences
from stochopt_bench.store import run_path, scan_runs
from stochopt_bench.suite import SUITE_FILE, Suite, read_suite_file

__all__ = ["Gathered", "gather"]

#: how many runs a message lists before it says "and N more"
_LISTED = 3


@dataclass(frozen=True)
class Gathered:
    """What :func:`gather` found."""

    records: list[dict[str, Any]]  # in the order of the directories and their files
    suite: Suite | None  # None: one directory without a readable suite.json
    missing: list[str]  # the suite's runs without a record, as "task / method / seed N"
    sources: list[tuple[Path, int]]  # each directory with the number of records it gave


def gather(directories: Sequence[Path], say: Callable[[str], None]) -> Gathered:
    """The records of the study in ``directories`` (one or more results directories).

    Damaged records, and a damaged ``suite.json`` of a single directory, are reported through
    ``say`` and left out (several directories each need a readable ``suite.json``).

    Raises:
        TypeError, ValueError: ``directories`` is empty, not paths, or names one twice.
        NotADirectoryError: a directory does not exist or is a file.
        FileNotFoundError: no directory holds a run record; or, merging, one has no
            ``suite.json``.
        DamagedFileError: every record is damaged; or, merging, a ``suite.json`` is.
        ValueError: the directories hold different studies, or the same run.
    """
    paths = _check_directories(directories)
    found = [(path, *scan_runs(path)) for path in paths]
    for _, _, errors in found:
        for error in errors:
            say(str(error))
    if not any(records for _, records, _ in found):
        _no_records(paths, [e for _, _, errors in found for e in errors])
    suite = _one_suite(paths, say)
    records, sources = _unique(found, suite, say)
    return Gathered(records, suite, _missing(records, suite), sources)


def _check_directories(directories: Any) -> list[Path]:
    if isinstance(directories, str | Path) or not isinstance(directories, Sequence) \
            or not directories:
        raise TypeError(f"directories must be a non-empty list of results directories, got "
                        f"{show(directories)}")
    paths, seen = [], {}
    for given in directories:
        if not isinstance(given, str | Path):
            raise TypeError(f"directories: each must be a path, got {show(given)}")
        path = Path(given)
        if not path.is_dir():
            problem = "does not exist" if not path.exists() else "is not a directory"
            raise NotADirectoryError(f"results directory {path} {problem}")
        key = path.resolve()
        if key in seen:
            also = "" if str(seen[key]) == str(path) else f" (as {seen[key]} too)"
            raise ValueError(f"results directory {path} is given twice{also}; give each "
                             f"directory once")
        seen[key] = path
        paths.append(path)
    return paths


def _no_records(paths: list[Path], errors: list[DamagedFileError]) -> None:
    where = ", ".join(str(p / "runs") for p in paths)
    if errors:
        names = ", ".join(str(e.path) for e in errors)
        raise DamagedFileError(paths[0], f"no readable run records in {where}: every record "
                                         f"is damaged ({names}); run the suite again to "
                                         f"repeat them")
    raise FileNotFoundError(f"no run records in {where}; run a suite first")


def _one_suite(paths: list[Path], say: Callable[[str], None]) -> Suite | None:
    """The study the directories hold: the one ``suite.json`` they all give."""
    if len(paths) == 1:
        if not (paths[0] / SUITE_FILE).exists():
            return None
        try:
            return read_suite_file(paths[0] / SUITE_FILE, "the report does without it (suite "
                                   "order, title); delete it, and the next run of the suite "
                                   "writes it again")
        except DamagedFileError as error:
            say(str(error))
            return None
    recover = ("run `stochopt bench` on that directory again (it rewrites it and resumes), or "
               "leave the directory out of the merge")
    suites = []
    for path in paths:
        if not (path / SUITE_FILE).exists():
            raise FileNotFoundError(f"cannot merge results directory {path}: it has no "
                                    f"{SUITE_FILE}, so the suite and settings of its runs are "
                                    f"unknown; {recover}")
        suites.append(read_suite_file(path / SUITE_FILE, recover))
    first = suites[0].as_dict()
    for path, suite in zip(paths[1:], suites[1:], strict=True):
        difference = _first_difference(first, suite.as_dict(), "")
        if difference:
            key, a, b = difference
            raise ValueError(f"cannot merge results directories {paths[0]} and {path}: they "
                             f"hold different studies ({key}: {show(a, 40)} in {paths[0]}, "
                             f"{show(b, 40)} in {path}); merge only directories of the same "
                             f"suite run with the same --steps, --methods and --threads")
    return suites[0]


_ABSENT = "(absent)"


def _first_difference(a: Any, b: Any, where: str) -> tuple[str, Any, Any] | None:
    """The first key at which two JSON values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            found = _first_difference(a.get(key, _ABSENT), b.get(key, _ABSENT),
                                      f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else (where or "suite", a, b)


def _unique(found: list[tuple[Path, list[dict[str, Any]], Any]], suite: Suite | None,
            say: Callable[[str], None]) -> tuple[list[dict[str, Any]], list[tuple[Path, int]]]:
    """Every record once (a run in two directories is refused), less those made with
    another configuration than the suite's (reported)."""
    runs = {} if suite is None else {(t.label, m.label): (t, m) for t, m, _ in suite.runs()}
    where: dict[tuple[str, str, int], Path] = {}
    duplicates, records, sources = [], [], []
    for directory, held, _ in found:
        used = 0
        for record in held:
            key = (record["task"], record["method"]["label"], record["seed"])
            path = run_path(directory, *key)
            if key in where:
                duplicates.append(f"{' / '.join(map(str, key[:2]))} / seed {key[2]} in "
                                  f"{where[key].parent.parent} and {directory}")
                continue
            where[key] = path
            if key[:2] in runs and (changed := differences(record, *runs[key[:2]])):
                say(f"run record {path} was made with another configuration than the suite's "
                    f"({'; '.join(changed)}); it is left out of the report; run `stochopt "
                    f"bench` on {directory} again to repeat its run")
                continue
            records.append(record)
            used += 1
        sources.append((directory, used))
    if duplicates:
        more = len(duplicates) - _LISTED
        raise ValueError(f"cannot merge: {len(duplicates)} run(s) have a record in two "
                         f"directories ({'; '.join(duplicates[:_LISTED])}"
                         f"{f'; and {more} more' if more > 0 else ''}); shards of the same "
                         f"suite with different counts overlap: merge the shards of one "
                         f"count, or move one of each run's records (runs/<task>__<method>"
                         f"__seed<N>.json) out of its directory")
    return records, sources


def _missing(records: list[dict[str, Any]], suite: Suite | None) -> list[str]:
    if suite is None:
        return []
    held = {(r["task"], r["method"]["label"], r["seed"]) for r in records}
    return [f"{t.label} / {m.label} / seed {s}" for t, m, s in suite.runs()
            if (t.label, m.label, s) not in held]
