"""The Trainer and Lightning examples of docs/guide/integrations.md run as written (shortened to
a few steps); tests/test_docs.py leaves that page to this test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "integrations.md"


def examples() -> list[str]:
    """The page's Python blocks that use stochopt.integrations, in order."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    return [b for b in blocks if "stochopt.integrations" in b]


# raised inside Lightning 2.6's own code, by torch 2.13's pytree (not by stochopt)
@pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated")
# the Trainer pins memory by default, which torch says is pointless on a machine without GPU
@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true")
# Lightning's notes on the set-up: no TensorBoard installed, a loader without workers, a
# run shorter than its logging interval
@pytest.mark.filterwarnings("ignore:Starting from v1.9.0, `tensorboardX` has been removed")
@pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning")
def test_readme_trainer_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = examples()
    assert len(blocks) == 2 and "CurvatureTrainer" in blocks[0]
    assert "CurvatureModuleMixin" in blocks[1]
    monkeypatch.chdir(tmp_path)  # the Trainer writes "out", Lightning "lightning_logs"
    namespace: dict[str, object] = {}
    for block in blocks:  # the second uses the first's model and dataset
        assert block.count("max_steps=20") == 1
        exec(block.replace("max_steps=20", "max_steps=2"), namespace)
    assert namespace["trainer"].state.global_step == 2  # type: ignore[attr-defined]
    assert (tmp_path / "out").is_dir()
