"""Composite stochastic mirror descent / proximal SGD (Liu & Zhou, 2024), with the last,
averaged and suffix-averaged iterates."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt.optim._engine import ElementwiseOptimizer, Reduction
from stochopt.optim._hyper import Choice, Integer, Real

__all__ = ["ProxSGD", "soft_threshold"]

PROXES = ("none", "l1", "elastic_net", "box", "simplex")


def soft_threshold(z: Tensor, threshold: Tensor | float) -> Tensor:
    r""":math:`\operatorname{sign}(z)\max(|z| - \tau, 0)`, the proximal map of
    :math:`\tau\lVert\cdot\rVert_1`."""
    if not isinstance(z, Tensor):
        raise TypeError(f"soft_threshold: z must be a tensor, got {show(z)}")
    return z.sign() * (z.abs() - threshold).clamp(min=0)


class ProxSGD(ElementwiseOptimizer):
    r"""Composite stochastic mirror descent for :math:`\min_{x \in X} f(x) + h(x)`.

    Let :math:`\eta_t` be ``lr`` (drive it with a schedule such as
    :class:`stochopt.schedules.InverseSqrt`), :math:`g_t` a stochastic gradient of :math:`f`.
    With the Euclidean mirror map the step is a proximal step,

    .. math:: x_{t+1} = \operatorname{prox}_{\eta_t h + I_X}(x_t - \eta_t g_t),

    for ``prox`` = ``"l1"`` (:math:`h = \lambda_1\lVert x\rVert_1`: soft thresholding),
    ``"elastic_net"`` (:math:`h = \lambda_1\lVert x\rVert_1 + \tfrac{\lambda_2}{2}\lVert
    x\rVert^2`: soft thresholding then :math:`/(1 + \eta_t\lambda_2)`), ``"box"``
    (:math:`X = [\text{lower}, \text{upper}]^d`: clipping) or ``"none"``. With ``"simplex"``
    each parameter tensor lives on the probability simplex and the entropic mirror map gives
    the exponentiated-gradient step :math:`x_{t+1} \propto x_t \odot e^{-\eta_t g_t}`.

    The state keeps the uniform average :math:`\bar x_t = \frac1t\sum_{s \le t} x_s` and, from
    step ``suffix_start`` on, the suffix average; the parameter itself is the last iterate.

    Args:
        params: parameters or param groups; with ``"simplex"``, real tensors on the
            probability simplex (entries >= 0 summing to 1, up to the square root of the
            dtype's machine epsilon): a tensor off it is refused, never projected silently
            (``x / x.sum()`` puts entries >= 0 on it).
        lr: :math:`\eta_t` (default 1e-2).
        prox: ``"none"``, ``"l1"``, ``"elastic_net"``, ``"box"`` or ``"simplex"``.
        l1: :math:`\lambda_1` (default 0).
        l2: :math:`\lambda_2` (default 0).
        lower: box lower bound, ``<= upper``, in ``[-inf, inf)`` (default -inf: none).
        upper: box upper bound, in ``(-inf, inf]`` (default inf: none).
        suffix_start: average the iterates after this step in ``suffix_average`` (0: off).
        state_precision: state storage (default ``"native"``).
        maximize: maximize the objective instead (default False).
        fused: run the compiled fused path; ``None`` picks it on CUDA only (default None).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([0.5, 0.01]))
        >>> opt = ProxSGD([w], lr=0.1, prox="l1", l1=0.5)
        >>> w.grad = torch.zeros(2)
        >>> opt.step(); w.data
        tensor([0.4500, 0.0000])

    Non-finite values follow torch: a NaN or infinite gradient entry gives a NaN (or
    infinite) parameter entry and average, and is never checked for. With ``"simplex"`` the
    renormalization spans the tensor, so one NaN gradient entry (or a ``-inf`` one) makes the
    whole tensor NaN; no statistic spans a param group, so nothing spreads further.
    ``l1``, ``l2``, ``lower`` and ``upper`` are read only by the ``prox`` that uses them.

    Raises:
        TypeError, ValueError: at construction, ``add_param_group`` and ``load_state_dict``,
            for a bad hyperparameter, ``lower > upper``, or a ``"simplex"`` parameter off the
            simplex (the message names the group and parameter); nothing is changed.

    References:
        Liu & Zhou, "Revisiting the Last-Iterate Convergence of Stochastic Gradient Methods",
        ICLR 2024, arXiv:2312.08531; Beck & Teboulle, "Mirror descent and nonlinear projected
        subgradient methods for convex optimization", 2003.
    """

    hyperparameters = (
        Real("lr"),
        Choice("prox", PROXES),
        Real("l1"),
        Real("l2"),
        Real("lower", low=-math.inf),
        Real("upper", low=-math.inf, low_closed=False, high_closed=True),
        Integer("suffix_start", low=0),
    )

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-2, *, prox: str = "none",
                 l1: float = 0.0, l2: float = 0.0, lower: float = -math.inf,
                 upper: float = math.inf, suffix_start: int = 0,
                 state_precision: str = "native", maximize: bool = False,
                 fused: bool | None = None) -> None:
        defaults = dict(lr=lr, prox=prox, l1=l1, l2=l2, lower=lower, upper=upper,
                        suffix_start=suffix_start)
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision)

    def check_group(self, owner: str, group: Mapping[str, Any]) -> None:
        """``lower <= upper``, and a ``"simplex"`` group's parameters on the simplex."""
        lower, upper = float(group["lower"]), float(group["upper"])
        if lower > upper:
            raise ValueError(f"{owner}: lower must be <= upper, got {lower!r} > {upper!r}")
        if group["prox"] == "simplex" and "params" in group:
            index = len(self.param_groups)
            params = [p[1] if isinstance(p, tuple) else p for p in group["params"]]
            _check_on_simplex(owner, index, params)

    def check_state_dict(self, state_dict: Any
                         ) -> tuple[list[dict[str, Any]], dict[Tensor, dict[str, Any]]]:
        """The engine's checks, and that groups loaded with ``"simplex"`` hold parameters
        on the simplex."""
        groups, state = super().check_state_dict(state_dict)
        for index, group in enumerate(groups):
            if group["prox"] == "simplex":
                _check_on_simplex("ProxSGD.load_state_dict", index, group["params"])
        return groups, state

    def reduction(self, group: dict[str, Any]) -> Reduction:
        """The simplex step renormalizes over a whole tensor; the other proxes are
        elementwise."""
        return Reduction.TENSOR if group["prox"] == "simplex" else Reduction.ELEMENTWISE

    def init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        state = {"average": torch.zeros_like(p)}
        if group["suffix_start"] > 0:
            state["suffix_average"] = torch.zeros_like(p)
        return state

    @staticmethod
    def coefficients(step: Tensor, h: Any) -> dict[str, Tensor]:
        in_suffix = (step - h.suffix_start).clamp(min=0)
        return {"inverse_count": 1 / step,
                "inverse_suffix_count": torch.where(in_suffix > 0, 1 / in_suffix, 0.0)}

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        p = ProxSGD.step_and_prox(p, g, h)
        average = state["average"]
        new_state = {"average": average + (p - average) * c.inverse_count}
        if h.suffix_start > 0:
            suffix = state["suffix_average"]
            new_state["suffix_average"] = suffix + (p - suffix) * c.inverse_suffix_count
        return p, new_state

    @staticmethod
    def step_and_prox(p: Tensor, g: Tensor, h: Any) -> Tensor:
        """The mirror step for the group's ``prox``."""
        if h.prox == "simplex":  # entropic mirror map: exponentiated gradient, renormalized
            logits = p.log() - h.lr * g
            return torch.softmax(logits.reshape(-1), dim=0).view_as(p)
        z = p - h.lr * g
        if h.prox == "l1":
            return soft_threshold(z, h.lr * h.l1)
        if h.prox == "elastic_net":
            return soft_threshold(z, h.lr * h.l1) / (1 + h.lr * h.l2)
        if h.prox == "box":
            return torch.minimum(torch.maximum(z, h.lower), h.upper)
        return z


def _check_on_simplex(owner: str, index: int, params: list[Tensor]) -> None:
    """Each parameter is real, finite, >= 0 and sums to 1 (within the square root of its
    dtype's machine epsilon): the entropic step takes its logarithm and renormalizes."""
    for position, p in enumerate(params):
        at = f"parameter {position} of param group {index} (shape {tuple(p.shape)})"
        if p.is_complex():
            raise TypeError(f"{owner}: prox='simplex' needs real parameters, but {at} is "
                            f"complex")
        x = p.detach()
        x = x.full_tensor() if type(x).__name__ == "DTensor" else x
        total = float(x.double().sum())
        tolerance = math.sqrt(torch.finfo(p.dtype).eps)
        negative = bool((x < 0).any()) or not bool(torch.isfinite(x).all())
        if negative or not abs(total - 1.0) <= tolerance:
            problem = ("has a negative, NaN or infinite entry" if negative
                       else f"sums to {total!r}")
            raise ValueError(f"{owner}: with prox='simplex' every parameter must lie on the "
                             f"probability simplex (entries >= 0 summing to 1), but {at} "
                             f"{problem}; start from e.g. torch.full(shape, 1 / n) or "
                             f"x / x.sum()")
