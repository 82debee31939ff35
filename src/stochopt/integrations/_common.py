"""What both trainer integrations share: finding the curvature optimizer behind a trainer's
wrappers, and the curvature backward pass of a step that accumulates micro-batches."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from stochopt.errors import UnsupportedError
from stochopt.optim import CurvatureOptimizer

__all__ = ["MicroBatchBackward", "check_processes", "curvature_optimizer", "refuse_scaled_loss"]


def curvature_optimizer(optimizer: Any) -> CurvatureOptimizer | None:
    """The stochopt curvature optimizer (SophiaG, SophiaH, AdaHessian) behind ``optimizer``:
    itself, or the one a wrapper holds as ``.optimizer`` (accelerate's
    ``AcceleratedOptimizer``, Lightning's ``LightningOptimizer``), however deep; ``None`` for
    any other optimizer.

    >>> import torch
    >>> from stochopt.optim import AdamW, SophiaG
    >>> w = torch.zeros(2, requires_grad=True)
    >>> curvature_optimizer(SophiaG([w])) is not None, curvature_optimizer(AdamW([w]))
    (True, None)
    """
    seen: set[int] = set()
    while not isinstance(optimizer, CurvatureOptimizer):
        seen.add(id(optimizer))
        optimizer = getattr(optimizer, "optimizer", None)
        if optimizer is None or id(optimizer) in seen:
            return None
    return optimizer


class MicroBatchBackward:
    """``opt.backward`` for training loops that accumulate gradients over micro-batches.

    Every micro-batch's loss arrives already divided by the number of micro-batches, so the
    gradients sum to the whole batch's. On a curvature step:

    * a Hutchinson optimizer (SophiaH, AdaHessian) keeps the gradient graph of *every*
      micro-batch: the accumulated gradient is then the whole batch's, with its graph, and
      the step's Hessian-vector product is the whole batch's (each graph is held until
      ``step``);
    * SophiaG resamples labels on the *first* micro-batch only and takes the later ones'
      gradients as they are. A Gauss-Newton-Bartlett estimate
      :math:`B\\,\\hat g \\odot \\hat g` is unbiased for the mean per-prediction Gauss-Newton
      diagonal whatever the number :math:`B` of predictions it sees, so one micro-batch
      estimates the same quantity as the whole batch (with more variance), as the official
      training script estimates it on one batch; one draw of labels per curvature step keeps
      the cost at one extra backward pass.

    ``step`` identifies the optimizer step the micro-batch belongs to (the trainer's count of
    optimizer steps); the instance remembers on which step SophiaG's estimate was taken.
    """

    def __init__(self) -> None:
        self._estimated_at: int | None = None

    def __call__(self, opt: CurvatureOptimizer, loss: Tensor, logits: Tensor | None, *,
                 step: int) -> None:
        """Backward for one micro-batch of optimizer step ``step``; ``logits`` are needed by
        SophiaG on the first micro-batch of a curvature step and ignored otherwise."""
        if not (opt.curvature_due and opt.estimator == "gnb"):
            opt.backward(loss)
        elif self._estimated_at == step:
            loss.backward()  # a later micro-batch: its gradient only
        else:
            opt.backward(loss, logits=logits)
            self._estimated_at = step


def refuse_scaled_loss(owner: str, opt: CurvatureOptimizer, what: str) -> None:
    """A loss scaler (fp16 mixed precision) would scale the Hutchinson products with the
    gradients, and the scaler unscales only the gradients; refused for every curvature
    optimizer (Gauss-Newton-Bartlett gradients would be taken unscaled, in fp16)."""
    raise UnsupportedError(
        f"{owner}: {type(opt).__name__} cannot train under {what}: the loss scaler scales the "
        f"gradients and would scale the curvature estimate with them, but unscales only the "
        f"gradients. Train in bf16 (no loss scaler) or fp32")


def check_processes(owner: str, opt: CurvatureOptimizer, processes: int, under: str) -> None:
    """Refuse what a curvature optimizer cannot do on ``processes`` > 1 processes ``under`` a
    trainer: Hutchinson products (DDP's synchronized backward keeps no gradient graph), and an
    estimate without ``process_group`` (each rank would keep its own)."""
    if processes > 1 and opt.estimator == "hutchinson":
        raise UnsupportedError(
            f"{owner}: {type(opt).__name__} cannot train on {processes} processes under "
            f"{under}: its Hessian-vector products need the gradient graph, which DDP's "
            f"synchronized backward does not keep; use SophiaG (process_group='world'), or a "
            f"loop of your own with ddp.no_sync() on curvature steps (see "
            f"stochopt.optim.CurvatureOptimizer)")
    if processes > 1 and opt.process_group is None:
        raise UnsupportedError(
            f"{owner}: {type(opt).__name__} on {processes} processes needs "
            f"process_group='world', or each rank keeps its own curvature estimate and the "
            f"replicas drift apart")
