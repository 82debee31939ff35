"""The results directory: one JSON file per run, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stochopt._io import write_text_atomic

__all__ = ["load_runs", "read_json", "run_path", "write_json_atomic", "write_text_atomic"]


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
