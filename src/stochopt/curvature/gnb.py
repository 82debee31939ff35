"""The Gauss-Newton-Bartlett estimator of the Gauss-Newton diagonal (Sophia-G)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from stochopt._distributed import all_reduce, world_size
from stochopt.curvature._args import (
    check_generator,
    check_logits,
    check_requires_grad,
    tensor_list,
)

__all__ = ["gauss_newton_bartlett", "sample_labels"]


def sample_labels(logits: Tensor, generator: torch.Generator) -> Tensor:
    """One label per row of ``logits`` (shape ``(..., V)``) drawn from its softmax; shape
    ``(...)``.

    Raises:
        TypeError, ValueError: ``logits`` not a floating tensor of shape ``(..., V)`` with
            finite values, or ``generator`` not a ``torch.Generator``.
    """
    check_logits("sample_labels", logits, graph=False)
    check_generator("sample_labels", generator)
    return _sample(logits, generator)


def _sample(logits: Tensor, generator: torch.Generator) -> Tensor:
    probs = torch.softmax(logits.detach().float().reshape(-1, logits.shape[-1]), dim=-1)
    draws = torch.multinomial(probs.to(generator.device), 1, generator=generator)
    return draws.view(logits.shape[:-1]).to(logits.device)


def gauss_newton_bartlett(logits: Tensor, params: Sequence[Tensor], *,
                          generator: torch.Generator, retain_graph: bool = True,
                          process_group: Any = None) -> list[Tensor]:
    r"""Estimate :math:`\operatorname{diag}` of the Gauss-Newton matrix of the mean
    cross-entropy at ``logits``: :math:`\hat h = B \cdot \hat g \odot \hat g`, where
    :math:`\hat g` is the gradient of the mean cross-entropy against labels resampled from the
    model's own predictive distribution and :math:`B` the number of predictions.

    Args:
        logits: model outputs with their graph, shape ``(..., V)``; every prediction counts.
        params: parameters to estimate for, shapes ``(*s_i)``.
        generator: the source of the resampled labels.
        retain_graph: keep the logits' graph for the training loss (default True).
        process_group: data-parallel ranks whose batches together form the batch: :math:`\hat g`
            is averaged over them before it is squared, and :math:`B` counts every rank's
            predictions (default None: this process's batch alone).

    Returns:
        One non-negative estimate per parameter (detached); zeros where the logits do not
        depend on it.

    Raises:
        TypeError, ValueError: logits without a graph, of no prediction, or with a NaN or
            infinite entry; parameters that do not require grad (checked before any label
            is drawn).

    References:
        Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order Optimizer for
        Language Model Pre-training", 2023, arXiv:2305.14342, Algorithm 2.
    """
    owner = "gauss_newton_bartlett"
    check_logits(owner, logits, graph=True)
    check_generator(owner, generator)
    params = tensor_list(owner, "params", params)
    check_requires_grad(owner, params)
    if not params:
        return []
    labels = _sample(logits, generator)
    flat = logits.reshape(-1, logits.shape[-1])
    sampled_loss = F.cross_entropy(flat, labels.reshape(-1))  # mean over B predictions
    grads = torch.autograd.grad(sampled_loss, list(params), retain_graph=retain_graph,
                                allow_unused=True)
    batch = flat.shape[0]
    if process_group is not None:
        grads = tuple(g.detach() if g is not None else None for g in grads)
        all_reduce([g for g in grads if g is not None], process_group, average=True)
        batch *= world_size(process_group)
    return [torch.zeros_like(p) if g is None else batch * g.detach() * g.detach()
            for p, g in zip(params, grads)]
