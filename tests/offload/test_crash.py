"""A run killed (SIGKILL) in the middle of a step, or while committing it, resumes from its
directory at the last completed step and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stochopt.optim import AdamW
from tests.offload.crash_worker import make_params, train

STEPS = 8
ROOT = Path(__file__).resolve().parents[2]


def _worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.offload.crash_worker", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kill", ["write:40", "sync:8"])  # both in step 3: mid-write, commit
def test_killed_run_resumes_without_loss(tmp_path: Path, kill: str) -> None:
    params = make_params()
    reference = AdamW(params, lr=1e-2)
    train(reference, params, 0, STEPS)
    directory, out = tmp_path / "state", tmp_path / "out.pt"
    directory.mkdir()
    killed = _worker(str(directory), str(STEPS), str(out), "--kill", kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    resumed = _worker(str(directory), str(STEPS), str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    result = torch.load(out, weights_only=True)
    assert 0 < result["resumed_from"] < STEPS  # it did stop part-way
    for p, q in zip(result["params"], params):
        assert torch.equal(p, q.detach())
    expected = reference.state_dict()["state"]
    for k, state in result["state"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, expected[k][name]), (k, name)
