"""Small suites for harness tests (seconds, not minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_SUITE = """
name = "tiny"
seeds = [0, 1]
tasks = [{ name = "rosenbrock", steps = 150 }, { name = "breast-cancer-logreg", steps = 60 }]

[methods.adamw]
optimizer = "AdamW"
lr = { rosenbrock = 5e-2, breast-cancer-logreg = 1e-2 }

[methods.torch-adam]
optimizer = "torch.Adam"
lr = 1e-2
"""


@pytest.fixture
def tiny_suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE)
    return path

#: the cheapest suite that runs: two 3-step runs on rosenbrock (milliseconds each)
MICRO_SUITE = {"name": "micro", "seeds": [0, 1], "tasks": [{"name": "rosenbrock", "steps": 3}],
               "methods": {"adamw": {"optimizer": "AdamW", "lr": 0.01}}}


@pytest.fixture(scope="session")
def micro_record() -> dict:
    """A genuine run record (seed 0 of :data:`MICRO_SUITE`)."""
    from stochopt_bench.runner import run_one
    from stochopt_bench.suite import parse_suite

    spec, method, seed = parse_suite(MICRO_SUITE).runs()[0]
    return run_one(spec, method, seed)
