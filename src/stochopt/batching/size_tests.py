"""Adaptive batch-size tests (Byrd et al., 2012; Bollapragada et al., 2018; Lau et al., 2024):
from per-sample gradients, the smallest batch whose mean gradient is accurate enough.

Each test takes the per-sample gradients of the current batch as a matrix ``(B, P)`` and
returns the batch size it asks for; :class:`stochopt.batching.GrowingBatchSampler` grows the
batch to it (never shrinking, capped).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["augmented_test", "coordinate_test", "inner_product_test", "norm_test"]


def _check(grads: Tensor) -> Tensor:
    if grads.ndim != 2 or grads.shape[0] < 2:
        raise ValueError(f"batch-size tests need per-sample gradients of shape (B >= 2, P), "
                         f"got {tuple(grads.shape)}")
    return grads.double()


def _size(ratio: Tensor) -> int:
    value = float(ratio)
    return 0 if value == 0 else math.ceil(value) if math.isfinite(value) else 2**62


def norm_test(grads: Tensor, eta: float) -> int:
    r"""The norm test: the batch size :math:`\lceil \lVert s^2 \rVert_1 /
    (\eta^2 \lVert \bar g \rVert^2) \rceil`, with :math:`s^2_j` the unbiased per-coordinate
    variance of the per-sample gradients and :math:`\bar g` their mean.

    It approximates :math:`E\lVert \bar g - \nabla F \rVert^2 \le \eta^2 \lVert \nabla F
    \rVert^2`. Identical per-sample gradients ask for no growth (0).

    References:
        Byrd, Chin, Nocedal & Wu, "Sample size selection in optimization methods for machine
        learning", Math. Program. 2012; Lau, Liu & Kolar, "AdAdaGrad", 2024, arXiv:2402.11215.
    """
    g = _check(grads)
    mean = g.mean(dim=0)
    return _size(g.var(dim=0, correction=1).sum() / (eta**2 * mean.square().sum()))


def inner_product_test(grads: Tensor, theta: float) -> int:
    r""":math:`\lceil \operatorname{Var}_i(\langle g_i, \bar g\rangle) / (\theta^2 \lVert
    \bar g \rVert^4) \rceil` (Bollapragada, Byrd & Nocedal, SIAM J. Optim. 2018)."""
    g = _check(grads)
    mean = g.mean(dim=0)
    return _size((g @ mean).var(correction=1) / (theta**2 * mean.square().sum() ** 2))


def augmented_test(grads: Tensor, theta: float, nu: float) -> int:
    r"""The inner-product test and the orthogonality test together: also
    :math:`\lceil \sum_j \operatorname{Var}_i(g_i - \mathrm{proj}_{\bar g} g_i)_j /
    (\nu^2 \lVert \bar g \rVert^2) \rceil`; the larger of the two sizes."""
    g = _check(grads)
    mean = g.mean(dim=0)
    norm_sq = mean.square().sum()
    orthogonal = g - (g @ mean / norm_sq)[:, None] * mean[None, :]
    ortho = _size(orthogonal.var(dim=0, correction=1).sum() / (nu**2 * norm_sq))
    return max(inner_product_test(grads, theta), ortho)


def coordinate_test(grads: Tensor, eta: float, max_size: int) -> int:
    r"""The coordinate-wise norm test: :math:`\max_j \lceil s^2_j / (\eta^2 \bar g_j^2)
    \rceil`, capped at ``max_size`` (a coordinate with :math:`\bar g_j \approx 0` would ask
    for an infinite batch)."""
    g = _check(grads)
    mean = g.mean(dim=0)
    variance = g.var(dim=0, correction=1)
    ratios = torch.where(variance == 0, 0.0, variance / (eta**2 * mean.square()))
    return min(max_size, _size(ratios.max()))
