r"""The consensus point of a particle system and the effective sample size of its weights.

For particles :math:`x_1, \dots, x_N` with energies :math:`f(x_i)` the consensus point is the
Gibbs-weighted mean

.. math::
    x_\alpha = \frac{\sum_i x_i\, w_\alpha(x_i)}{\sum_j w_\alpha(x_j)}, \qquad
    w_\alpha(x_i) = \exp\!\big(-\alpha\,(f(x_i) - \min_j f(x_j))\big).

Shifting by :math:`\min_j f(x_j)` changes no ratio of weights (Riedl et al.'s
``compute_valpha.m`` does the same) and keeps the largest weight at 1, so nothing overflows;
the normalization is a log-sum-exp. As :math:`\alpha \to \infty`, :math:`x_\alpha` tends to
the particle of least energy (the Laplace principle).

Everything is batched over independent systems: particles ``(..., N, d)`` (usually
``(M, N, d)``: ``M`` runs of ``N`` particles in ``d`` dimensions), energies ``(..., N)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["consensus_point", "consensus_weights", "effective_sample_size"]


def _alpha(alpha: float | Tensor, energy: Tensor) -> Tensor:
    """``alpha`` as a tensor of shape ``(..., 1)`` that broadcasts against ``energy``."""
    alpha = torch.as_tensor(alpha, dtype=energy.dtype, device=energy.device)
    return alpha.unsqueeze(-1) if alpha.ndim else alpha


def consensus_weights(energy: Tensor, alpha: float | Tensor) -> Tensor:
    r"""Normalized Gibbs weights :math:`w_\alpha(x_i) / \sum_j w_\alpha(x_j)`.

    Computed as :math:`\exp(\ell_i - \log\sum_j e^{\ell_j})` with
    :math:`\ell_i = -\alpha (f_i - \min_j f_j) \le 0`: finite for any finite :math:`\alpha \ge 0`
    and any finite energies, however far apart.

    Args:
        energy: :math:`f(x_i)`, shape ``(..., N)``.
        alpha: :math:`\alpha \ge 0`, a float or a tensor of shape ``(...)`` (one per system).

    Returns:
        The weights, shape ``(..., N)``, summing to 1 over the last dimension.
    """
    shifted = energy - energy.amin(-1, keepdim=True)  # f_i - min_j f_j >= 0
    logits = -_alpha(alpha, energy) * shifted
    return torch.exp(logits - torch.logsumexp(logits, -1, keepdim=True))


def consensus_point(x: Tensor, energy: Tensor, alpha: float | Tensor) -> Tensor:
    r"""The consensus point :math:`x_\alpha = \sum_i x_i w_\alpha(x_i) / \sum_j w_\alpha(x_j)`.

    Args:
        x: particles :math:`x_i`, shape ``(..., N, d)``.
        energy: :math:`f(x_i)`, shape ``(..., N)``.
        alpha: :math:`\alpha \ge 0`, a float or a tensor of shape ``(...)`` (one per system).

    Returns:
        :math:`x_\alpha`, shape ``(..., d)``.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
        >>> consensus_point(x, torch.tensor([0.0, 1.0], dtype=torch.float64), alpha=0.0)
        tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    weights = consensus_weights(energy, alpha)  # (..., N)
    return (weights.unsqueeze(-1) * x).sum(-2)


def effective_sample_size(energy: Tensor, alpha: float | Tensor) -> Tensor:
    r"""The effective sample size of the Gibbs weights,
    :math:`J_\text{eff}(\alpha) = (\sum_i w_i)^2 / \sum_i w_i^2` with
    :math:`w_i = e^{-\alpha f_i}`.

    It is 1 when one weight dominates and ``N`` when all are equal, and does not increase with
    :math:`\alpha`. Computed in logs: :math:`\exp(2\,\mathrm{lse}(-\alpha f) -
    \mathrm{lse}(-2\alpha f))`.

    Args:
        energy: :math:`f(x_i)`, shape ``(..., N)``.
        alpha: :math:`\alpha \ge 0`, a float or a tensor of shape ``(...)``.

    Returns:
        :math:`J_\text{eff}`, shape ``(...)``.

    References:
        Carrillo, Hoffmann, Stuart & Vaes, "Consensus-based sampling", Studies in Applied
        Mathematics 148(3), 2022, arXiv:2106.02519 (the effective sample size rule for
        :math:`\alpha`).
    """
    logits = -_alpha(alpha, energy) * (energy - energy.amin(-1, keepdim=True))
    return torch.exp(2 * torch.logsumexp(logits, -1) - torch.logsumexp(2 * logits, -1))
