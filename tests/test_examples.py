"""The README's scaling-out command runs as written (shortened to a few steps)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("mode", "optimizer"), [("ddp", "adamw"), ("zero", "adagradnorm")])
def test_distributed_charlm_with_torchrun(tmp_path: Path, mode: str, optimizer: str) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node=2",
               "examples/distributed_charlm.py", "--mode", mode, "--optimizer", optimizer,
               "--steps", "4", "--checkpoint", str(tmp_path / "checkpoint")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step 4: train_loss" in done.stdout and f"(2 ranks, {mode}, {optimizer})" in done.stdout
    assert any((tmp_path / "checkpoint").iterdir())
