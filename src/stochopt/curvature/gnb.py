"""The Gauss-Newton-Bartlett estimator of the Gauss-Newton diagonal (Sophia-G)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from stochopt._checks import check_real, show
from stochopt._distributed import all_reduce, world_size
from stochopt._distributed import process_group as resolve_group
from stochopt.curvature._args import (
    check_generator,
    check_logits,
    check_requires_grad,
    tensor_list,
)

__all__ = ["gauss_newton_bartlett", "sample_labels"]

#: odd, 2**64 / golden ratio (SplitMix64's increment): spreads the ranks' label seeds apart
RANK_STRIDE = 0x9E3779B97F4A7C15


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
                          process_group: Any = None,
                          max_norm: float | Sequence[float] | None = None) -> list[Tensor]:
    r"""Estimate :math:`\operatorname{diag}` of the Gauss-Newton matrix of the mean
    cross-entropy at ``logits``: :math:`\hat h = B \cdot \hat g \odot \hat g`, where
    :math:`\hat g` is the gradient of the mean cross-entropy against labels resampled from the
    model's own predictive distribution and :math:`B` the number of predictions (every row of
    ``logits``: ``B * T`` for language-model logits of shape ``(B, T, V)``). Labels are drawn
    independently, so :math:`E[\hat h]` is the Gauss-Newton diagonal exactly.

    Under data parallelism (``process_group`` of :math:`R > 1` ranks) each rank draws its own
    labels: one seed :math:`s` is drawn from ``generator`` (``torch.randint(0, 2**63 - 1,
    ())``) and rank :math:`r` of the group samples from a generator seeded with
    :math:`(s + r \cdot \texttt{0x9E3779B97F4A7C15}) \bmod 2^{64}`. Ranks whose generators
    agree keep agreeing (each advances by that one draw), yet their labels are independent:
    labels shared by the ranks would correlate their gradients, and the average, squared,
    would overestimate the diagonal.

    Args:
        logits: model outputs with their graph, shape ``(..., V)``; every prediction counts.
        params: parameters to estimate for, shapes ``(*s_i)``.
        generator: the source of the resampled labels.
        retain_graph: keep the logits' graph for the training loss (default True).
        process_group: data-parallel ranks whose batches together form the batch: :math:`\hat g`
            is averaged over them before it is squared, and :math:`B` counts every rank's
            predictions (default None: this process's batch alone).
        max_norm: clip :math:`\hat g` (after averaging over ranks, before squaring) as
            ``torch.nn.utils.clip_grad_norm_`` does: scale it by
            :math:`\min(1, c / (\lVert \hat g \rVert + 10^{-6}))`, the norm taken over all
            ``params`` together, as the official training script clips its resampled-label
            gradient; a float in ``(0, inf]``, or one per parameter (each scaled by its own
            :math:`c`, the norm still global); default None: no clipping.

    Returns:
        One non-negative estimate per parameter (detached); zeros where the logits do not
        depend on it.

    Raises:
        TypeError, ValueError: logits without a graph, of no prediction, or with a NaN or
            infinite entry; parameters that do not require grad; a bad ``max_norm`` (all
            checked before any label is drawn).

    References:
        Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order Optimizer for
        Language Model Pre-training", 2023, arXiv:2305.14342, Algorithm 2.
    """
    owner = "gauss_newton_bartlett"
    check_logits(owner, logits, graph=True)
    check_generator(owner, generator)
    params = tensor_list(owner, "params", params)
    check_requires_grad(owner, params)
    max_norms = _check_max_norm(owner, max_norm, len(params))
    if not params:
        return []
    grads, batch = _label_gradients(logits, params, generator, retain_graph, process_group)
    if max_norms is not None:
        grads = _clip(grads, max_norms)
    return [torch.zeros_like(p) if g is None else _square(g) * batch
            for p, g in zip(params, grads)]


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def _square(g: Tensor) -> Tensor:
    r""":math:`g \odot g` of the real view (a complex parameter is its real and imaginary
    parts: the estimate's real view is theirs squared, never the complex square)."""
    return torch.complex(g.real * g.real, g.imag * g.imag) if g.is_complex() else g * g


def _label_gradients(logits: Tensor, params: list[Tensor], generator: torch.Generator,
                     retain_graph: bool, group: Any) -> tuple[list[Tensor | None], int]:
    r""":math:`\hat g` (detached, averaged over ``group``; ``None`` where unused) and the
    number of predictions :math:`B` it averages."""
    labels = _sample(logits, _label_generator(generator, group))
    flat = logits.reshape(-1, logits.shape[-1])  # (B, V): every prediction is a row
    sampled_loss = F.cross_entropy(flat, labels.reshape(-1))  # mean over the B predictions
    grads = torch.autograd.grad(sampled_loss, params, retain_graph=retain_graph,
                                allow_unused=True)
    grads = [None if g is None else g.detach() for g in grads]
    batch = flat.shape[0]
    if group is not None:
        all_reduce([g for g in grads if g is not None], group, average=True)
        batch *= world_size(group)
    return grads, batch


def _label_generator(generator: torch.Generator, group: Any) -> torch.Generator:
    """``generator`` on one rank; with more, this rank's own stream (see
    :func:`gauss_newton_bartlett`)."""
    if group is None or world_size(group) == 1:
        return generator
    seed = int(torch.randint(0, 2**63 - 1, (), generator=generator, device=generator.device))
    rank = dist.get_rank(resolve_group(group))
    return torch.Generator(device=generator.device).manual_seed(
        (seed + rank * RANK_STRIDE) % 2**64)


def _clip(grads: list[Tensor | None], max_norms: list[float]) -> list[Tensor | None]:
    r"""Each gradient times :math:`\min(1, c_i / (\lVert g \rVert + 10^{-6}))`, the norm
    over all of them (``torch.nn.utils.clip_grad_norm_``'s coefficient); ``c_i = inf`` keeps
    ``g_i`` as it is."""
    present = [g for g in grads if g is not None]
    if not present or all(c == math.inf for c in max_norms):
        return grads
    device = present[0].device
    norms = [torch.linalg.vector_norm(r, dtype=torch.promote_types(r.dtype, torch.float32))
             for r in map(_real, present)]  # in at least float32, as the update rules compute
    norm = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))
    return [g if g is None or c == math.inf else g * (c / (norm + 1e-6)).clamp(max=1).to(g.device)
            for g, c in zip(grads, max_norms)]


def _check_max_norm(owner: str, max_norm: Any, n: int) -> list[float] | None:
    """``max_norm`` as one float per parameter (``None``: no clipping), each in (0, inf]."""
    if max_norm is None:
        return None
    if isinstance(max_norm, Tensor | str) or not isinstance(max_norm, Sequence):
        if isinstance(max_norm, Tensor | str):
            raise TypeError(f"{owner}: max_norm must be a real number, a list of them or "
                            f"None, got {show(max_norm)}")
        return [check_real(owner, "max_norm", max_norm, high_open=False)] * n
    if len(max_norm) != n:
        raise ValueError(f"{owner}: max_norm has {len(max_norm)} values for {n} parameters; "
                         f"give one number, or one per parameter")
    return [check_real(owner, f"max_norm[{i}]", c, high_open=False)
            for i, c in enumerate(max_norm)]
