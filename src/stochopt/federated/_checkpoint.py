"""The simulator's checkpoint: written atomically (``torch.save`` to a temporary file, then
renamed), read defensively (a damaged file is named; settings that differ are listed)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import astuple
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from stochopt._io import damaged

if TYPE_CHECKING:
    from stochopt.federated.clock import Clock
    from stochopt.federated.server import Server
    from stochopt.federated.simulator import FederatedRun

__all__ = ["load_checkpoint", "save_checkpoint"]

FORMAT = 1
WHAT = "federated simulation checkpoint"
RECOVER = "delete it to start the run afresh"


def save_checkpoint(path: Path, settings: dict[str, Any], server: Server, clock: Clock,
                    record: FederatedRun) -> None:
    """Write the run's whole state so that a reader sees the old file or the new one."""
    state = {"format": FORMAT, "settings": settings, "server": server.state_dict(),
             "clock": clock.state_dict(), "history": record.history,
             "times": record.times,
             "aggregations": [astuple(a) for a in record.aggregations]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The state saved at ``path``, checked to come from a run with ``settings``.

    Raises:
        DamagedFileError: the file is not a checkpoint this simulator wrote (truncated, not
            a torch file, other fields).
        ValueError: it was written by a run with other settings (the message names them).
    """
    try:
        state = torch.load(path, weights_only=True)
    except Exception as error:  # torch raises many kinds for a truncated or foreign file
        raise damaged(path, WHAT, f"it cannot be read as a torch file ({type(error).__name__})",
                      RECOVER) from None
    keys = {"format", "settings", "server", "clock", "history", "times", "aggregations"}
    if not isinstance(state, dict) or not keys <= state.keys():
        raise damaged(path, WHAT, f"it lacks the fields {sorted(keys)}", RECOVER)
    if state["format"] != FORMAT:
        raise damaged(path, WHAT, f"its format is {state['format']!r}, expected {FORMAT}",
                      RECOVER)
    saved = state["settings"]
    if not isinstance(saved, dict):
        raise damaged(path, WHAT, "its settings are not a mapping", RECOVER)
    differ = sorted(k for k in settings if saved.get(k) != settings[k])
    if differ:
        shown = ", ".join(f"{k}: saved {_short(saved.get(k))}, now {_short(settings[k])}"
                          for k in differ)
        raise ValueError(f"Simulation.run: the checkpoint {path} holds another run ({shown}); "
                         f"give another checkpoint path or delete it to start afresh")
    if not (isinstance(state["history"], list) and isinstance(state["times"], list)
            and isinstance(state["aggregations"], list)
            and len(state["times"]) == len(state["aggregations"])):
        raise damaged(path, WHAT, "its history does not hold together", RECOVER)
    return state


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
