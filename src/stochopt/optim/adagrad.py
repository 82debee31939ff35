"""AdaGrad (Duchi, Hazan & Singer, 2011), coordinate-wise, with sparse gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from stochopt.errors import UnsupportedError
from stochopt.optim._engine import ElementwiseOptimizer
from stochopt.optim._functional import l2_weight_decay
from stochopt.optim._hyper import Real
from stochopt.optim._validate import check_torch_flags

__all__ = ["AdaGrad"]


class AdaGrad(ElementwiseOptimizer):
    r"""AdaGrad: per-coordinate step sizes from the sum of squared gradients.

    Let :math:`\alpha, \delta, \lambda, \epsilon, S_0` be ``lr``, ``lr_decay``,
    ``weight_decay``, ``eps`` and ``initial_accumulator_value``.

    .. math::
        \begin{align*}
        \alpha_t &= \alpha / (1 + (t - 1)\delta), \qquad g_t \leftarrow g_t + \lambda\theta \\
        S_t &= S_{t-1} + g_t^2 \\
        \theta &\leftarrow \theta - \alpha_t\, g_t / (\sqrt{S_t} + \epsilon)
        \end{align*}

    A sparse gradient updates only the coordinates it touches, which is exactly the dense
    update (a zero gradient leaves :math:`S` and :math:`\theta` unchanged); weight decay would
    touch every coordinate, so it is refused with sparse gradients.

    Args:
        params: parameters or param groups.
        lr: learning rate :math:`\alpha` (default 1e-2).
        lr_decay: :math:`\delta` (default 0).
        weight_decay: L2 penalty :math:`\lambda` (default 0).
        initial_accumulator_value: :math:`S_0` (default 0).
        eps: :math:`\epsilon`, added to :math:`\sqrt{S_t}` (default 1e-10).
        foreach, differentiable: ``torch.optim.Adagrad``'s implementation flags, accepted so
            that torch code runs unchanged (see
            :func:`~stochopt.optim._validate.check_torch_flags`): ``foreach`` changes nothing
            (the engine picks its kernels; ``fused`` chooses the compiled path), and
            ``differentiable=True`` raises ``UnsupportedError``.
        maximize: maximize the objective instead (default False).
        fused: run the compiled fused path; ``None`` picks it on CUDA only (default None).
        state_precision: ``"native"`` (the parameter's dtype), ``"fp32"``, ``"bf16"`` or
            ``"8bit"`` (block-wise quantized; see :mod:`stochopt.optim._storage`)
            (default ``"native"``).

    Example:
        >>> emb = torch.nn.Embedding(10, 3, sparse=True)
        >>> opt = AdaGrad(emb.parameters(), lr=0.1)
        >>> emb(torch.tensor([1, 4])).sum().backward()
        >>> opt.step()

    Non-finite values:
        As in ``torch.optim``: a NaN or infinite gradient entry makes the same entry of the
        parameter (and of its sum of squares) non-finite, and no other; nothing is checked. With
        8-bit state a non-finite state value is stored as 0 (see :mod:`stochopt.quant`), the
        parameter entry stays non-finite.

    References:
        Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
        Optimization", JMLR 12, 2011.

    Note:
        Signature (positional order included), defaults and update match
        ``torch.optim.Adagrad``, whose state dicts load into it and back (see
        :func:`~stochopt.optim.to_torch_state_dict`).
    """

    nonnegative_states = frozenset({"sum"})
    hyperparameters = (
        Real("lr"),
        Real("lr_decay"),
        Real("weight_decay"),
        Real("initial_accumulator_value"),
        Real("eps"),
    )
    supports_sparse = True
    torch_twin = "Adagrad"  # the torch.optim optimizer of the same rule (to_torch_state_dict)

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-2,
                 lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10,
                 foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 state_precision: str = "native") -> None:
        check_torch_flags("AdaGrad", fused, foreach, differentiable=differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps)
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision)

    def init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"sum": torch.full_like(p, float(group["initial_accumulator_value"]))}

    def check_sparse_group(self, group: dict[str, Any]) -> None:
        if group["weight_decay"] != 0:
            raise UnsupportedError(
                f"AdaGrad: weight_decay={group['weight_decay']!r} cannot be combined with sparse "
                f"gradients (decay touches every coordinate); use weight_decay=0 or dense grads"
            )

    @staticmethod
    def coefficients(step: Tensor, h: Any) -> dict[str, Tensor]:
        return {"clr": h.lr / (1 + (step - 1) * h.lr_decay)}

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        g = l2_weight_decay(g, p, h.weight_decay)
        S = state["sum"] + g * g
        return p - c.clr * g / (S.sqrt() + h.eps), {"sum": S}
