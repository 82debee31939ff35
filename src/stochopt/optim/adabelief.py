"""AdaBelief (Zhuang et al., 2020), matching the official ``adabelief-pytorch`` 0.2.1."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from stochopt.optim._engine import ElementwiseOptimizer
from stochopt.optim._functional import decoupled_weight_decay, ema, l2_weight_decay
from stochopt.optim._hyper import Flag, Pair, Real

__all__ = ["AdaBelief"]


class AdaBelief(ElementwiseOptimizer):
    r"""AdaBelief: adapt the step size by the belief in the observed gradient.

    Let :math:`\alpha, \beta_1, \beta_2, \epsilon, \lambda` be ``lr``, ``betas``, ``eps`` and
    ``weight_decay``. The second moment tracks the squared *deviation* of the gradient from its
    EMA, and :math:`\epsilon` is added to that state in place, every step (official code):

    .. math::
        \begin{align*}
        \theta &\leftarrow \theta (1 - \alpha\lambda) \quad\text{(or } \theta(1-\lambda)
            \text{ with fixed\_decay, or } g_t \leftarrow g_t + \lambda\theta
            \text{ without weight\_decouple)} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
        s_t &= \beta_2 s_{t-1} + (1 - \beta_2) (g_t - m_t)^2 + \epsilon
            \qquad (\text{amsgrad: } \hat s_t = \max(\hat s_{t-1}, s_t)) \\
        \theta &\leftarrow \theta - \frac{\alpha}{1 - \beta_1^t}\,
            \frac{m_t}{\sqrt{\hat s_t} / \sqrt{1 - \beta_2^t} + \epsilon}
        \end{align*}

    With ``rectify`` (RAdam's variance rectification), let
    :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)`. If :math:`\rho_t \ge 5`,

    .. math::
        r_t = \sqrt{\frac{(1-\beta_2^t)(\rho_t-4)(\rho_t-2)\rho_\infty}
                         {(\rho_\infty-4)(\rho_\infty-2)\rho_t}}, \qquad
        \theta \leftarrow \theta - \frac{\alpha r_t}{1-\beta_1^t}
            \frac{m_t}{\sqrt{s_t} + \epsilon};

    otherwise :math:`\theta \leftarrow \theta - \alpha m_t / (1-\beta_1^t)` if
    ``degenerated_to_sgd``, else the parameter is left unchanged.

    Args:
        params: parameters or param groups.
        lr: learning rate :math:`\alpha` (default 1e-3).
        betas: :math:`(\beta_1, \beta_2)` (default (0.9, 0.999)).
        eps: :math:`\epsilon` (default 1e-16). Because it accumulates in :math:`s_t`,
            :math:`\sqrt{s_t} \ge \sqrt{\epsilon/(1-\beta_2)}`; the authors recommend 1e-16
            for transformers and GANs and 1e-8 for CNNs on image classification.
        weight_decay: :math:`\lambda` (default 0).
        amsgrad: use the running maximum of :math:`s_t` (default False).
        weight_decouple: decoupled (AdamW-style) decay instead of L2 (default True).
        fixed_decay: decay by :math:`\lambda` rather than :math:`\alpha\lambda` (default False).
        rectify: RAdam rectification (default True).
        degenerated_to_sgd: take an SGD-with-momentum step while :math:`\rho_t < 5`
            (default True).
        state_precision: ``"native"`` (the parameter's dtype), ``"fp32"``, ``"bf16"`` or
            ``"8bit"`` (block-wise quantized; see :mod:`stochopt.optim._storage`)
            (default ``"native"``).
        maximize: maximize the objective instead (default False).
        fused: run the compiled fused path; ``None`` picks it on CUDA only (default None).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = AdaBelief(model.parameters(), lr=1e-3, weight_decay=1e-4)
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step()

    Non-finite values:
        As in ``torch.optim``: a NaN or infinite gradient entry makes the same entry of the
        parameter (and of its moments) non-finite, and no other; nothing is checked. With
        8-bit state a non-finite state value is stored as 0 (see :mod:`stochopt.quant`), the
        parameter entry stays non-finite.

    References:
        Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan, "AdaBelief Optimizer:
        Adapting Stepsizes by the Belief in Observed Gradients", NeurIPS 2020, arXiv:2010.07468.
        Official code: https://github.com/juntang-zhuang/Adabelief-Optimizer (0.2.1).

    Note:
        Defaults and every flag follow ``adabelief-pytorch`` 0.2.1, including two of its
        quirks: with ``rectify`` the rectified step divides by :math:`\sqrt{s_t}`, not by the
        AMSGrad maximum; and :math:`\epsilon` is added to :math:`s_t` in place. Departures:
        flags live in the param group (per group, saved in ``state_dict``); L2 decay without
        ``weight_decouple`` does not modify ``p.grad``; half-precision parameters keep state in
        their own dtype (the rule computes in float32) instead of being cast to float32.
    """

    nonnegative_states = frozenset({"exp_avg_var", "max_exp_avg_var"})
    hyperparameters = (
        Real("lr"),
        Pair("betas", ("beta1", "beta2")),
        Real("eps"),
        Real("weight_decay"),
        Flag("amsgrad"),
        Flag("weight_decouple"),
        Flag("fixed_decay"),
        Flag("rectify"),
        Flag("degenerated_to_sgd"),
    )

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-3, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-16,
                 weight_decay: float = 0.0, amsgrad: bool = False, weight_decouple: bool = True,
                 fixed_decay: bool = False, rectify: bool = True, degenerated_to_sgd: bool = True,
                 state_precision: str = "native",
                 maximize: bool = False, fused: bool | None = None) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        weight_decouple=weight_decouple, fixed_decay=fixed_decay,
                        rectify=rectify, degenerated_to_sgd=degenerated_to_sgd)
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision)

    def init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        state = {"exp_avg": torch.zeros_like(p), "exp_avg_var": torch.zeros_like(p)}
        if group["amsgrad"]:
            state["max_exp_avg_var"] = torch.zeros_like(p)
        return state

    @staticmethod
    def coefficients(step: Tensor, h: Any) -> dict[str, Tensor]:
        bias_correction2 = 1 - h.beta2**step
        c = {"bias_correction1": 1 - h.beta1**step,
             "bias_correction2_sqrt": bias_correction2.sqrt()}
        if h.rectify:
            rho_inf = 2 / (1 - h.beta2) - 1
            rho = rho_inf - 2 * step * h.beta2**step / bias_correction2
            ratio = (bias_correction2 * (rho - 4) * (rho - 2) * rho_inf
                     / ((rho_inf - 4) * (rho_inf - 2) * rho))
            c["tractable"] = rho >= 5  # the variance of the adaptive step is defined
            c["rectifier"] = torch.where(c["tractable"], ratio, 0.0).sqrt()
        return c

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        if not h.weight_decouple:
            g = l2_weight_decay(g, p, h.weight_decay)
        elif h.fixed_decay:
            p = p * (1 - h.weight_decay)
        else:
            p = decoupled_weight_decay(p, h.lr, h.weight_decay)
        m = ema(state["exp_avg"], g, h.beta1)
        s = ema(state["exp_avg_var"], (g - m) ** 2, h.beta2) + h.eps
        new_state = {"exp_avg": m, "exp_avg_var": s}
        s_hat = s
        if h.amsgrad:
            s_hat = new_state["max_exp_avg_var"] = torch.maximum(state["max_exp_avg_var"], s)
        if not h.rectify:
            step_size = h.lr / c.bias_correction1
            return p - step_size * m / (s_hat.sqrt() / c.bias_correction2_sqrt + h.eps), new_state
        adaptive = p - h.lr * c.rectifier / c.bias_correction1 * m / (s.sqrt() + h.eps)
        fallback = p - h.lr / c.bias_correction1 * m if h.degenerated_to_sgd else p
        return torch.where(c.tractable, adaptive, fallback), new_state
