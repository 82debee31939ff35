"""Learning rate as a function of batch size (Granziol, Zohren & Roberts, 2022): the linear and
square-root scaling rules, and a learner that sets SGD's learning rate and momentum from the
extreme eigenvalues of the batch Hessian, estimated by stochastic Lanczos quadrature."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, show
from stochopt.curvature import flatten, hvp, lanczos, unflatten
from stochopt.curvature._args import check_scalar_loss

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
    lr = check_real("scale_lr", "lr", lr, low=0.0, low_open=False)
    for name, value in (("from_batch", from_batch), ("to_batch", to_batch)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"scale_lr: {name} must be a positive integer, got {show(value)}")
        if value < 1:
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
    check_real("heavy_ball", "lambda_min", lambda_min)
    check_real("heavy_ball", "lambda_max", lambda_max)
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

    A refresh whose loss is not a scalar with a graph, or whose batch Hessian has no
    positive eigenvalue (or a non-finite one), raises ``ValueError`` and changes nothing: no
    group, no call count.

    Args:
        optimizer: an optimizer whose groups have ``lr`` and ``momentum`` (``torch.optim.SGD``).
        params: the parameters the Hessian is taken over (tensors that require grad).
        period: refresh every this many calls of :meth:`maybe_update` (default 100).
        lanczos_steps: Krylov dimension (default 20).
        min_ratio: floor of :math:`\\lambda_{min}/\\lambda_{max}`, in ``(0, 1]`` (default 1e-3).
        generator: source of the Lanczos start vectors (a ``torch.Generator``; default one
            seeded with 0).

    References:
        Granziol, Zohren & Roberts, 2022, arXiv:2006.09092 (the on-the-fly learner);
        Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[Tensor], *,
                 period: int = 100, lanczos_steps: int = 20, min_ratio: float = 1e-3,
                 generator: torch.Generator | None = None) -> None:
        owner = "SLQLearner"
        _check_heavy_ball_optimizer(owner, optimizer)
        self.params = _trainable(owner, params)
        self.period = check_int(owner, "period", period, low=1)
        self.lanczos_steps = check_int(owner, "lanczos_steps", lanczos_steps, low=1)
        self.min_ratio = check_real(owner, "min_ratio", min_ratio, high=1.0, high_open=False)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{owner}: generator must be a torch.Generator or None, got "
                            f"{show(generator)}")
        self.optimizer = optimizer
        self.generator = generator or torch.Generator().manual_seed(0)
        self.calls = 0
        self.history: list[HeavyBall] = []

    def estimate(self, loss_fn: Callable[[], Tensor]) -> HeavyBall:
        """Heavy-ball parameters from the Hessian of ``loss_fn()`` at the current parameters.

        Raises:
            TypeError, ValueError: ``loss_fn()`` is not a scalar with a graph over every
                parameter, or the batch Hessian has no positive (or a non-finite) eigenvalue.
        """
        owner = "SLQLearner.estimate"
        if not callable(loss_fn):
            raise TypeError(f"{owner}: loss_fn must be callable, got {show(loss_fn)}")
        with torch.enable_grad():
            loss = check_scalar_loss(owner, loss_fn(), name="loss_fn()")
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
            unused = [i for i, g in enumerate(grads) if g is None]
            if unused:
                raise ValueError(f"{owner}: loss_fn() does not depend on params{unused}")

            def operator(v: Tensor) -> Tensor:
                products = hvp(grads, self.params, unflatten(v.to(grads[0].dtype), self.params))
                return flatten(products).detach().double()

            n = sum(p.numel() for p in self.params)
            result = lanczos(operator, n, min(self.lanczos_steps, n), generator=self.generator)
        ritz, _ = result.ritz()
        lambda_max = float(ritz[-1])
        if not lambda_max > 0:
            raise ValueError(f"{owner}: the Hessian of loss_fn() has no positive eigenvalue "
                             f"(largest Ritz value {lambda_max:g}); the heavy-ball rule needs "
                             f"positive curvature")
        positive = ritz[ritz > 0]
        lambda_min = float(positive[0]) if len(positive) else lambda_max
        return heavy_ball(max(lambda_min, self.min_ratio * lambda_max), lambda_max)

    def maybe_update(self, loss_fn: Callable[[], Tensor]) -> HeavyBall | None:
        """Refresh ``lr`` and ``momentum`` on the first call and every ``period`` calls; a
        refresh that raises counts no call and changes no group."""
        if self.calls % self.period != 0:
            self.calls += 1
            return None
        params = self.estimate(loss_fn)
        self.calls += 1
        for group in self.optimizer.param_groups:
            group["lr"], group["momentum"] = params.lr, params.momentum
        self.history.append(params)
        return params


def _check_heavy_ball_optimizer(owner: str, optimizer: Any) -> None:
    """An optimizer whose every group has ``lr`` and ``momentum``."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{owner}: optimizer must be a torch.optim.Optimizer, got "
                        f"{show(optimizer)}")
    lacking = [i for i, g in enumerate(optimizer.param_groups)
               if "lr" not in g or "momentum" not in g]
    if lacking:
        raise ValueError(f"{owner}: param groups {lacking} of {type(optimizer).__name__} have "
                         f"no 'lr' and 'momentum' to set; use torch.optim.SGD (heavy ball)")


def _trainable(owner: str, params: Any) -> list[Tensor]:
    """``params`` as a non-empty list of tensors that require grad."""
    if isinstance(params, Tensor):
        params = [params]
    if isinstance(params, str) or not hasattr(params, "__iter__"):
        raise TypeError(f"{owner}: params must be a list of tensors, got {show(params)}")
    params = list(params)
    if not params:
        raise ValueError(f"{owner}: params must hold at least one tensor")
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{owner}: params[{i}] must be a tensor, got {show(p)}")
        if not p.requires_grad:
            raise ValueError(f"{owner}: params[{i}] does not require grad")
    return params
