"""The results directory: one JSON file per run, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["load_runs", "read_json", "run_path", "write_json_atomic", "write_text_atomic"]


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either the old or the new file, never a partial
    one: write a temporary file in the same directory, fsync it, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """:func:`write_text_atomic` of ``data`` as JSON."""
    write_text_atomic(path, json.dumps(data, indent=1))


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def run_path(directory: Path, task: str, label: str, seed: int) -> Path:
    return directory / "runs" / f"{task}__{label}__seed{seed}.json"


def load_runs(directory: Path) -> list[dict[str, Any]]:
    """Every finished run record under ``directory/runs`` (partial temporaries are ignored)."""
    runs_dir = directory / "runs"
    if not runs_dir.is_dir():
        return []
    return [read_json(p) for p in sorted(runs_dir.glob("*.json"))]
