"""SophiaG, SophiaH and AdaHessian inside the Hugging Face ``Trainer``.

The curvature optimizers need one change to the training loop: ``opt.backward(loss,
logits=logits)`` (SophiaG) or ``opt.backward(loss)`` (SophiaH, AdaHessian) where the loop calls
``loss.backward()`` (see :mod:`stochopt.optim._curvature`). The ``Trainer`` calls
``self.accelerator.backward(loss)`` at the end of ``training_step`` and offers no hook between
the loss and its backward pass, so on a plain ``Trainer`` the first step raises
:class:`~stochopt.errors.MissingCurvatureError`. :class:`CurvatureTrainerMixin` adds the hook:

* ``compute_loss`` runs the forward of a curvature step under ``opt.curvature_forward()``
  (attention on the math kernel and compiled code run eagerly, where the estimator needs it:
  ``nn.TransformerEncoderLayer`` and ``torch_compile=True`` models train as they are) and
  keeps its logits (:meth:`CurvatureTrainerMixin.curvature_logits`), where SophiaG resamples
  labels from them;
* ``training_step`` runs unchanged, so the loss is computed, averaged and divided for gradient
  accumulation exactly as the installed ``Trainer`` does it; on a curvature step its one
  ``self.accelerator.backward(loss)`` call goes to the optimizer's ``backward`` instead, for
  the duration of that call only (:class:`~stochopt.integrations._common.MicroBatchBackward`
  says how micro-batches share the estimate). Other steps, and other optimizers, take the
  ``Trainer``'s own path untouched.

Everything else is the ``Trainer``'s: the optimizer (passed as ``optimizers=(opt, None)`` or
built from ``optimizer_cls_and_kwargs``), its learning-rate scheduler, gradient clipping,
``accelerate``'s ``AcceleratedOptimizer`` wrapper (the stochopt optimizer is found inside it),
checkpoints (the optimizer's ``state_dict`` carries its estimator's random generator, so
``resume_from_checkpoint`` continues bit for bit).

Refused on the first step, with the fix named: fp16 with a loss scaler (use ``bf16=True``),
DeepSpeed and Megatron-LM (they run their own backward pass), SophiaH and AdaHessian under
several processes (DDP cannot keep gradient graphs through the ``Trainer``'s synchronized
backward), and SophiaG under several processes without ``process_group=`` (each rank would
keep its own estimate and the replicas would drift apart).

Example (a tiny GPT-2 from its config: no download)::

    from transformers import GPT2Config, GPT2LMHeadModel, TrainingArguments
    from stochopt.integrations.transformers import CurvatureTrainer
    from stochopt.optim import SophiaG

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2))
    trainer = CurvatureTrainer(
        model=model, args=TrainingArguments("out", max_steps=100, report_to=[]),
        train_dataset=dataset, optimizers=(SophiaG(model.parameters(), lr=3e-4), None))
    trainer.train()
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import Tensor, nn
from transformers import Trainer

from stochopt.errors import UnsupportedError
from stochopt.integrations._common import (
    MicroBatchBackward,
    check_processes,
    curvature_optimizer,
    refuse_scaled_loss,
)
from stochopt.optim import CurvatureOptimizer

__all__ = ["CurvatureTrainer", "CurvatureTrainerMixin"]


class CurvatureTrainerMixin:
    """Mix into a ``transformers.Trainer`` subclass (before it) to train with SophiaG,
    SophiaH or AdaHessian: ``class MyTrainer(CurvatureTrainerMixin, Trainer)``.

    On curvature steps (``opt.curvature_due``) the backward pass of ``training_step`` is the
    optimizer's ``backward`` (with the logits ``compute_loss`` kept, for SophiaG); on the other
    steps, and with any other optimizer, the ``Trainer`` runs as it is. See the module docs.
    """

    accelerator: Accelerator
    optimizer: Any
    state: Any

    def training_step(self, model: nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: Tensor | int | None = None) -> Tensor:
        """The ``Trainer``'s ``training_step``; on a curvature step its backward pass is the
        curvature optimizer's (see the module docs)."""
        opt = curvature_optimizer(self.optimizer)
        if opt is None or not opt.curvature_due:
            return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        self._check_curvature_setup(opt)
        window = self.__dict__.setdefault("_micro_batch_backward", MicroBatchBackward())
        self._curvature_outputs: list[Any] = []

        def backward(loss: Tensor, **kwargs: Any) -> None:
            if kwargs:  # LOMO's learning_rate, DeepSpeed's scale_wrt_gas
                raise UnsupportedError(
                    f"CurvatureTrainer: the Trainer asked for a backward pass with "
                    f"{sorted(kwargs)}, which {type(opt).__name__}.backward does not take")
            loss = loss / self.accelerator.gradient_accumulation_steps  # as accelerate does
            logits = None
            if opt.estimator == "gnb":
                if not self._curvature_outputs:
                    raise ValueError(
                        f"CurvatureTrainer: {type(opt).__name__} needs the model's logits on "
                        f"curvature steps, but compute_loss kept no outputs: an override of "
                        f"compute_loss must call super().compute_loss(...)")
                logits = self.curvature_logits(self._curvature_outputs[-1])
            window(opt, loss, logits, step=self.state.global_step)

        try:
            with _routed_backward(self.accelerator, backward):
                return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        finally:
            del self._curvature_outputs

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any],
                     return_outputs: bool = False,
                     num_items_in_batch: Tensor | int | None = None) -> Any:
        """The ``Trainer``'s ``compute_loss``; during a curvature step's ``training_step`` it
        runs under the optimizer's ``curvature_forward()`` (math attention kernel, compiled
        code run eagerly, where the estimator needs it) and keeps the model's outputs, for
        :meth:`curvature_logits`."""
        opt = curvature_optimizer(self.optimizer)
        if "_curvature_outputs" not in self.__dict__ or opt is None:
            return super().compute_loss(  # type: ignore[misc]
                model, inputs, return_outputs=return_outputs,
                num_items_in_batch=num_items_in_batch)
        with opt.curvature_forward():
            loss, outputs = super().compute_loss(  # type: ignore[misc]
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        self._curvature_outputs.append(outputs)
        return (loss, outputs) if return_outputs else loss

    def curvature_logits(self, outputs: Any) -> Tensor:
        """The logits SophiaG resamples labels from, shape ``(..., V)``, taken from the
        model's outputs in ``compute_loss``: ``outputs["logits"]`` (every Hugging Face model
        with a language-modelling or classification head). Override it for models whose
        outputs keep them elsewhere.

        Raises:
            TypeError: the outputs hold no ``"logits"``.
        """
        logits = outputs.get("logits") if isinstance(outputs, Mapping) else None
        if not isinstance(logits, Tensor):
            raise TypeError(
                f"CurvatureTrainer.curvature_logits: SophiaG needs the model's logits, but its "
                f"outputs ({type(outputs).__name__}) have no 'logits' tensor; override "
                f"curvature_logits(outputs) to return them")
        return logits

    def _check_curvature_setup(self, opt: CurvatureOptimizer) -> None:
        """Refuse, before the step changes anything, what the curvature backward cannot do."""
        owner = "CurvatureTrainer"
        accelerator = self.accelerator
        kind = accelerator.distributed_type
        if kind in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
            raise UnsupportedError(
                f"{owner}: {type(opt).__name__} cannot train under {kind}, which runs its own "
                f"backward pass; use DDP or FSDP without it, or a single process")
        if accelerator.scaler is not None:
            refuse_scaled_loss(owner, opt, "fp16 mixed precision (fp16=True)")
        check_processes(owner, opt, accelerator.num_processes, "the Trainer")


class CurvatureTrainer(CurvatureTrainerMixin, Trainer):
    """``transformers.Trainer`` that trains with SophiaG, SophiaH and AdaHessian too (and
    with any other optimizer, as the ``Trainer`` does). See the module docs."""


@contextlib.contextmanager
def _routed_backward(accelerator: Accelerator,
                     backward: Callable[..., None]) -> Iterator[None]:
    """Within the block, ``accelerator.backward(loss, **kwargs)`` calls ``backward``: an
    instance attribute shadows the method and is removed on the way out."""
    previous = accelerator.__dict__.get("backward")
    accelerator.backward = backward  # type: ignore[method-assign]
    try:
        yield
    finally:
        if previous is None:
            del accelerator.backward
        else:
            accelerator.backward = previous  # type: ignore[method-assign]
