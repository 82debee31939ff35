"""The README's example runs as written and its links resolve; the scaling-out command of the
documentation (docs/guide/distributed.md) runs, shortened to a few steps. The examples of the
documentation site's pages run in tests/test_docs.py."""

from __future__ import annotations

import os
import re
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


def _readme_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)


def test_the_readme_example_runs() -> None:
    # the README keeps one short example; the rest of the examples live on the documentation
    # site's pages, which tests/test_docs.py runs
    blocks = _readme_blocks()
    assert blocks, "the README has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    opt = namespace["opt"]
    assert all(int(s["step"]) == 8 for s in opt.state.values())


def _slug(heading: str) -> str:
    """GitHub's (and MkDocs') anchor of a Markdown heading."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"\s", "-", text)


def test_the_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert any(link.startswith("docs/guide/") for link in local)
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else ROOT / "README.md"
        assert target.is_file(), f"README links to {link}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), re.MULTILINE)
            slugs = {_slug(h) for h in headings}
            assert anchor in slugs, f"README links to {link}, which has no such heading"
