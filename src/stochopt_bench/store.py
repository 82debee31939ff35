"""The results directory: one JSON file per run, written atomically, read back defensively.

A run record that cannot be read back (not JSON, truncated, missing or mistyped entries, or
another run's) raises :class:`~stochopt.errors.DamagedFileError` naming the file and what is
wrong; :func:`load_runs` reports such records and leaves them out, and the runner moves them
aside (:func:`set_aside`) and repeats their runs.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stochopt._io import damaged, require_fields, write_text_atomic
from stochopt._io import read_json as _read_json
from stochopt.errors import DamagedFileError

__all__ = ["RECORD", "check_record", "load_runs", "output_directory", "read_json", "read_record",
           "run_path", "scan_runs", "set_aside", "write_json_atomic", "write_text_atomic"]

#: what a run record is called in messages
RECORD = "run record"
#: how a damaged record found by the report is recovered
REPORT_RECOVER = ("it is left out of the report; run the suite again (stochopt bench) to "
                  "repeat its run, or delete the file")

_log = logging.getLogger(__name__)
_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))
#: the entries of a record (schema 2) with their types, as :func:`stochopt_bench.runner.run_one`
#: writes them; nested tables below
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "schema": int, "complete": bool, "task": str, "task_name": str,
    "batch_size": (int, type(None)), "steps": int, "grad_norm_l2": list, "grad_norm_l1": list,
    "method": dict, "seed": int, "versions": dict, "machine": dict, "curve": list,
    "diverged": bool, "summary": dict, "step_time": dict, "train_time": _NUMBER,
    "params": int, "state_bytes": int, "state_bytes_per_param": _NUMBER,
}
_NESTED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "method": {"label": str, "optimizer": str, "lr": (int, float, dict), "options": dict},
    "summary": {"metric": str, "higher_is_better": bool, "target": _NUMBER, "final": _NUMBER,
                "best": _NUMBER, "steps_to_target": (int, type(None)),
                "time_to_target": _OPTIONAL_NUMBER},
    "step_time": {"median": _NUMBER, "mean": _NUMBER, "first": _NUMBER},
    "versions": {"stochopt": str, "torch": str, "numpy": str, "python": str},
    "machine": {"platform": str, "processor": str, "logical_cpus": (int, type(None)),
                "torch_threads": int},
}

#: entries a curve point may have, checked where present (records made before them lack them)
_OPTIONAL_POINT: dict[str, type | tuple[type, ...]] = {"win_rate": _NUMBER}


def write_json_atomic(path: Path, data: Any) -> None:
    """:func:`write_text_atomic` of ``data`` as JSON."""
    write_text_atomic(path, json.dumps(data, indent=1))


def read_json(path: Path, *, what: str = "JSON file",
              recover: str = "delete it and run again") -> Any:
    """The JSON object (a dict) in ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DamagedFileError: the file is not JSON, is truncated, or holds something else than an
            object; the message names the file and ``recover``.
    """
    return _read_json(path, what=what, recover=recover)


def run_path(directory: Path, task: str, label: str, seed: int) -> Path:
    return directory / "runs" / f"{task}__{label}__seed{seed}.json"


def check_record(record: Mapping[str, Any], path: Path | str,
                 recover: str = REPORT_RECOVER) -> None:
    """Check that ``record`` (read from ``path``) has every entry a run record has, with its
    type: the configuration, the summary, the step times, the versions and machine, and a
    non-empty curve whose points give the step, the time, ``val_loss`` and the metric (and,
    where they hold one, a numeric ``win_rate``).

    Raises:
        DamagedFileError: naming ``path``, the first missing or mistyped entry and ``recover``.
    """
    require_fields(record, path, RECORD, recover, **_FIELDS)
    for key, fields in _NESTED.items():
        _check_table(record[key], path, key, fields, recover)
    curve, metric = record["curve"], record["summary"]["metric"]
    if not curve:
        raise damaged(path, RECORD, "its 'curve' entry is empty", recover)
    point_fields = {"step": int, "time": _NUMBER, "val_loss": _NUMBER, metric: _NUMBER}
    for i, point in enumerate(curve):
        if not isinstance(point, dict):
            raise damaged(path, RECORD, f"its 'curve[{i}]' entry is not a table", recover)
        present = {key: types for key, types in _OPTIONAL_POINT.items() if key in point}
        _check_table(point, path, f"curve[{i}]", {**point_fields, **present}, recover)
    for key in ("grad_norm_l2", "grad_norm_l1"):
        if not all(isinstance(v, numbers.Real) for v in record[key]):
            raise damaged(path, RECORD, f"its {key!r} entry holds a value that is not a "
                          f"number", recover)


def _check_table(table: Mapping[str, Any], path: Path | str, where: str,
                 fields: dict[str, type | tuple[type, ...]], recover: str) -> None:
    """:func:`require_fields` on a nested table, naming its entries ``where.key``."""
    flat = {f"{where}.{key}": value for key, value in table.items()}
    require_fields(flat, path, RECORD, recover,
                   **{f"{where}.{key}": types for key, types in fields.items()})


def read_record(path: Path, recover: str = REPORT_RECOVER) -> dict[str, Any]:
    """The run record at ``path``, checked with :func:`check_record`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DamagedFileError: the record cannot be read back; the message names the file, what is
            wrong and ``recover``.
    """
    record = _read_json(path, what=RECORD, recover=recover)
    check_record(record, path, recover)
    return record


def set_aside(path: Path, suffix: str = "damaged") -> Path:
    """Move ``path`` out of the way as ``<name>.<suffix>`` (numbered if taken), where no
    reader of records looks; returns where it went. Nothing is deleted."""
    target, n = path.with_name(f"{path.name}.{suffix}"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{suffix}{n}")
    path.rename(target)
    return target


def scan_runs(directory: Path) -> tuple[list[dict[str, Any]], list[DamagedFileError]]:
    """The readable run records under ``directory/runs`` (partial temporaries are ignored),
    and an error for each record that cannot be read back."""
    runs_dir = Path(directory) / "runs"
    if not runs_dir.is_dir():
        return [], []
    records, errors = [], []
    for path in sorted(runs_dir.glob("*.json")):
        try:
            records.append(read_record(path))
        except DamagedFileError as error:
            errors.append(error)
    return records, errors


def load_runs(directory: Path,
              say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every readable run record under ``directory/runs``; each damaged one is reported
    through ``say`` (default: a logged warning) and left out."""
    records, errors = scan_runs(directory)
    for error in errors:
        (say or _log.warning)(str(error))
    return records


def output_directory(path: Path, flag: str) -> Path:
    """``path`` as an output directory, created if missing; a ``ValueError`` naming ``flag``
    if it is a file, cannot be created or cannot be written."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: is a file, not a directory; pass a directory (it is "
                         f"created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot be created ({error.strerror or error})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: cannot be written (permission denied); pass a "
                         f"directory you can write to")
    return path
