"""SA-SRRW (Hu, Doshi & Eun, "Accelerating Distributed Stochastic Optimization via
Self-Repellent Random Walks", ICLR 2024, arXiv:2401.09665): stochastic approximation of
:math:`\\min_\\theta \\sum_i \\mu_i f_i(\\theta)` driven by a self-repellent token.

.. math::

    X_{n+1} \\sim K_{X_n\\cdot}[x_n], \\quad
    x_{n+1} = x_n + \\gamma_{n+1}(\\delta_{X_{n+1}} - x_n), \\quad
    \\theta_{n+1} = \\theta_n - \\beta_{n+1}\\nabla f_{X_{n+1}}(\\theta_n),

with :math:`\\gamma_n = (n+1)^{-a}` and :math:`\\beta_n = \\beta_0 (n+1)^{-b}`,
:math:`a, b \\in (1/2, 1]`. The paper's three regimes: (i) :math:`b > a` (the measure moves
faster; recommended: the iterates' asymptotic covariance falls as :math:`O(1/\\alpha^2)`),
(ii) :math:`a = b` (:math:`O(1/\\alpha)`), (iii) :math:`b < a`. The :math:`\\theta` update is
any torch optimizer's step on the token's local gradient, with its learning rate set to
:math:`\\beta_{n+1}` (plain SGD is the paper's).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from stochopt._checks import check_real, show
from stochopt.decentralized.chains import Chain
from stochopt.decentralized.srrw import SelfRepellentWalk

__all__ = ["SASRRW", "regime"]


def regime(a: float, b: float) -> str:
    """The paper's timescale regime of exponents :math:`a` (measure) and :math:`b`
    (iterates): ``"i"`` (:math:`b > a`), ``"ii"`` (:math:`a = b`) or ``"iii"``
    (:math:`b < a`)."""
    a = check_real("regime", "a", a, low=0.5, high=1.0, high_open=False)
    b = check_real("regime", "b", b, low=0.5, high=1.0, high_open=False)
    return "i" if b > a else "ii" if a == b else "iii"


class SASRRW:
    """SA-SRRW driving ``optimizer`` from the token's local gradients.

    Args:
        chain: the base chain whose stationary distribution :math:`\\mu` weighs the agents.
        optimizer: a torch optimizer over :math:`\\theta` (its ``lr`` is overwritten by
            :math:`\\beta_{n+1}` at every step).
        local_loss: ``local_loss(i)`` -> agent ``i``'s loss :math:`f_i(\\theta)`, a scalar.
        alpha: the repellence :math:`\\alpha \\ge 0` (0: the base chain's token algorithm).
        a: the measure's step exponent, in (1/2, 1].
        b: the iterates' step exponent, in (1/2, 1].
        lr: :math:`\\beta_0` > 0.
        start: the token's first node; ``seed``: the walk's seed.
    """

    def __init__(self, chain: Chain, optimizer: torch.optim.Optimizer,
                 local_loss: Callable[[int], Tensor], *, alpha: float, a: float = 0.8,
                 b: float = 0.9, lr: float = 1.0, start: int = 0, seed: int = 0) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"SASRRW: optimizer must be a torch.optim.Optimizer, got "
                            f"{show(optimizer)}")
        if not callable(local_loss):
            raise TypeError(f"SASRRW: local_loss must be callable, got {show(local_loss)}")
        self.regime = regime(a, b)
        self.a, self.b = a, b
        self.lr = check_real("SASRRW", "lr", lr)
        self.walk = SelfRepellentWalk(chain, alpha, start=start, seed=seed,
                                      gamma=lambda n: (n + 1) ** -self.a)
        self.optimizer, self.local_loss = optimizer, local_loss

    @property
    def n(self) -> int:
        return self.walk.n

    def beta(self, n: int) -> float:
        """:math:`\\beta_n = \\beta_0 (n+1)^{-b}`."""
        return self.lr * (n + 1) ** -self.b

    def step(self) -> int:
        """One iteration: move the token, update the measure, step on its local gradient;
        returns the node visited."""
        node = self.walk.step()
        beta = self.beta(self.walk.n)
        for group in self.optimizer.param_groups:
            group["lr"] = beta
        self.optimizer.zero_grad()
        loss = self.local_loss(node)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            raise ValueError(f"SASRRW: local_loss({node}) must return a scalar tensor, got "
                             f"{show(loss)}")
        loss.backward()
        self.optimizer.step()
        return node
