"""Small pure functions shared by update rules.

Each takes and returns tensors (no in-place updates), so a rule built from them runs unchanged
on the reference path and inside the compiled fused path.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["decoupled_weight_decay", "ema", "l2_weight_decay"]


def ema(average: Tensor, x: Tensor, beta: Tensor) -> Tensor:
    r"""Exponential moving average :math:`\beta a + (1 - \beta) x`."""
    return beta * average + (1 - beta) * x


def decoupled_weight_decay(p: Tensor, lr: Tensor, weight_decay: Tensor) -> Tensor:
    r"""Decoupled decay :math:`\theta (1 - \alpha\lambda)` (Loshchilov & Hutter, 1711.05101)."""
    return p * (1 - lr * weight_decay)


def l2_weight_decay(g: Tensor, p: Tensor, weight_decay: Tensor) -> Tensor:
    r"""Coupled L2 decay added to the gradient: :math:`g + \lambda\theta`."""
    return g + weight_decay * p
