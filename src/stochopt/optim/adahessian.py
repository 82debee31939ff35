"""AdaHessian (Yao et al., 2020): Adam with the squared Hessian diagonal as second moment."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from stochopt.optim._curvature import CurvatureOptimizer
from stochopt.optim._functional import ema
from stochopt.optim._hyper import Choice, Integer, Pair, Real

__all__ = ["AdaHessian"]


class AdaHessian(CurvatureOptimizer):
    r"""AdaHessian: an Adam-like step preconditioned by a Hutchinson estimate of the Hessian
    diagonal, averaged over the spatial positions of convolution kernels.

    Let :math:`\alpha, \beta_1, \beta_2, \epsilon, \lambda, k` be ``lr``, ``betas``, ``eps``,
    ``weight_decay`` and ``hessian_power``; :math:`z` a probe with :math:`E[zz^\top] = I`.
    On curvature steps (every ``update_period`` steps; :math:`n` of them so far):

    .. math::
        D = |z \odot Hz| \text{ (averaged over dims 2, 3, ... of kernels with 3+ dims)}, \qquad
        v_n = \beta_2 v_{n-1} + (1 - \beta_2) D^2

    and every step :math:`t`:

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        \theta \leftarrow \theta - \alpha \Big( \frac{m_t / (1 - \beta_1^t)}
            {(\sqrt{v_n} / \sqrt{1 - \beta_2^n})^k + \epsilon} + \lambda \theta \Big)

    Non-finite values follow torch: a NaN or infinite gradient entry gives a NaN (or
    infinite) momentum and parameter entry, and is never checked for; no statistic spans a
    param group, so there is no ``nonfinite=`` option. Estimates given to
    :meth:`set_curvature` must be finite (a ``ValueError`` before anything changes): a
    non-finite estimate would stay in the second moment for good. An estimate the built-in
    estimator computes from a non-finite loss propagates like a gradient, over the spatial
    positions of its kernel for tensors of three or more dims (the spatial average).

    Args:
        params: parameters or param groups.
        lr: :math:`\alpha` (default 0.15, the official default).
        betas: :math:`(\beta_1, \beta_2)` (default (0.9, 0.999)).
        eps: :math:`\epsilon` (default 1e-4).
        weight_decay: :math:`\lambda`, scaled by the learning rate only (default 0).
        hessian_power: :math:`k \in [0, 1]` (default 1; 0.5 is the paper's suggestion for some
            tasks).
        update_period: refresh the Hessian estimate every this many steps (default 1, as in
            the paper; larger values amortize the extra backward pass).
        distribution: probe distribution, ``"rademacher"`` (default) or ``"gaussian"``.
        seed: seed of the optimizer's own probe generator, an integer in
            ``[0, 2**63 - 1]`` (default 0).
        state_precision: ``"native"`` (the parameter's dtype), ``"fp32"``, ``"bf16"`` or
            ``"8bit"`` (block-wise quantized; see :mod:`stochopt.optim._storage`)
            (default ``"native"``).
        maximize: maximize the objective instead (default False).
        fused: run the compiled fused path; ``None`` picks it on CUDA only (default None).
        process_group: the data-parallel group (DDP) over which curvature estimates are
            averaged, so they equal the whole batch's; see :mod:`stochopt.optim._curvature`
            for the training loop under DDP (default None: no averaging; ``"world"`` or
            a ``torch.distributed`` process group).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = AdaHessian(model.parameters(), lr=0.1)
        >>> opt.zero_grad()
        >>> opt.backward(model(torch.randn(8, 4)).square().mean())
        >>> opt.step()

    References:
        Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney, "ADAHESSIAN: An Adaptive Second Order
        Optimizer for Machine Learning", AAAI 2021, arXiv:2006.00719. Official code:
        https://github.com/amirgholami/adahessian
        (``image_classification/optim_adahessian.py``, commit 935a0476).

    Note:
        The official code refreshes every step (``update_period=1``), where this is its rule
        exactly. With a longer period the EMA takes only fresh estimates and its bias
        correction counts refreshes (:math:`n = \lceil t / \text{period} \rceil`); the official
        code's 3-d tensors hit an undefined branch, here every tensor of three or more dims
        is averaged over dims 2 and up. Probes come from the optimizer's generator (``seed``),
        not the global one, and its state is saved in ``state_dict``. With
        ``state_precision="8bit"`` the squared-curvature EMA, which spans twice the decades of
        the curvature, loses entries more than seven decades below their block's maximum
        (they then step by :math:`m/\epsilon`); prefer ``"bf16"`` or native state.
    """

    nonnegative_states = frozenset({"exp_hessian_diag_sq"})
    hyperparameters = (
        Real("lr"),
        Pair("betas", ("beta1", "beta2")),
        Real("eps"),
        Real("weight_decay"),
        Real("hessian_power", high=1.0, high_closed=True),
        Integer("update_period"),
        Choice("distribution", ("rademacher", "gaussian")),
    )

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 0.15, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-4,
                 weight_decay: float = 0.0, hessian_power: float = 1.0, update_period: int = 1,
                 distribution: str = "rademacher", seed: int = 0, state_precision: str = "native",
                 maximize: bool = False, fused: bool | None = None,
                 process_group: Any = None) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        hessian_power=hessian_power, update_period=update_period,
                        distribution=distribution)
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision, seed=seed,
                         process_group=process_group)

    def splittable(self, group: dict[str, Any]) -> bool:
        return False  # the refresh averages a kernel over its spatial positions

    def init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"exp_avg": torch.zeros_like(p), "exp_hessian_diag_sq": torch.zeros_like(p)}

    @staticmethod
    def refresh(p: Tensor, d: Tensor, state: dict[str, Tensor], c: Any,
                h: Any) -> tuple[None, dict[str, Tensor]]:
        D = d.abs()
        if D.ndim >= 3:  # a convolution kernel: average over its spatial positions
            D = D.mean(dim=tuple(range(2, D.ndim)), keepdim=True).expand_as(d)
        return None, {"exp_hessian_diag_sq": ema(state["exp_hessian_diag_sq"], D * D, h.beta2)}

    @staticmethod
    def coefficients(step: Tensor, h: Any) -> dict[str, Tensor]:
        refreshes = torch.div(step - 1, h.update_period, rounding_mode="floor") + 1
        return {"bias_correction1": 1 - h.beta1**step,
                "bias_correction2_sqrt": (1 - h.beta2**refreshes).sqrt()}

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        m = ema(state["exp_avg"], g, h.beta1)
        v = state["exp_hessian_diag_sq"]
        k = h.hessian_power
        denom = v.sqrt() ** k / c.bias_correction2_sqrt**k + h.eps
        p = p - h.lr * (m / c.bias_correction1 / denom + h.weight_decay * p)
        return p, {"exp_avg": m}
