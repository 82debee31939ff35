"""Schedule refinement (Defazio et al., 2023): a schedule computed from the gradient norms of
an earlier run of the same length."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["GradNormRecorder", "RefinedSchedule", "refine"]


class GradNormRecorder:
    """Log the gradient norm of a set of parameters after each backward pass.

    Call :meth:`record` once per step (after ``backward``, before ``step``); ``l2`` and ``l1``
    hold the global Euclidean and absolute norms, the inputs of :func:`refine` for SGD-like and
    Adam-like methods.
    """

    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.l2: list[float] = []
        self.l1: list[float] = []

    @torch.no_grad()
    def record(self) -> None:
        grads = [p.grad for p in self.params if p.grad is not None]
        self.l2.append(float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))))
        self.l1.append(float(sum(g.double().abs().sum() for g in grads)))


def _median_filter(values: np.ndarray, width: int) -> np.ndarray:
    """Running median of odd ``width``, centred, with edge values repeated at both ends."""
    half = width // 2
    padded = np.pad(values, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    return np.median(windows, axis=1)


@dataclass(frozen=True)
class RefinedSchedule:
    """A schedule given by its values at steps ``0 .. T-1`` (``peak`` times ``shape``); 0
    from step ``T`` on."""

    shape: tuple[float, ...]  # in [0, 1], max 1
    peak: float = 1.0

    def __call__(self, step: int) -> float:
        return self.peak * self.shape[step] if step < len(self.shape) else 0.0

    def with_peak(self, peak: float) -> RefinedSchedule:
        return RefinedSchedule(self.shape, peak)


def refine(norms: Iterable[float], *, method: str = "sgd", tau: float = 0.1,
           resolution: int = 10_000, peak: float = 1.0) -> RefinedSchedule:
    r"""The refined schedule of Defazio et al. from a run's per-step gradient norms.

    With :math:`\hat G_t` the norms (resampled to ``resolution`` points and median-filtered
    over a window of about ``tau`` of the run, padded on the right by reflection),
    :math:`w_t = \hat G_t^{-2}` for SGD-like methods (``norms`` Euclidean) or
    :math:`\hat G_t^{-1}` for Adam-like ones (``norms`` the :math:`\ell_1` norms), and

    .. math:: \eta_t \propto w_t \sum_{p > t} w_p, \qquad \max_t \eta_t = \eta_{peak},

    resampled back to the run's length. Constant norms give linear decay to 0; norms that fall
    give a warm-up followed by annealing.

    Args:
        norms: one gradient norm per step of the earlier run (length ``T``).
        method: ``"sgd"`` (:math:`w = G^{-2}`) or ``"adam"`` (:math:`w = G^{-1}`).
        tau: median-filter width as a fraction of the run (default 0.1).
        resolution: points the norm sequence is resampled to (default 10,000).
        peak: the schedule's maximum learning rate (default 1.0; tune it with a sweep).

    Returns:
        A :class:`RefinedSchedule` of the same length as ``norms``.

    References:
        Defazio, Cutkosky, Mehta & Mishchenko, "When, Why and How Much? Adaptive Learning Rate
        Scheduling by Refinement", 2023, arXiv:2310.07831, Algorithm 1.
    """
    G = np.asarray(list(norms), dtype=np.float64)
    if G.ndim != 1 or len(G) < 2 or not np.all(np.isfinite(G)) or np.any(G <= 0):
        raise ValueError("refine: norms must be at least two positive finite values")
    if method not in ("sgd", "adam"):
        raise ValueError(f"refine: method must be 'sgd' or 'adam', got {method!r}")
    T = len(G)
    grid = np.linspace(0, T - 1, resolution)
    smooth = np.interp(grid, np.arange(T), G)  # (N,)
    width = 2 * int(tau * resolution / 2) + 1
    if width > 1:
        extended = np.pad(smooth, (0, 2 * width), mode="reflect")
        smooth = _median_filter(extended, width)[:resolution]
    weights = smooth ** (-2.0 if method == "sgd" else -1.0)
    tail = np.cumsum(weights[::-1])[::-1] - weights  # sum over p > t
    eta = weights * tail
    eta /= eta.max()
    shape = np.interp(np.arange(T), grid, eta)
    return RefinedSchedule(tuple(float(v) for v in shape), peak)
