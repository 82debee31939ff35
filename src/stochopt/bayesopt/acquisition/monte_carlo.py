"""Batch (parallel) expected improvement by quasi-Monte Carlo with reparameterized samples,
so its gradient is the infinitesimal-perturbation-analysis estimator. Minimization form."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from stochopt._checks import check_int, check_seed, show
from stochopt.bayesopt._linalg import robust_cholesky
from stochopt.bayesopt._validate import check_scalar
from stochopt.bayesopt.posterior import Posterior

__all__ = ["normal_base_samples", "q_expected_improvement"]


def normal_base_samples(n: int, q: int, seed: int) -> Tensor:
    """``(n, q)`` standard normal quasi-random draws (scrambled Sobol through the inverse
    CDF), fixed across calls so that the Monte Carlo acquisition is a smooth function."""
    check_int("normal_base_samples", "n", n)
    check_int("normal_base_samples", "q", q, high=SobolEngine.MAXDIM)
    check_seed("normal_base_samples", "seed", seed)
    u = SobolEngine(q, scramble=True, seed=seed).draw(n, dtype=torch.float64)
    return torch.special.ndtri(u.clamp(1e-10, 1 - 1e-10))


def q_expected_improvement(posterior: Posterior, best: float | Tensor, base: Tensor) -> Tensor:
    r""":math:`\mathrm{qEI}(x^{(1..q)}) = E[(f^* - \min_j f(x^{(j)}))^+]`, estimated with the
    samples :math:`f = \mu + L z` for the fixed base draws ``z`` (``base``: ``(S, q)``), where
    :math:`LL^\top` is the joint posterior covariance of the ``q`` points.

    Differentiable in the batch's locations through :math:`\mu` and :math:`L`.

    References:
        Frazier, "A Tutorial on Bayesian Optimization", 2018, §5 (parallel EI); Wang, Clark,
        Liu & Frazier, "Parallel Bayesian Global Optimization of Expensive Functions",
        Operations Research 2020 (the IPA gradient estimator).
    """
    owner = "q_expected_improvement"
    if not isinstance(posterior, Posterior):
        raise TypeError(f"{owner}: posterior must be a Posterior, got {show(posterior)}")
    if posterior.covariance is None:
        raise ValueError(f"{owner}: needs the joint posterior covariance")
    check_scalar(owner, "best", best)
    q = posterior.mean.shape[0]
    if not isinstance(base, Tensor) or base.ndim != 2 or base.shape[1] != q:
        got = tuple(base.shape) if isinstance(base, Tensor) else show(base)
        raise ValueError(f"{owner}: base must be a tensor of shape (S, q) = (S, {q}) (one "
                         f"column per point of the batch), got {got}")
    L = robust_cholesky(posterior.covariance)
    samples = posterior.mean[None, :] + base @ L.T
    return (best - samples.min(-1).values).clamp(min=0.0).mean()
