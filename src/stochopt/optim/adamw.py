"""AdamW on the stochopt engine (the engine's proof against ``torch.optim.AdamW``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from stochopt.optim._engine import ElementwiseOptimizer
from stochopt.optim._functional import decoupled_weight_decay, ema
from stochopt.optim._hyper import Flag, Pair, Real
from stochopt.optim._validate import check_torch_flags

__all__ = ["AdamW"]


class AdamW(ElementwiseOptimizer):
    r"""Adam with decoupled weight decay.

    Let :math:`\alpha, \beta_1, \beta_2, \epsilon, \lambda` be ``lr``, ``betas``, ``eps`` and
    ``weight_decay``; :math:`g_t` the gradient at step :math:`t \ge 1`.

    .. math::
        \begin{align*}
        \theta &\leftarrow \theta (1 - \alpha\lambda) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \qquad
            (\text{amsgrad: } \hat v_t = \max(\hat v_{t-1}, v_t)) \\
        \theta &\leftarrow \theta - \frac{\alpha}{1 - \beta_1^t}\,
            \frac{m_t}{\sqrt{v_t}/\sqrt{1 - \beta_2^t} + \epsilon}
        \end{align*}

    Args:
        params: parameters or param groups.
        lr: learning rate :math:`\alpha` (default 1e-3); a float or a 0-d tensor.
        betas: :math:`(\beta_1, \beta_2)` (default (0.9, 0.999)).
        eps: :math:`\epsilon`, added to the denominator (default 1e-8).
        weight_decay: decoupled decay :math:`\lambda` (default 1e-2).
        amsgrad: use the running maximum of :math:`v_t` (default False).
        maximize: maximize the objective instead (default False).
        foreach, capturable, differentiable: ``torch.optim.AdamW``'s implementation flags,
            accepted so that torch code runs unchanged (see
            :func:`~stochopt.optim._validate.check_torch_flags`): ``foreach`` changes nothing
            (the engine picks its kernels; ``fused`` chooses the compiled path), and
            ``capturable=True`` or ``differentiable=True`` raise ``UnsupportedError``.
        fused: run the compiled fused path; ``None`` picks it on CUDA only (default None).
        state_precision: ``"native"`` (the parameter's dtype), ``"fp32"``, ``"bf16"`` or
            ``"8bit"`` (block-wise quantized; see :mod:`stochopt.optim._storage`)
            (default ``"native"``).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = AdamW(model.parameters(), lr=1e-2)
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step()

    Non-finite values:
        As in ``torch.optim``: a NaN or infinite gradient entry makes the same entry of the
        parameter (and of its moments) non-finite, and no other; nothing is checked. With
        8-bit state a non-finite state value is stored as 0 (see :mod:`stochopt.quant`), the
        parameter entry stays non-finite.

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015, arXiv:1412.6980.
        Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019, arXiv:1711.05101.

    Note:
        Same signature (positional order included), defaults and update as
        ``torch.optim.AdamW``, whose state dicts load into it and back (see
        :func:`~stochopt.optim.to_torch_state_dict`); the moment update is written as an
        EMA rather than ``lerp``, so results agree to float rounding, not bit for bit. Like
        torch, the decay is scaled by the learning rate, :math:`\theta(1 - \alpha\lambda)`;
        the paper's Algorithm 2 scales it by the schedule multiplier :math:`\eta_t` alone
        (with :math:`\alpha` fixed, :math:`\lambda_{\text{paper}} = \alpha\lambda`).
    """

    nonnegative_states = frozenset({"exp_avg_sq", "max_exp_avg_sq"})
    decoupled_weight_decay = True  # a torch.optim.Adam state dict with L2 decay is refused
    torch_twin = "AdamW"  # the torch.optim optimizer of the same rule (to_torch_state_dict)
    hyperparameters = (
        Real("lr"),
        Pair("betas", ("beta1", "beta2")),
        Real("eps"),
        Real("weight_decay"),
        Flag("amsgrad"),
    )

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 state_precision: str = "native") -> None:
        check_torch_flags("AdamW", fused, foreach, capturable, differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision)

    def init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        state = {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p)
        return state

    @staticmethod
    def coefficients(step: Tensor, h: Any) -> dict[str, Tensor]:
        return {
            "step_size": h.lr / (1 - h.beta1**step),
            "bias_correction2_sqrt": (1 - h.beta2**step).sqrt(),
        }

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        p = decoupled_weight_decay(p, h.lr, h.weight_decay)
        m = ema(state["exp_avg"], g, h.beta1)
        v = ema(state["exp_avg_sq"], g * g, h.beta2)
        new_state = {"exp_avg": m, "exp_avg_sq": v}
        if h.amsgrad:
            v = new_state["max_exp_avg_sq"] = torch.maximum(state["max_exp_avg_sq"], v)
        p = p - c.step_size * m / (v.sqrt() / c.bias_correction2_sqrt + h.eps)
        return p, new_state
