"""diffGrad (Dubey et al., 2019), the fixed v2 rule of the official code."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from stochopt.optim._engine import ElementwiseOptimizer
from stochopt.optim._functional import ema, l2_weight_decay
from stochopt.optim._hyper import Pair, Real

__all__ = ["DiffGrad"]


class DiffGrad(ElementwiseOptimizer):
    r"""diffGrad: Adam whose step is damped where the gradient changes slowly.

    Let :math:`\alpha, \beta_1, \beta_2, \epsilon, \lambda` be ``lr``, ``betas``, ``eps`` and
    ``weight_decay``; :math:`g_0 = 0`.

    .. math::
        \begin{align*}
        g_t &\leftarrow g_t + \lambda\theta \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \xi_t &= \operatorname{sigmoid}(|g_{t-1} - g_t|) \in [\tfrac12, 1) \\
        \theta &\leftarrow \theta - \alpha \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}\,
            \frac{\xi_t m_t}{\sqrt{v_t} + \epsilon}
        \end{align*}

    Args:
        params: parameters or param groups.
        lr: learning rate :math:`\alpha` (default 1e-3).
        betas: :math:`(\beta_1, \beta_2)` (default (0.9, 0.999)).
        eps: :math:`\epsilon`, outside the bias correction as in the official code
            (default 1e-8).
        weight_decay: L2 penalty :math:`\lambda` added to the gradient the rule uses
            (``p.grad`` itself is not modified) (default 0).
        state_precision: ``"native"`` (the parameter's dtype), ``"fp32"``, ``"bf16"`` or
            ``"8bit"`` (block-wise quantized; see :mod:`stochopt.optim._storage`)
            (default ``"native"``).
        maximize: maximize the objective instead (default False).
        fused: run the compiled fused path; ``None`` picks it on CUDA only (default None).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = DiffGrad(model.parameters(), lr=1e-3)
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step()

    Non-finite values:
        As in ``torch.optim``: a NaN or infinite gradient entry makes the same entry of the
        parameter (and of its moments and stored gradient) non-finite, and no other; nothing
        is checked. With 8-bit state a non-finite state value is stored as 0 (see
        :mod:`stochopt.quant`), the parameter entry stays non-finite.

    References:
        Dubey, Chakraborty, Roy, Mukherjee, Singh & Chaudhuri, "diffGrad: An Optimization
        Method for Convolutional Neural Networks", IEEE TNNLS 2019, arXiv:1909.11015.
        Official code: https://github.com/shivram1987/diffGrad (``diffGrad_v2.py``).

    Note:
        This is the official v2 rule. The paper's code (v1) stored the previous gradient by
        reference, so :math:`g_{t-1} - g_t` was always zero and :math:`\xi_t \equiv 1/2`: the
        published results are effectively Adam at half the learning rate. The stored previous
        gradient includes the L2 term, as in the official code.

        Departures from ``diffGrad_v2.py`` (shivram1987/diffGrad, commit 93fb7fcd): the
        official code adds the L2 term into ``p.grad`` in place
        (``grad.add_(weight_decay, p.data)``); here ``p.grad`` is left as given, so
        gradients accumulated over several steps without ``zero_grad`` do not collect the
        decay of earlier steps, and code that reads ``p.grad`` after ``step`` sees the
        gradient of the loss alone. ``maximize`` (not in the official code) negates the
        gradient before the L2 term is added, as ``torch.optim`` does.
    """

    nonnegative_states = frozenset({"exp_avg_sq"})
    hyperparameters = (
        Real("lr"),
        Pair("betas", ("beta1", "beta2")),
        Real("eps"),
        Real("weight_decay"),
    )

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-3, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, state_precision: str = "native",
                 maximize: bool = False,
                 fused: bool | None = None) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision)

    def init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p),
                "previous_grad": torch.zeros_like(p)}

    @staticmethod
    def coefficients(step: Tensor, h: Any) -> dict[str, Tensor]:
        return {"step_size": h.lr * (1 - h.beta2**step).sqrt() / (1 - h.beta1**step)}

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        g = l2_weight_decay(g, p, h.weight_decay)
        m = ema(state["exp_avg"], g, h.beta1)
        v = ema(state["exp_avg_sq"], g * g, h.beta2)
        friction = torch.sigmoid((state["previous_grad"] - g).abs())  # ξ_t
        p = p - c.step_size * friction * m / (v.sqrt() + h.eps)
        return p, {"exp_avg": m, "exp_avg_sq": v, "previous_grad": g}
