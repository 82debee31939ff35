"""PyTorch Lightning with SophiaG, SophiaH and AdaHessian: a plain ``LightningModule`` fails as
documented, ``CurvatureModuleMixin`` takes exactly the steps of the documented hand-written
loop (gradient accumulation and clipping included) and resumes from a checkpoint bit for bit."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from stochopt.errors import MissingCurvatureError
from stochopt.integrations.lightning import CurvatureModuleMixin
from tests.integrations.gpt2 import EncoderLM, tiny_gpt2, token_windows
from tests.integrations.test_transformers import OPTIMIZERS

ACCUMULATE = 2
pytestmark = [
    # raised inside Lightning 2.6's own code, by torch 2.13's pytree (not by stochopt)
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated"),
]


class PlainLM(L.LightningModule):
    """The tiny GPT-2 trained on its own cross-entropy; keeps every micro-batch's loss."""

    def __init__(self, optimizer: str) -> None:
        super().__init__()
        self.model = tiny_gpt2()
        self.optimizer = optimizer
        self.losses: list[float] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(**batch)
        self.losses.append(out.loss.item())
        return out.loss

    def configure_optimizers(self) -> Any:
        return OPTIMIZERS[self.optimizer](self.parameters())


class CurvatureLM(CurvatureModuleMixin, PlainLM):
    """The recipe: the forward under ``curvature_forward``, the logits recorded."""

    def __init__(self, optimizer: str, model: torch.nn.Module | None = None) -> None:
        super().__init__(optimizer)
        self.model = tiny_gpt2() if model is None else model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        with self.curvature_forward():
            out = self.model(**batch)
        self.record_logits(out["logits"])
        self.losses.append(out["loss"].item())
        return out["loss"]


class SaveAfter(L.Callback):
    """Save a checkpoint once, after optimizer step ``step`` (as ``ModelCheckpoint`` does)."""

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step and not self.path.exists():
            trainer.save_checkpoint(self.path)


def fit(module: PlainLM, max_steps: int, **kwargs: Any) -> L.Trainer:
    """Batches of 2 windows in order, 2 micro-batches a step, clipping at 1."""
    checkpoint = kwargs.pop("ckpt_path", None)
    trainer = L.Trainer(accelerator="cpu", max_steps=max_steps,
                        accumulate_grad_batches=ACCUMULATE, gradient_clip_val=1.0,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, **kwargs)
    trainer.fit(module, DataLoader(token_windows(), batch_size=2), ckpt_path=checkpoint)
    return trainer


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("name", ["SophiaG", "SophiaH"])
def test_plain_module_fails_as_documented(name: str) -> None:
    with pytest.raises(MissingCurvatureError, match=r"opt\.backward"):
        fit(PlainLM(name), max_steps=1)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_module_takes_the_steps_of_the_documented_loop(name: str) -> None:
    module = CurvatureLM(name)
    reference = copy.deepcopy(module.model)
    steps = 3  # curvature, plain, curvature
    fit(module, max_steps=steps)

    # by hand: each micro-batch's loss divided by the number of micro-batches, opt.backward
    # for every micro-batch of a curvature step (SophiaG: labels resampled on the first only),
    # clipping at 1, the step
    opt = OPTIMIZERS[name](reference.parameters())
    batches = list(DataLoader(token_windows(), batch_size=2))
    for step in range(steps):
        due = opt.curvature_due
        reference.zero_grad()
        for i, batch in enumerate(batches[ACCUMULATE * step % 4: ACCUMULATE * step % 4 + 2]):
            with opt.curvature_forward():
                out = reference(**batch)
            loss = out.loss / ACCUMULATE
            if due and (name != "SophiaG" or i == 0):
                opt.backward(loss, logits=out.logits)
            else:
                loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        opt.step()
    # the same operations in the same order: equal bit for bit
    expected, got = parameters(reference), parameters(module.model)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


@pytest.mark.parametrize("name", ["SophiaG", "SophiaH"])
def test_resume_from_checkpoint_reaches_the_same_loss(tmp_path: Path, name: str) -> None:
    # 2 steps an epoch: the checkpoint after step 2 ends an epoch; steps 3 (curvature),
    # 4 (plain) and 5 (curvature) run after the resume
    whole = CurvatureLM(name)
    saved = tmp_path / "step2.ckpt"
    fit(whole, max_steps=5, callbacks=[SaveAfter(2, saved)])
    assert "generator" in torch.load(saved, weights_only=False)["optimizer_states"][0]
    resumed = CurvatureLM(name)
    fit(resumed, max_steps=5, ckpt_path=str(saved))
    # same data, state and estimator draws, same operations: bit for bit
    assert resumed.losses == whole.losses[-len(resumed.losses):] and len(resumed.losses) == 6
    expected, got = parameters(whole), parameters(resumed)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_fused_attention_trains_through_curvature_forward() -> None:
    # nn.TransformerEncoderLayer's attention kernel has no double backward: the recipe's
    # forward runs under self.curvature_forward()
    module = CurvatureLM("SophiaH", EncoderLM())
    start = parameters(module)
    fit(module, max_steps=2)
    got = parameters(module)
    assert all(torch.isfinite(got[k]).all() and not torch.equal(got[k], start[k]) for k in got)


def test_sophia_g_without_recorded_logits_is_refused() -> None:
    module = CurvatureLM("SophiaG")
    module.record_logits = lambda logits: None  # type: ignore[method-assign]  # forgotten
    with pytest.raises(ValueError, match=r"self.record_logits\(logits\)"):
        fit(module, max_steps=1)
    assert module.losses and all(p.grad is None for p in module.parameters())
