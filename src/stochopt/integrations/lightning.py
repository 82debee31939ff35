"""SophiaG, SophiaH and AdaHessian in PyTorch Lightning.

Lightning routes every backward pass, automatic or manual (``self.manual_backward(loss)``),
through the ``LightningModule.backward(loss)`` hook, with the loss already divided by
``accumulate_grad_batches``. :class:`CurvatureModuleMixin` overrides that hook: with a
curvature optimizer, the backward pass is the optimizer's ``backward`` (on curvature steps it
keeps the gradient graph, or resamples labels from the logits the module recorded with
:meth:`CurvatureModuleMixin.record_logits`); with any other optimizer it is Lightning's own.
The forward is the module's own ``training_step``: run it under
:meth:`CurvatureModuleMixin.curvature_forward` (the optimizer's ``curvature_forward()``:
attention on the math kernel and compiled code run eagerly on curvature steps, where the
estimator needs it), or a model with fused attention or ``torch.compile`` is refused at the
first step.
Micro-batches of an accumulated step share the estimate as
:class:`~stochopt.integrations._common.MicroBatchBackward` says. The rest is Lightning's:
``configure_optimizers``, gradient clipping, checkpoints (the optimizer's ``state_dict``
carries its estimator's random generator, so ``fit(ckpt_path=...)`` continues bit for bit).

Refused on the first step, with the fix named: ``precision="16-mixed"`` (its loss scaler would
scale the curvature estimate; use ``"bf16-mixed"``), SophiaH and AdaHessian on several
processes (DDP cannot keep gradient graphs through Lightning's backward), SophiaG on several
processes without ``process_group=`` (the replicas' estimates would differ), and more than one
curvature optimizer (the hook cannot tell which one a backward pass is for).

Example::

    import lightning as L
    import torch.nn.functional as F
    from stochopt.integrations.lightning import CurvatureModuleMixin
    from stochopt.optim import SophiaG

    class LitLM(CurvatureModuleMixin, L.LightningModule):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            with self.curvature_forward():   # math attention, eager, on curvature steps
                logits = self.model(batch["x"])
            self.record_logits(logits)       # SophiaG resamples labels from them
            return F.cross_entropy(logits.flatten(0, -2), batch["y"].flatten())

        def configure_optimizers(self):
            return SophiaG(self.parameters(), lr=3e-4)

    L.Trainer(max_steps=1000, accumulate_grad_batches=4).fit(LitLM(model), loader)
"""

from __future__ import annotations

import contextlib
from typing import Any

import lightning.pytorch as pl
from torch import Tensor

from stochopt.errors import UnsupportedError
from stochopt.integrations._common import (
    MicroBatchBackward,
    check_processes,
    curvature_optimizer,
    refuse_scaled_loss,
)
from stochopt.optim import CurvatureOptimizer

__all__ = ["CurvatureModuleMixin"]


class CurvatureModuleMixin:
    """Mix into a ``LightningModule`` (before it) to train with SophiaG, SophiaH or
    AdaHessian: ``class MyModule(CurvatureModuleMixin, L.LightningModule)``. In
    ``training_step``, run the forward under :meth:`curvature_forward`, and with SophiaG call
    :meth:`record_logits`. See the module docs."""

    trainer: pl.Trainer

    def curvature_forward(self) -> contextlib.AbstractContextManager[None]:
        """A context for the forward pass in ``training_step``: the curvature optimizer's
        ``curvature_forward()`` (on curvature steps, attention on the math kernel and compiled
        code run eagerly, where the estimator needs it; nothing on other steps), and nothing
        with any other optimizer."""
        opt = self._curvature_optimizer()
        return contextlib.nullcontext() if opt is None else opt.curvature_forward()

    def record_logits(self, logits: Tensor) -> None:
        """Keep the logits the next backward pass's loss is computed from, shape ``(..., V)``
        with their graph: SophiaG resamples labels from them on curvature steps. Other
        optimizers ignore them; they are released by the backward pass."""
        self.__dict__["_curvature_logits"] = logits

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Lightning's backward hook: the curvature optimizer's ``backward`` when the module
        trains with one, ``loss.backward(*args, **kwargs)`` (Lightning's own) otherwise.

        Raises:
            ValueError: a SophiaG curvature step with no logits recorded.
            UnsupportedError: a set-up the curvature backward cannot train under (see the
                module docs), or arguments for ``loss.backward`` besides the loss.
        """
        logits = self.__dict__.pop("_curvature_logits", None)
        opt = self._curvature_optimizer()
        if opt is None:
            super().backward(loss, *args, **kwargs)  # type: ignore[misc]
            return
        owner = f"{type(self).__name__}.backward"
        if args or kwargs:
            raise UnsupportedError(
                f"{owner}: {type(opt).__name__}.backward takes the loss alone, got "
                f"arguments {args} {sorted(kwargs)} for loss.backward")
        if opt.curvature_due:
            self._check_curvature_setup(owner, opt)
            if opt.estimator == "gnb" and logits is None:
                raise ValueError(
                    f"{owner}: {type(opt).__name__} refreshes its curvature estimate on this "
                    f"step and needs the logits the loss was computed from: call "
                    f"self.record_logits(logits) in training_step")
        window = self.__dict__.setdefault("_micro_batch_backward", MicroBatchBackward())
        window(opt, loss, logits, step=self.trainer.global_step)

    def _curvature_optimizer(self) -> CurvatureOptimizer | None:
        """The one curvature optimizer among the trainer's (``None`` if there is none)."""
        found = [o for o in map(curvature_optimizer, self.trainer.optimizers) if o is not None]
        if len(found) > 1:
            raise UnsupportedError(
                f"{type(self).__name__}.backward: {len(found)} curvature optimizers "
                f"({', '.join(type(o).__name__ for o in found)}); the backward hook cannot "
                f"tell which one a loss is for. Use one, or call its backward yourself in "
                f"manual optimization")
        return found[0] if found else None

    def _check_curvature_setup(self, owner: str, opt: CurvatureOptimizer) -> None:
        """Refuse, before the step changes anything, what the curvature backward cannot do."""
        trainer = self.trainer
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            refuse_scaled_loss(owner, opt, f"precision={trainer.precision!r}")
        check_processes(owner, opt, trainer.world_size, "Lightning")
