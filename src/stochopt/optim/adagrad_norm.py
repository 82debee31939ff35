"""AdaGrad-Norm (Ward, Wu & Bottou, 2019): one adaptive step size per group, tensor or row."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from stochopt._distributed import full_like_layout
from stochopt.optim._engine import ElementwiseOptimizer, Reduction
from stochopt.optim._functional import l2_weight_decay
from stochopt.optim._hyper import Choice, Real
from stochopt.optim._storage import compute_precision

__all__ = ["AdaGradNorm"]

_MODES = ("global", "tensor", "row")
_NONFINITE = ("propagate", "raise", "skip")


class AdaGradNorm(ElementwiseOptimizer):
    r"""AdaGrad-Norm: gradient descent with step size :math:`\eta / b_t`, where
    :math:`b_t^2` accumulates squared gradient norms.

    Let :math:`\eta, b_0^2, \lambda` be ``lr``, ``initial_accumulator_value`` and
    ``weight_decay``.

    .. math::
        \begin{align*}
        g_t &\leftarrow g_t + \lambda\theta \\
        b_t^2 &= b_{t-1}^2 + \lVert g_t \rVert^2 \\
        \theta &\leftarrow \theta - \eta\, g_t / b_t
        \end{align*}

    ``mode`` chooses what one :math:`b` covers: ``"global"`` (the paper's algorithm) all
    parameters of the param group that have a gradient this step; ``"tensor"`` each parameter
    tensor; ``"row"`` each slice along dim 0 of tensors with two or more dims (rows of a weight
    matrix, output channels of a convolution; AdAdaGrad's layer-wise variant), and each whole
    tensor of fewer dims.

    Args:
        params: parameters or param groups.
        lr: :math:`\eta` (default 1.0).
        mode: ``"global"``, ``"tensor"`` or ``"row"`` (default ``"global"``).
        initial_accumulator_value: :math:`b_0^2 > 0` (default 1e-2, as in AdAdaGrad's code).
        weight_decay: L2 penalty :math:`\lambda` (default 0).
        nonfinite: what a step does when the squared gradient norm of the group is NaN or
            infinite (a NaN or infinite gradient, or parameter under weight decay):
            ``"propagate"`` lets it through, ``"raise"`` raises
            :class:`~stochopt.errors.NonFiniteError` naming the group and the parameters,
            ``"skip"`` skips the group's step (parameters, state and step count unchanged)
            with a :class:`~stochopt.errors.NonFiniteWarning` (default ``"propagate"``). See
            "Non-finite values" below.
        state_precision: ``"native"`` (the parameter's dtype), ``"fp32"``, ``"bf16"`` or
            ``"8bit"`` (block-wise quantized; see :mod:`stochopt.optim._storage`)
            (default ``"native"``).
        maximize: maximize the objective instead (default False).
        fused: run the compiled fused path; ``None`` picks it on CUDA only (default None).
        shard_group: a ``torch.distributed`` process group (or ``"world"`` for the default
            one: use the name under ``ZeroRedundancyOptimizer``, which pickles its kwargs)
            over which the global squared norm is summed, for when each rank holds a different
            part of the parameters (ZeRO, which otherwise is refused in ``"global"`` mode).
            Not needed under DDP (replicated parameters) or FSDP2 (DTensor norms reduce
            themselves) (default None).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = AdaGradNorm(model.parameters(), lr=1.0, mode="row")
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step()

    References:
        Ward, Wu & Bottou, "AdaGrad Stepsizes: Sharp Convergence Over Nonconvex Landscapes",
        JMLR 21, 2020, arXiv:1806.01811.
        Lau, Liu & Kolar, "AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient
        Methods", 2024, arXiv:2402.11215 (code: https://github.com/timlautk/AdAdaGrad).

    Non-finite values:
        With ``nonfinite="propagate"`` (the default, torch's behaviour for one tensor) a NaN
        or infinite gradient enters :math:`b_t^2` and stays there: in ``"global"`` mode it
        turns *every* parameter of the group into NaN from that step on, in ``"tensor"`` mode
        its tensor, in ``"row"`` mode its row. ``"raise"`` and ``"skip"`` check the whole
        group's squared gradient norm (an extra norm in ``"tensor"`` and ``"row"`` modes)
        before anything changes; with ``shard_group`` the norm is summed over ranks first,
        so every rank makes the same decision.

    Note:
        In ``"global"`` mode every parameter keeps its own copy of the shared :math:`b_t^2`
        (so state shards like the parameters do); the copies agree while every parameter of
        the group receives a gradient each step. AdAdaGrad's reference code
        (``adagradnorm.py``, commit 135b9aad), whose 2-d and 4-d rule ``"row"`` mode follows,
        differs in ways we do not copy: it adds 1e-10 to :math:`b_t`, decays weights by
        :math:`\eta\lambda g_t` instead of adding :math:`\lambda\theta` to the gradient,
        and gives tensors of other ranks per-coordinate accumulators (to which a 1-d tensor
        also adds, where the shapes allow, the row norms of the 2-d or 4-d tensor before it).
    """

    nonnegative_states = frozenset({"sum_sq"})
    hyperparameters = (
        Real("lr"),
        Choice("mode", _MODES),
        Real("initial_accumulator_value", low_closed=False),
        Real("weight_decay"),
        Choice("nonfinite", _NONFINITE),
    )
    statistics = ("grad_sq_norm",)
    keys_added_later = frozenset({"nonfinite"})

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1.0, *, mode: str = "global",
                 initial_accumulator_value: float = 1e-2, weight_decay: float = 0.0,
                 nonfinite: str = "propagate", state_precision: str = "native",
                 maximize: bool = False, fused: bool | None = None,
                 shard_group: Any = None) -> None:
        defaults = dict(lr=lr, mode=mode, initial_accumulator_value=initial_accumulator_value,
                        weight_decay=weight_decay, nonfinite=nonfinite)
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision, shard_group=shard_group)

    def reduction(self, group: dict[str, Any]) -> Reduction:
        return {"global": Reduction.GLOBAL, "tensor": Reduction.TENSOR,
                "row": Reduction.ROW}[group["mode"]]

    def init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        rows = group["mode"] == "row" and p.ndim >= 2
        shape = (p.shape[0],) + (1,) * (p.ndim - 1) if rows else ()
        b0_sq = float(group["initial_accumulator_value"])
        return {"sum_sq": full_like_layout(p, shape, b0_sq)}

    def group_statistics(self, group: dict[str, Any], params: list[Tensor],
                         grads: list[Tensor]) -> dict[str, Tensor]:
        """The squared norm of the (decayed) gradient over the whole group, in float64
        (zero in the per-tensor modes unless the ``nonfinite`` policy reads it), from
        half-precision gradients upcast first, as the rule computes (a bf16 norm would carry
        8 significant bits)."""
        if group["mode"] != "global" and group["nonfinite"] == "propagate":
            return {"grad_sq_norm": torch.zeros((), dtype=torch.float64)}
        wd = float(group["weight_decay"])
        grads = [compute_precision(g) for g in grads]
        if wd != 0:
            params = [compute_precision(p) for p in params]
        vectors = grads if wd == 0 else torch._foreach_add(grads, params, alpha=wd)
        device = vectors[0].device
        norms = [n.to(device, torch.float64) for n in torch._foreach_norm(vectors)]
        return {"grad_sq_norm": torch.stack(norms).square().sum()}

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        g = l2_weight_decay(g, p, h.weight_decay)
        b_sq = state["sum_sq"]
        if h.mode == "global":
            b_sq = b_sq + h.grad_sq_norm
        elif h.mode == "tensor":
            b_sq = b_sq + (g * g).sum()
        elif b_sq.ndim >= 2:  # row: one accumulator per slice along dim 0
            b_sq = b_sq + (g * g).sum(dim=tuple(range(1, g.ndim)), keepdim=True)
        else:  # row mode on a tensor of fewer than two dims: one accumulator for it
            b_sq = b_sq + (g * g).sum()
        return p - h.lr * g / b_sq.sqrt(), {"sum_sq": b_sq}
