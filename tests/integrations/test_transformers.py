"""The Hugging Face ``Trainer`` with SophiaG, SophiaH and AdaHessian: the plain ``Trainer``
fails as documented, ``CurvatureTrainer`` takes exactly the steps of the documented hand-written
loop (gradient accumulation and clipping included) and resumes from a checkpoint bit for bit."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import Trainer, TrainingArguments

from stochopt.errors import MissingCurvatureError
from stochopt.integrations.transformers import CurvatureTrainer, CurvatureTrainerMixin
from stochopt.optim import AdaHessian, CurvatureOptimizer, SophiaG, SophiaH
from tests.integrations.gpt2 import EncoderLM, tiny_gpt2, token_windows

#: curvature every other step, so a run has curvature steps and plain ones
OPTIMIZERS: dict[str, Callable[[Any], CurvatureOptimizer]] = {
    "SophiaG": lambda params: SophiaG(params, lr=1e-2, update_period=2, seed=1),
    "SophiaH": lambda params: SophiaH(params, lr=1e-2, update_period=2, seed=1),
    "AdaHessian": lambda params: AdaHessian(params, lr=1e-2, update_period=2, seed=1),
}
ACCUMULATE = 2


def arguments(out: Path, **overrides: Any) -> TrainingArguments:
    """Batches of 2 windows, 2 micro-batches a step, clipping at 1 (the default), constant lr."""
    settings: dict[str, Any] = dict(
        per_device_train_batch_size=2, gradient_accumulation_steps=ACCUMULATE,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to=[],
        use_cpu=True, disable_tqdm=True, seed=0)
    return TrainingArguments(output_dir=str(out), **{**settings, **overrides})


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("name", ["SophiaG", "SophiaH"])
def test_plain_trainer_fails_as_documented(tmp_path: Path, name: str) -> None:
    # the Trainer calls loss.backward(): no logits for SophiaG, no gradient graph for SophiaH
    model = tiny_gpt2()
    trainer = Trainer(model=model, args=arguments(tmp_path, max_steps=1),
                      train_dataset=token_windows(),
                      optimizers=(OPTIMIZERS[name](model.parameters()), None))
    with pytest.raises(MissingCurvatureError, match=r"opt\.backward"):
        trainer.train()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_trainer_takes_the_steps_of_the_documented_loop(tmp_path: Path, name: str) -> None:
    model = tiny_gpt2()
    reference = copy.deepcopy(model)
    losses: list[tuple[dict[str, torch.Tensor], Any]] = []

    class Recording(CurvatureTrainer):
        """Records each micro-batch and the token count the Trainer divides its loss by."""

        def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            losses.append((dict(inputs), num_items_in_batch))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    steps = 3  # curvature, plain, curvature
    trainer = Recording(model=model, args=arguments(tmp_path, max_steps=steps),
                        train_dataset=token_windows(),
                        optimizers=(OPTIMIZERS[name](model.parameters()), None))
    trainer.train()
    assert len(losses) == ACCUMULATE * steps

    # by hand: the forward under opt.curvature_forward(), the Trainer's loss (GPT-2's
    # cross-entropy summed over a micro-batch, divided by the Trainer's token count of the
    # whole step), opt.backward for every micro-batch of a curvature step (SophiaG: labels
    # resampled on the first only), clipping at 1, the step
    opt = OPTIMIZERS[name](reference.parameters())
    for step in range(steps):
        due = opt.curvature_due
        reference.zero_grad()
        for i, (batch, tokens) in enumerate(losses[ACCUMULATE * step: ACCUMULATE * (step + 1)]):
            with opt.curvature_forward():
                out = reference(**batch, num_items_in_batch=tokens)
            if due and (name != "SophiaG" or i == 0):
                opt.backward(out.loss, logits=out.logits)
            else:
                out.loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
        opt.step()
    # the same operations in the same order: equal bit for bit
    expected, got = parameters(reference), parameters(model)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not torch.equal(got["transformer.h.0.mlp.c_fc.weight"],
                           parameters(tiny_gpt2())["transformer.h.0.mlp.c_fc.weight"])


@pytest.mark.parametrize("name", ["SophiaG", "SophiaH"])  # AdaHessian resumes as SophiaH
def test_resume_from_checkpoint_reaches_the_same_loss(tmp_path: Path, name: str) -> None:
    def train(out: Path, resume: Path | None = None) -> tuple[torch.nn.Module, dict[int, float]]:
        model = tiny_gpt2()
        args = arguments(out, max_steps=5, save_strategy="steps", save_steps=3)
        trainer = CurvatureTrainer(model=model, args=args, train_dataset=token_windows(),
                                   optimizers=(OPTIMIZERS[name](model.parameters()), None))
        trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
        losses = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
        return model, losses

    # 4 windows a step, 8 in an epoch: the checkpoint after step 3 is mid-epoch, and steps 4
    # (plain) and 5 (curvature) run after the resume
    whole, whole_losses = train(tmp_path / "whole")
    assert "generator" in torch.load(tmp_path / "whole" / "checkpoint-3" / "optimizer.pt")
    resumed, resumed_losses = train(tmp_path / "resumed", tmp_path / "whole" / "checkpoint-3")
    # same data, state and estimator draws, same operations: bit for bit
    assert [resumed_losses[s] for s in (4, 5)] == [whole_losses[s] for s in (4, 5)]
    expected, got = parameters(whole), parameters(resumed)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


@pytest.mark.parametrize("name", ["SophiaH", "AdaHessian"])
def test_fused_attention_trains_through_curvature_forward(tmp_path: Path, name: str) -> None:
    # nn.TransformerEncoderLayer's attention kernel has no double backward: the Trainer's
    # forward of a curvature step must run under opt.curvature_forward()
    model = EncoderLM()
    start = parameters(model)
    trainer = CurvatureTrainer(model=model, args=arguments(tmp_path, max_steps=2),
                               train_dataset=token_windows(),
                               optimizers=(OPTIMIZERS[name](model.parameters()), None))
    trainer.train()
    got = parameters(model)
    assert all(torch.isfinite(got[k]).all() and not torch.equal(got[k], start[k]) for k in got)


def test_curvature_logits_are_the_outputs_logits() -> None:
    logits = torch.zeros(2, 3)
    assert CurvatureTrainerMixin.curvature_logits(None, {"logits": logits}) is logits  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="override curvature_logits"):
        CurvatureTrainerMixin.curvature_logits(None, (torch.zeros(()), logits))  # type: ignore[arg-type]
