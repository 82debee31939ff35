"""Learning rate as a function of batch size (Granziol, Zohren & Roberts, 2022): the linear and
square-root scaling rules, and a learner that sets SGD's learning rate and momentum from the
extreme eigenvalues of the batch Hessian, estimated by stochastic Lanczos quadrature."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from stochopt.curvature import flatten, hvp, lanczos, unflatten

__all__ = ["HeavyBall", "SLQLearner", "heavy_ball", "scale_lr"]

_RULES = ("linear", "sqrt")


def scale_lr(lr: float, from_batch: int, to_batch: int, rule: str = "linear") -> float:
    r"""The learning rate for batch size ``to_batch`` given a good one at ``from_batch``.

    ``"linear"``: :math:`\alpha (B'/B)` (SGD); ``"sqrt"``: :math:`\alpha\sqrt{B'/B}` (Adam and
    other adaptive methods), as derived by Granziol et al. from the batch Hessian's spectrum.

    References:
        Granziol, Zohren & Roberts, "Learning Rates as a Function of Batch Size: A Random
        Matrix Theory Approach to Neural Network Training", JMLR 23, 2022, arXiv:2006.09092.
    """
    if rule not in _RULES:
        raise ValueError(f"scale_lr: rule must be one of {_RULES}, got {rule!r}")
    for name, value in (("from_batch", from_batch), ("to_batch", to_batch)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"scale_lr: {name} must be a positive integer, got {value!r}")
    ratio = to_batch / from_batch
    return lr * (ratio if rule == "linear" else math.sqrt(ratio))


@dataclass(frozen=True)
class HeavyBall:
    """Polyak's optimal heavy-ball parameters for curvature in ``[lambda_min, lambda_max]``."""

    lr: float
    momentum: float
    lambda_min: float
    lambda_max: float


def heavy_ball(lambda_min: float, lambda_max: float) -> HeavyBall:
    r""":math:`\alpha = 4/(\sqrt{\lambda_{max}} + \sqrt{\lambda_{min}})^2`,
    :math:`\rho = ((\sqrt\kappa - 1)/(\sqrt\kappa + 1))^2`, :math:`\kappa =
    \lambda_{max}/\lambda_{min}`: the fastest heavy-ball rate on a quadratic with that
    spectrum (Polyak, 1964)."""
    if not 0 < lambda_min <= lambda_max:
        raise ValueError(f"heavy_ball: need 0 < lambda_min <= lambda_max, got {lambda_min}, "
                         f"{lambda_max}")
    root_min, root_max = math.sqrt(lambda_min), math.sqrt(lambda_max)
    kappa_root = root_max / root_min
    return HeavyBall(4 / (root_max + root_min) ** 2, ((kappa_root - 1) / (kappa_root + 1)) ** 2,
                     lambda_min, lambda_max)


class SLQLearner:
    """Set an SGD optimizer's learning rate and momentum from the batch Hessian, every
    ``period`` steps.

    Each refresh runs ``lanczos_steps`` Lanczos iterations on Hessian-vector products of the
    given loss; the largest Ritz value is :math:`\\lambda_{max}` and the smallest positive one
    :math:`\\lambda_{min}` (floored at ``min_ratio * lambda_max`` so a near-singular batch
    Hessian cannot stall training); :func:`heavy_ball` maps them to ``lr`` and ``momentum``,
    which are written into every param group.

    Args:
        optimizer: an optimizer whose groups have ``lr`` and ``momentum`` (``torch.optim.SGD``).
        params: the parameters the Hessian is taken over.
        period: refresh every this many calls of :meth:`maybe_update` (default 100).
        lanczos_steps: Krylov dimension (default 20).
        min_ratio: floor of :math:`\\lambda_{min}/\\lambda_{max}` (default 1e-3).
        generator: source of the Lanczos start vectors.

    References:
        Granziol, Zohren & Roberts, 2022, arXiv:2006.09092 (the on-the-fly learner);
        Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[Tensor], *,
                 period: int = 100, lanczos_steps: int = 20, min_ratio: float = 1e-3,
                 generator: torch.Generator | None = None) -> None:
        if period < 1 or lanczos_steps < 1 or not 0 < min_ratio <= 1:
            raise ValueError(f"SLQLearner: need period >= 1, lanczos_steps >= 1 and min_ratio "
                             f"in (0, 1], got {period}, {lanczos_steps}, {min_ratio}")
        self.optimizer, self.params = optimizer, list(params)
        self.period, self.lanczos_steps, self.min_ratio = period, lanczos_steps, min_ratio
        self.generator = generator or torch.Generator().manual_seed(0)
        self.calls = 0
        self.history: list[HeavyBall] = []

    def estimate(self, loss_fn: Callable[[], Tensor]) -> HeavyBall:
        """Heavy-ball parameters from the Hessian of ``loss_fn()`` at the current parameters."""
        with torch.enable_grad():
            grads = torch.autograd.grad(loss_fn(), self.params, create_graph=True)

            def operator(v: Tensor) -> Tensor:
                products = hvp(grads, self.params, unflatten(v.to(grads[0].dtype), self.params))
                return flatten(products).detach().double()

            n = sum(p.numel() for p in self.params)
            result = lanczos(operator, n, min(self.lanczos_steps, n), generator=self.generator)
        ritz, _ = result.ritz()
        lambda_max = float(ritz[-1])
        positive = ritz[ritz > 0]
        lambda_min = float(positive[0]) if len(positive) else lambda_max
        return heavy_ball(max(lambda_min, self.min_ratio * lambda_max), lambda_max)

    def maybe_update(self, loss_fn: Callable[[], Tensor]) -> HeavyBall | None:
        """Refresh ``lr`` and ``momentum`` on the first call and every ``period`` calls."""
        due = self.calls % self.period == 0
        self.calls += 1
        if not due:
            return None
        params = self.estimate(loss_fn)
        for group in self.optimizer.param_groups:
            group["lr"], group["momentum"] = params.lr, params.momentum
        self.history.append(params)
        return params
