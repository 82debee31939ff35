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

Non-finite energies: a particle whose energy is NaN or :math:`+\infty` gets weight 0 (it does
not enter the consensus point, whatever its coordinates); energies of :math:`-\infty` are the
minimum and share all the weight (the limit of every :math:`\alpha > 0`). A system in which
every energy is NaN or :math:`+\infty` has no consensus point: its weights and its point are
NaN (:func:`~stochopt.cbo.minimize` stops that run with reason ``"nonfinite"``).
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from stochopt._checks import check_real, show

__all__ = ["consensus_point", "consensus_weights", "effective_sample_size"]


def _alpha(alpha: float | Tensor, energy: Tensor) -> Tensor:
    """``alpha`` as a tensor of shape ``(..., 1)`` that broadcasts against ``energy``."""
    alpha = torch.as_tensor(alpha, dtype=energy.dtype, device=energy.device)
    return alpha.unsqueeze(-1) if alpha.ndim else alpha


def _check(owner: str, energy: Tensor, alpha: float | Tensor) -> None:
    """``energy`` a floating tensor ``(..., N)``, ``N >= 1``; ``alpha`` finite and >= 0, a
    number or a tensor of shape ``(...)``."""
    if not isinstance(energy, Tensor) or not energy.is_floating_point():
        raise TypeError(f"{owner}: energy must be a floating-point tensor, got {show(energy)}")
    if energy.ndim == 0 or energy.shape[-1] == 0:
        raise ValueError(f"{owner}: energy must have shape (..., N) with N >= 1, got "
                         f"{tuple(energy.shape)}")
    if isinstance(alpha, Tensor):
        if alpha.ndim and alpha.shape != energy.shape[:-1]:
            raise ValueError(f"{owner}: alpha must be a number or a tensor of shape "
                             f"{tuple(energy.shape[:-1])} (one per system), got "
                             f"{tuple(alpha.shape)}")
        if alpha.is_complex() or alpha.dtype == torch.bool:
            raise TypeError(f"{owner}: alpha must be a real tensor, got {show(alpha)}")
        if bool((alpha.isnan() | (alpha < 0) | alpha.isinf()).any()):
            raise ValueError(f"{owner}: alpha must be finite and >= 0, got {alpha.tolist()}")
    elif isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        check_real(owner, "alpha", alpha, low_open=False)
    else:
        raise TypeError(f"{owner}: alpha must be a real number or a tensor, got {show(alpha)}")


def _shifted(energy: Tensor) -> Tensor:
    r""":math:`f_i - \min_j f_j \ge 0`, :math:`+\infty` for the particles that get no weight:
    NaN and :math:`+\infty` energies, and finite ones when some energy is :math:`-\infty`
    (those are 0)."""
    bad = energy.isnan() | (energy == math.inf)  # (..., N)
    energy = energy.masked_fill(bad, math.inf)
    low = energy.amin(-1, keepdim=True)
    shifted = torch.where(energy == low, 0.0, energy - low)
    return shifted.masked_fill(bad, math.inf)


def _logits(shifted: Tensor, alpha: float | Tensor) -> Tensor:
    r""":math:`\ell_i = -\alpha (f_i - \min_j f_j) \le 0` from :func:`_shifted`
    (:math:`-\infty` where it is :math:`+\infty`, whatever :math:`\alpha`)."""
    logits = -_alpha(alpha, shifted) * shifted
    return torch.where(shifted == math.inf, -math.inf, logits)


def _weights(energy: Tensor, alpha: float | Tensor, finite: bool | None = None) -> Tensor:
    """The weights of :func:`consensus_weights` (``finite``: whether every energy is)."""
    if finite if finite is not None else bool(energy.isfinite().all()):  # no masks needed
        logits = -_alpha(alpha, energy) * (energy - energy.amin(-1, keepdim=True))
    else:
        logits = _logits(_shifted(energy), alpha)
    return torch.exp(logits - torch.logsumexp(logits, -1, keepdim=True))


def _point(x: Tensor, energy: Tensor, alpha: float | Tensor) -> Tensor:
    """The point of :func:`consensus_point`: particles of weight 0 take no part, even with
    infinite coordinates."""
    finite = bool(energy.isfinite().all())
    weights = _weights(energy, alpha, finite).unsqueeze(-1)  # (..., N, 1)
    if finite:
        return (weights * x).sum(-2)
    return torch.where(weights == 0, 0.0, weights * x).sum(-2)


def consensus_weights(energy: Tensor, alpha: float | Tensor) -> Tensor:
    r"""Normalized Gibbs weights :math:`w_\alpha(x_i) / \sum_j w_\alpha(x_j)`.

    Computed as :math:`\exp(\ell_i - \log\sum_j e^{\ell_j})` with
    :math:`\ell_i = -\alpha (f_i - \min_j f_j) \le 0`: finite for any finite :math:`\alpha \ge 0`
    and any finite energies, however far apart. Non-finite energies: see the module (NaN and
    :math:`+\infty` get weight 0).

    Args:
        energy: :math:`f(x_i)`, shape ``(..., N)``.
        alpha: :math:`\alpha \ge 0`, a float or a tensor of shape ``(...)`` (one per system).

    Returns:
        The weights, shape ``(..., N)``, summing to 1 over the last dimension.
    """
    _check("consensus_weights", energy, alpha)
    return _weights(energy, alpha)


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
    _check("consensus_point", energy, alpha)
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"consensus_point: x must be a floating-point tensor, got {show(x)}")
    if x.ndim != energy.ndim + 1 or x.shape[:-1] != energy.shape:
        raise ValueError(f"consensus_point: x must have shape {tuple(energy.shape)} + (d,) "
                         f"(one point per energy), got {tuple(x.shape)}")
    return _point(x, energy, alpha)


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
    _check("effective_sample_size", energy, alpha)
    return _ess(_shifted(energy), alpha)


def _ess(shifted: Tensor, alpha: float | Tensor) -> Tensor:
    """:func:`effective_sample_size` from :func:`_shifted` energies."""
    logits = _logits(shifted, alpha)
    return torch.exp(2 * torch.logsumexp(logits, -1) - torch.logsumexp(2 * logits, -1))
