"""The offload manifest: which copy of each parameter's state files holds its last completed
step, written atomically after every step and read back, defensively, on resume.

``manifest.json`` records the format, the optimizer's class, whether fp32 master weights are
kept, and per parameter its committed copy (0 or 1), its step count and its layout (shape,
dtype and every stored tensor's name, dtype, size and byte offset). :func:`read_manifest`
checks all of it before anything is touched: a truncated, corrupt or incomplete manifest
raises :class:`~stochopt.errors.DamagedFileError` naming the file, what is wrong and how to
recover; :func:`check_state_files` does the same for the state files it points at.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stochopt._io import damaged, read_json, require_fields
from stochopt.offload.io import replace_durably

__all__ = ["FORMAT", "MANIFEST", "Manifest", "check_match", "check_state_files", "read_manifest",
           "write_manifest"]

MANIFEST = "manifest.json"
FORMAT = 1
OWNER = "DiskOffload"
WHAT = "offload manifest"
#: how to recover from a damaged directory, for messages
RECOVER = ("restore the directory from a backup, or start afresh: pass an empty directory (or "
           "delete this one's manifest.json and *.bin files) and construct DiskOffload without "
           "resume=True")


@dataclass(frozen=True)
class Manifest:
    """A manifest read back and checked for structure (not yet against an optimizer)."""

    path: Path
    optimizer: str
    master_weights: bool
    copies: list[int]
    steps: list[float]
    params: list[dict[str, Any]]  # each: shape, dtype, stored (as ParamLayout.describe())


def write_manifest(directory: Path, optimizer: str, master_weights: bool, copies: list[int],
                   steps: list[float], params: list[dict[str, object]]) -> None:
    """Replace ``directory``'s manifest atomically (a reader, or a power loss, leaves the old
    or the new one) and durably (the new one survives a power loss once this returns)."""
    manifest = {"format": FORMAT, "optimizer": optimizer, "master_weights": master_weights,
                "copies": copies, "steps": steps, "params": params}
    replace_durably(directory / MANIFEST, (json.dumps(manifest) + "\n").encode())


def read_manifest(directory: Path) -> Manifest:
    """``directory``'s manifest, checked entry by entry.

    Raises:
        FileNotFoundError: there is no manifest.
        DamagedFileError: it is not JSON, lacks an entry, or an entry has the wrong type, an
            impossible value or a length that differs from the number of parameters.
    """
    path = directory / MANIFEST
    data = read_json(path, what=WHAT, recover=RECOVER)
    require_fields(data, path, WHAT, RECOVER, format=int, optimizer=str, master_weights=bool,
                   copies=list, steps=list, params=list)
    if data["format"] != FORMAT:
        raise damaged(path, WHAT, f"it has format {data['format']}, this version of stochopt "
                      f"reads format {FORMAT}", RECOVER)
    n = len(data["params"])
    for key in ("copies", "steps"):
        if len(data[key]) != n:
            raise damaged(path, WHAT, f"its {key!r} entry has {len(data[key])} values for "
                          f"{n} parameters", RECOVER)
    for k, (copy, step) in enumerate(zip(data["copies"], data["steps"])):
        if type(copy) is not int or copy not in (0, 1):
            raise damaged(path, WHAT, f"copies[{k}] is {_short(copy)}, expected 0 or 1",
                          RECOVER)
        if not _is_real(step) or not _finite(step) or step < 0:
            raise damaged(path, WHAT, f"steps[{k}] is {_short(step)}, expected a finite "
                          f"number >= 0", RECOVER)
    for k, entry in enumerate(data["params"]):
        problem = _entry_problem(entry)
        if problem is not None:
            raise damaged(path, WHAT, f"params[{k}] {problem}", RECOVER)
    return Manifest(path, data["optimizer"], data["master_weights"], list(data["copies"]),
                    [float(s) for s in data["steps"]], data["params"])


def _entry_problem(entry: Any) -> str | None:
    """What is wrong with one parameter's entry, or None."""
    if not isinstance(entry, dict):
        return f"is {_short(entry)}, expected an object"
    for key in ("shape", "dtype", "stored"):
        if key not in entry:
            return f"has no {key!r} entry"
    shape, dtype, stored = entry["shape"], entry["dtype"], entry["stored"]
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        return f"has shape {_short(shape)}, expected a list of integers >= 0"
    if not isinstance(dtype, str):
        return f"has dtype {_short(dtype)}, expected a string"
    if not isinstance(stored, list):
        return f"has stored {_short(stored)}, expected a list"
    for i, item in enumerate(stored):
        well_formed = (isinstance(item, list) and len(item) == 4 and isinstance(item[0], str)
                       and isinstance(item[1], str) and _is_count(item[2])
                       and _is_count(item[3]))
        if not well_formed:
            return (f"has stored[{i}] {_short(item)}, expected [name, dtype, values, "
                    f"offset]")
    return None


def check_match(manifest: Manifest, directory: Path, optimizer: str, master_weights: bool,
                params: list[dict[str, object]]) -> None:
    """Refuse a manifest written for another optimizer class, other settings or other
    parameters (``params``: this optimizer's layouts, described), saying what differs.

    Raises:
        ValueError: naming the directory or the manifest, what differs and what to do.
    """
    where, n = f"directory {str(directory)!r}", len(manifest.params)
    counted = f"{n} parameter{'s' if n != 1 else ''}"
    fresh = "or pass another (empty) directory to start afresh"
    if manifest.optimizer != optimizer:
        raise ValueError(f"{OWNER}: {where} holds the state of {manifest.optimizer} ({counted}), "
                         f"not {optimizer}; resume it with {manifest.optimizer} over the same "
                         f"parameters, {fresh}")
    if manifest.master_weights != master_weights:
        raise ValueError(f"{OWNER}: {where} holds state written with master_weights="
                         f"{manifest.master_weights}, not {master_weights}; pass "
                         f"master_weights={manifest.master_weights} to resume it, {fresh}")
    if n != len(params):
        raise ValueError(f"{OWNER}: {where} holds the state of {counted} (its manifest "
                         f"{manifest.path} lists them), but this {optimizer} has {len(params)}; "
                         f"resume with the same parameters, {fresh}")
    for k, (entry, want) in enumerate(zip(manifest.params, params)):
        for key in ("shape", "dtype", "stored"):
            if entry[key] != want[key]:
                raise ValueError(
                    f"{OWNER}: parameter {k} has {key} {_short(want[key], 120)} here, but the "
                    f"manifest {manifest.path} records {_short(entry[key], 120)}; resume with the "
                    f"same parameters and settings (state_precision and the optimizer's flags "
                    f"decide what is stored), {fresh}")


def check_state_files(path_sizes: dict[Path, int], manifest: Path) -> None:
    """Each state file ``manifest`` points at exists, is a regular file, and has its size.

    Raises:
        DamagedFileError: naming the first file that does not.
    """
    for path, size in path_sizes.items():
        try:
            found = path.stat()
        except FileNotFoundError:
            raise damaged(path, "offload state file", f"it is missing (the manifest {manifest} "
                          f"lists it)", RECOVER) from None
        if not path.is_file():
            raise damaged(path, "offload state file", "it is not a regular file", RECOVER)
        if found.st_size != size:
            raise damaged(path, "offload state file", f"it has {found.st_size} bytes, the "
                          f"manifest {manifest} needs {size}", RECOVER)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond the floats
        return False


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _short(value: object, limit: int = 80) -> str:
    text = json.dumps(value) if _jsonable(value) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
