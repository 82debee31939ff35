"""Schedule refinement (Defazio et al., 2023): a schedule computed from the gradient norms of
an earlier run of the same length."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stochopt._checks import check_int, check_real, show
from stochopt.schedules.closed_form import check_step

__all__ = ["GradNormRecorder", "RefinedSchedule", "refine"]


class GradNormRecorder:
    """Log the gradient norm of a set of parameters after each backward pass.

    Call :meth:`record` once per step (after ``backward``, before ``step``); ``l2`` and ``l1``
    hold the global Euclidean and absolute norms, the inputs of :func:`refine` for SGD-like and
    Adam-like methods.

    Non-finite gradients are recorded as they are (a NaN or infinite norm), which
    :func:`refine` then refuses.

    Args:
        params: the parameters (tensors); those that do not require grad are left out, and at
            least one must require it.
    """

    def __init__(self, params: Iterable[torch.Tensor]) -> None:
        owner = "GradNormRecorder"
        if isinstance(params, torch.Tensor):
            params = [params]
        if not isinstance(params, Iterable):
            raise TypeError(f"{owner}: params must be an iterable of tensors, got {show(params)}")
        params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"{owner}: params[{i}] must be a tensor, got {show(p)}")
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError(f"{owner}: params must hold at least one tensor that requires "
                             f"grad, got {len(params)} that do not")
        self.l2: list[float] = []
        self.l1: list[float] = []

    @torch.no_grad()
    def record(self) -> None:
        """Append the norms of the current gradients (call it after ``backward``)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            raise ValueError("GradNormRecorder.record: no parameter has a gradient; call it "
                             "after backward() and before zero_grad()")
        self.l2.append(float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads))))
        self.l1.append(float(sum(g.double().abs().sum() for g in grads)))


def _median_filter(values: np.ndarray, width: int, count: int | None = None) -> np.ndarray:
    """Running median of odd ``width``, centred, with edge values repeated at both ends; the
    first ``count`` values (all by default), computed a block of windows at a time (at most
    about 32 MB of copies, whatever the width)."""
    half = width // 2
    padded = np.pad(values, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)[:count]
    rows = max(1, 2**22 // width)
    return np.concatenate([np.median(windows[i:i + rows], axis=1)
                           for i in range(0, len(windows), rows)])


@dataclass(frozen=True)
class RefinedSchedule:
    """A schedule given by its values at steps ``0 .. T-1`` (``peak`` times ``shape``); 0
    from step ``T`` on."""

    shape: tuple[float, ...]  # in [0, 1], max 1
    peak: float = 1.0

    def __post_init__(self) -> None:
        owner = "RefinedSchedule"
        shape = self.shape
        if isinstance(shape, str) or not isinstance(shape, Sequence | np.ndarray):
            raise TypeError(f"{owner}: shape must be a sequence of reals, got {show(shape)}")
        for i, v in enumerate(shape):
            check_real(owner, f"shape[{i}]", v, low=0.0, low_open=False)
        check_real(owner, "peak", self.peak, low=0.0, low_open=False)
        if not math.isfinite(self.peak * max(shape, default=0.0)):
            raise ValueError(f"{owner}: peak * max(shape) must be finite, got peak="
                             f"{self.peak!r} and max(shape)={max(shape)!r}")
        object.__setattr__(self, "shape", tuple(float(v) for v in shape))

    def __call__(self, step: int) -> float:
        check_step("RefinedSchedule", step)
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
        tau: median-filter width as a fraction of the run, in ``[0, 1]`` (default 0.1).
        resolution: points the norm sequence is resampled to, at least 2 (default 10,000).
        peak: the schedule's maximum learning rate, finite and >= 0 (default 1.0; tune it
            with a sweep).

    Returns:
        A :class:`RefinedSchedule` of the same length as ``norms``.

    Raises:
        TypeError, ValueError: fewer than two norms, a norm that is not finite and > 0,
            ``tau`` outside ``[0, 1]``, ``resolution < 2``, a ``peak`` that is not finite and
            >= 0, or norms too far apart to weigh in float64 (over about 150 decades).

    References:
        Defazio, Cutkosky, Mehta & Mishchenko, "When, Why and How Much? Adaptive Learning Rate
        Scheduling by Refinement", 2023, arXiv:2310.07831, Algorithm 1.
    """
    G = _norms(norms)
    if method not in ("sgd", "adam"):
        raise ValueError(f"refine: method must be 'sgd' or 'adam', got {method!r}")
    tau = check_real("refine", "tau", tau, low=0.0, low_open=False, high=1.0, high_open=False)
    resolution = check_int("refine", "resolution", resolution, low=2)
    peak = check_real("refine", "peak", peak, low=0.0, low_open=False)
    T = len(G)
    grid = np.linspace(0, T - 1, resolution)
    smooth = np.interp(grid, np.arange(T), G)  # (N,)
    width = 2 * int(tau * resolution / 2) + 1
    if width > 1:
        extended = np.pad(smooth, (0, 2 * width), mode="reflect")
        smooth = _median_filter(extended, width, resolution)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        weights = smooth ** (-2.0 if method == "sgd" else -1.0)
        tail = np.cumsum(weights[::-1])[::-1] - weights  # sum over p > t
        eta = weights * tail
        top = eta.max()
    if not (np.all(np.isfinite(eta)) and math.isfinite(top) and top > 0):
        raise ValueError(f"refine: norms from {G.min():g} to {G.max():g} are too far apart "
                         f"(or too extreme) to weigh in float64; rescale them")
    eta /= top
    shape = np.interp(np.arange(T), grid, eta)
    return RefinedSchedule(tuple(float(v) for v in shape), peak)


def _norms(norms: Iterable[float]) -> np.ndarray:
    """``norms`` as a float64 vector of at least two positive finite values."""
    message = "refine: norms must be at least two positive finite values"
    if isinstance(norms, torch.Tensor):
        norms = norms.detach().cpu().reshape(-1).tolist()
    if isinstance(norms, str | bytes) or not isinstance(norms, Iterable):
        raise TypeError(f"{message}, got {show(norms)}")
    values = list(norms)
    try:
        G = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{message}, got {show(values)}") from None
    if G.ndim != 1 or len(G) < 2 or not np.all(np.isfinite(G)) or np.any(G <= 0):
        raise ValueError(f"{message}, got {show(values)}")
    return G
