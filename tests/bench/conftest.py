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
