"""The README's examples run as written: the scaling-out command (shortened to a few steps)
and the Python blocks that need nothing outside the library."""

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


def _readme_block(containing: str) -> str:
    """The README's one Python code block that contains ``containing``."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"{len(found)} README blocks contain {containing!r}"
    return found[0]


def test_the_readme_custom_optimizer_uses_public_api_and_runs() -> None:
    code = _readme_block("class SignSGD")
    assert not re.search(r"stochopt[\w.]*\._", code)  # only public names (no optim._hyper)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    import torch

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = namespace["SignSGD"]([w], lr=0.1)
    w.grad = torch.tensor([3.0, -0.5, 0.0])
    opt.step()
    assert torch.equal(w.detach(), torch.tensor([0.9, -1.9, 0.5]))


def test_the_readme_curvature_forward_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # as written, but torch.compile on its aot_eager backend: the same aot_autograd graphs
    # (no double backward, donated buffers) without inductor's C compile (about 30 s here)
    import functools

    import torch

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    namespace: dict = {}
    exec(compile(_readme_block("compiled = torch.compile(model)"), "README.md", "exec"),
         namespace)
    torch._dynamo.reset()
    opt = namespace["opt"]
    assert all(int(s["step"]) == 4 for s in opt.state.values())


def test_the_readme_torch_optim_example_runs() -> None:
    exec(compile(_readme_block("to_torch_state_dict"), "README.md", "exec"), {})



def test_the_readme_8bit_example_runs() -> None:
    import torch

    namespace: dict = {}
    exec(compile(_readme_block("percentile_clipping=5"), "README.md", "exec"), namespace)
    model, opt = namespace["model"], namespace["opt"]
    model(torch.tensor([[1, 2, 3]])).float().square().mean().backward()
    opt.step()
    assert opt.state[model[0].weight]["exp_avg"].dtype == torch.float32  # StableEmbedding
    assert opt.state[model[1].weight]["exp_avg"].dtype == torch.uint8  # 64000 values
