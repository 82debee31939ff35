"""Aggregation weights and the server step of Fraboni et al.'s general scheme, as pure
functions shared by the simulator and the Flower strategies.

The server step (Fraboni, Vidal, Kameni & Lorenzi 2023, eq. 3) is

.. math::

    \\theta^{n+1} = \\theta^n + \\eta_g \\sum_i \\omega_i(n)\\, \\Delta_i,
    \\qquad \\Delta_i = \\theta_i^{\\text{received}} - \\theta^{\\rho_i(n)},

where :math:`\\rho_i(n) \\le n` is the version client :math:`i` started from and
:math:`\\omega_i(n) = d_i` when client :math:`i` is aggregated at step :math:`n`, else 0.
The iterates approach the optimum of the surrogate :math:`\\sum_i q_i L_i` with
:math:`q_i \\propto \\mathbb{E}[\\omega_i(n)]` (their Theorem 1), so the federated optimum of
:math:`\\sum_i p_i L_i` needs :math:`\\mathbb{E}[\\omega_i(n)] = p_i`. With :math:`f_i` the
probability that client :math:`i` is in a given aggregation, :math:`d_i = p_i / f_i` is the
unbiased weight of every scheme (their Table 1; :func:`unbiased_weights`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from stochopt._checks import check_real, check_tensor

__all__ = [
    "aggregate",
    "async_participation",
    "check_distribution",
    "fedfix_participation",
    "surrogate_importance",
    "unbiased_weights",
]


def check_distribution(owner: str, name: str, p: Sequence[float] | Tensor) -> Tensor:
    """``p`` as a float64 vector of non-negative entries summing to 1 (within 1e-9)."""
    p = check_tensor(owner, name, torch.as_tensor(p, dtype=torch.float64)
                     if not isinstance(p, Tensor) else p.to(torch.float64), ndim=1)
    if len(p) == 0 or bool((p < 0).any()) or abs(float(p.sum()) - 1.0) > 1e-9:
        shown = [round(v, 6) for v in p.tolist()[:8]]
        raise ValueError(f"{owner}: {name} must be a distribution over the clients (entries "
                         f">= 0 summing to 1), got {shown}{'...' if len(p) > 8 else ''} "
                         f"(sum {float(p.sum()) if len(p) else 0.0:.6g})")
    return p


def unbiased_weights(p: Tensor, participation: Tensor) -> Tensor:
    """:math:`d_i = p_i / f_i`: the weights for which :math:`\\mathbb{E}[\\omega_i] = p_i`.

    Args:
        p: the clients' importance, shape ``(M,)``, summing to 1.
        participation: :math:`f_i`, the probability that client :math:`i` is in a given
            aggregation, shape ``(M,)``, in (0, 1]. FedAvg has :math:`f_i = 1`; asynchronous
            FedAvg :func:`async_participation`; FedFix :func:`fedfix_participation`; FedBuff
            and deployments the observed fraction of aggregations containing :math:`i`.
    """
    p = check_distribution("unbiased_weights", "p", p)
    f = check_tensor("unbiased_weights", "participation", participation, shape=(len(p),))
    if bool(((f <= 0) | (f > 1)).any()):
        raise ValueError(f"unbiased_weights: participation must be in (0, 1] for every "
                         f"client, got {[round(v, 6) for v in f.tolist()[:8]]}")
    return p / f.to(torch.float64)


def async_participation(mean_times: Tensor) -> Tensor:
    """:math:`f_i = \\tau_i^{-1} / \\sum_j \\tau_j^{-1}`: asynchronous FedAvg aggregates one
    client per step, client :math:`i` at its rate :math:`1/\\tau_i` (the elementary renewal
    theorem: exact in the long run for any distribution of compute times with mean
    :math:`\\tau_i`). With identical weights, :math:`q_i = f_i`: the bias toward fast clients.
    """
    tau = _times("async_participation", mean_times)
    return (1 / tau) / (1 / tau).sum()


def fedfix_participation(expected_windows: Tensor) -> Tensor:
    """:math:`f_i = 1 / \\mathbb{E}[\\lceil T_i / \\Delta t \\rceil]`: a FedFix client restarts
    at a window's end and is aggregated once every :math:`\\lceil T_i/\\Delta t\\rceil` windows
    (:math:`T_i` its compute time; see
    :meth:`stochopt.federated.ClientTimes.expected_windows`)."""
    k = _times("fedfix_participation", expected_windows)
    if bool((k < 1).any()):
        raise ValueError("fedfix_participation: expected_windows must be >= 1 for every "
                         f"client, got {[round(v, 6) for v in k.tolist()[:8]]}")
    return 1 / k


def surrogate_importance(weights: Tensor, participation: Tensor) -> Tensor:
    """:math:`q_i = d_i f_i / \\sum_j d_j f_j`: the clients' importance in the surrogate loss
    the scheme actually minimizes (Fraboni et al., Theorem 1)."""
    d = check_tensor("surrogate_importance", "weights", weights, ndim=1).to(torch.float64)
    f = check_tensor("surrogate_importance", "participation", participation,
                     shape=(len(d),)).to(torch.float64)
    expected = d * f
    if bool((expected < 0).any()) or float(expected.sum()) <= 0:
        raise ValueError("surrogate_importance: weights * participation must be >= 0 with a "
                         "positive sum")
    return expected / expected.sum()


def aggregate(theta: Tensor, deltas: Sequence[Tensor], weights: Sequence[float],
              server_lr: float = 1.0) -> Tensor:
    """:math:`\\theta + \\eta_g \\sum_i d_i \\Delta_i`, summed in the order given (the order
    fixes the rounding, so the simulator and the Flower strategies sum in arrival order).

    Args:
        theta: the global model as one flat tensor, shape ``(D,)``.
        deltas: each aggregated client's :math:`\\Delta_i`, shape ``(D,)``.
        weights: each one's :math:`d_i`, as floats.
        server_lr: :math:`\\eta_g` > 0.
    """
    server_lr = check_real("aggregate", "server_lr", server_lr)
    if len(deltas) != len(weights):
        raise ValueError(f"aggregate: {len(deltas)} deltas but {len(weights)} weights")
    for k, delta in enumerate(deltas):
        if not isinstance(delta, Tensor) or delta.shape != theta.shape:
            raise ValueError(f"aggregate: deltas[{k}] must have the model's shape "
                             f"{tuple(theta.shape)}, got "
                             f"{tuple(delta.shape) if isinstance(delta, Tensor) else delta!r}")
    step = torch.zeros_like(theta)
    for delta, d in zip(deltas, weights):
        step.add_(delta, alpha=float(d))
    return theta + server_lr * step if server_lr != 1.0 else theta + step


def _times(owner: str, values: Tensor) -> Tensor:
    """Positive finite float64 times (or window counts), shape ``(M,)``."""
    t = check_tensor(owner, "the times", torch.as_tensor(values, dtype=torch.float64), ndim=1)
    if len(t) == 0 or bool((t <= 0).any()):
        raise ValueError(f"{owner}: times must be positive, got "
                         f"{[round(v, 6) for v in t.tolist()[:8]]}")
    return t


def windows(duration: float, dt: float) -> int:
    """:math:`\\lceil \\tau/\\Delta t\\rceil`, exact for durations that are multiples of
    :math:`\\Delta t` up to rounding (``1.0 / 0.2`` is 5, not 6)."""
    ratio = duration / dt
    nearest = round(ratio)
    return max(1, nearest if math.isclose(ratio, nearest, rel_tol=1e-12) else math.ceil(ratio))
