"""The knowledge-gradient family computed exactly on a finite set (no Monte Carlo): Frazier's
noisy generalization of EI (the knowledge gradient for continuous parameters restricted to the
evaluated points) and the discretized knowledge gradient. Minimization form."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stochopt._checks import check_int, show
from stochopt.bayesopt._validate import real_tensor
from stochopt.bayesopt.posterior import Posterior

__all__ = [
    "expected_max_of_lines",
    "knowledge_gradient",
    "knowledge_gradient_batch",
    "noisy_expected_improvement",
    "noisy_expected_improvement_batch",
]


def _g(z: Tensor) -> Tensor:
    """:math:`z\\Phi(z) + \\varphi(z)`."""
    return z * 0.5 * torch.special.erfc(-z / math.sqrt(2)) + torch.exp(-0.5 * z * z) / math.sqrt(
        2 * math.pi)


def expected_max_of_lines(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`h(a, b) = E[\max_i (a_i + b_i Z)] - \max_i a_i`, :math:`Z \sim N(0, 1)`, exactly.

    Sort the lines by slope, keep the upper envelope (the lines that are the maximum for some
    :math:`z`), and sum :math:`(b_{j+1} - b_j)\,g(-|c_j|)` over its breakpoints
    :math:`c_j = (a_j - a_{j+1})/(b_{j+1} - b_j)`, with :math:`g(z) = z\Phi(z) + \varphi(z)`.
    Differentiable in ``a`` and ``b`` (the envelope is chosen on their values).

    Args:
        a: intercepts ``(k,)``.
        b: slopes ``(k,)``.

    Non-finite intercepts or slopes give a non-finite result (the acquisition optimizer skips
    such candidates).

    References:
        Frazier, Powell & Dayanik, "The Knowledge-Gradient Policy for Correlated Normal
        Beliefs", INFORMS J. Computing 2009, Alg. 1; Frazier, "A Tutorial on Bayesian
        Optimization", 2018, §4.2.
    """
    a = real_tensor("expected_max_of_lines", "a", a)
    b = real_tensor("expected_max_of_lines", "b", b)
    if a.ndim != 1 or a.shape != b.shape or not len(a):
        raise ValueError(f"expected_max_of_lines: a and b must have the same shape (k,) with "
                         f"k >= 1, got {tuple(a.shape)} and {tuple(b.shape)}")
    av, bv = a.detach().tolist(), b.detach().tolist()
    order = sorted(range(len(av)), key=lambda i: (bv[i], av[i]))
    hull: list[int] = []  # indices on the upper envelope, slopes increasing
    for i in order:
        if hull and bv[hull[-1]] == bv[i]:
            hull.pop()  # same slope: the later one has the larger intercept
        while len(hull) >= 2:
            j, k = hull[-2], hull[-1]
            # k is dominated if line i overtakes j no later than k does
            if (av[j] - av[i]) * (bv[k] - bv[j]) <= (av[j] - av[k]) * (bv[i] - bv[j]):
                hull.pop()
            else:
                break
        hull.append(i)
    if len(hull) == 1:
        return a.new_zeros(())
    index = torch.tensor(hull)
    A, B = a[index], b[index]
    gaps = B[1:] - B[:-1]
    c = (A[:-1] - A[1:]) / gaps
    return (gaps * _g(-c.abs())).sum()


def _lines(posterior: Posterior, owner: str, least: int = 1) -> tuple[Tensor, Tensor]:
    """Means and the one-step change per unit Z of every point's posterior mean when the last
    point is observed: :math:`\\tilde\\sigma(x_i, x) = \\Sigma(x_i, x) /
    \\sqrt{\\Sigma(x, x) + \\lambda^2}` (Frazier 2018, eq. 13)."""
    if not isinstance(posterior, Posterior):
        raise TypeError(f"{owner}: posterior must be a Posterior, got {show(posterior)}")
    if posterior.covariance is None:
        raise ValueError(f"{owner}: needs the joint posterior covariance (ask the model for "
                         f"posterior(X, covariance=True))")
    if posterior.mean.shape[0] < least:
        raise ValueError(f"{owner}: the posterior must be over at least {least} points (the "
                         f"last one the candidate), got {posterior.mean.shape[0]}")
    column = posterior.covariance[:, -1]
    spread = (column[-1] + posterior.noise).clamp(min=1e-300).sqrt()
    return posterior.mean, column / spread


def noisy_expected_improvement(posterior: Posterior) -> Tensor:
    r"""Frazier's generalization of EI to noisy observations, for minimization, exactly.

    ``posterior`` is over the ``n`` evaluated points followed by the candidate (``n + 1``
    points, joint covariance, and the observation noise). With :math:`a_i = -\mu_n(x_i)` and
    :math:`b_i = \tilde\sigma(x_i, x)`,

    .. math:: \mathrm{NEI}(x) = h(a, b) + \max_{i \le n+1} a_i - \max_{i \le n} a_i,

    the expected decrease of the smallest posterior mean over the evaluated points once
    :math:`x` is observed. Without noise it equals EI with :math:`f^* = \min_i y_i`.

    References:
        Frazier, "A Tutorial on Bayesian Optimization", 2018, §5 (the knowledge gradient
        restricted to evaluated points; Scott, Frazier & Powell, 2011).
    """
    mean, slope = _lines(posterior, "noisy_expected_improvement", least=2)
    a = -mean
    return expected_max_of_lines(a, slope) + a.max() - a[:-1].max()


def knowledge_gradient(posterior: Posterior) -> Tensor:
    r"""The discretized knowledge gradient for minimization: ``posterior`` is over a finite
    set :math:`A` whose last point is the candidate :math:`x`;

    .. math:: \mathrm{KG}(x) = E_n[\min_A \mu_n - \min_A \mu_{n+1} \mid x_{n+1} = x]
        = h(-\mu_n(A), \tilde\sigma(A, x)) \ge 0,

    and 0 when observing :math:`x` cannot move the posterior (zero posterior variance).

    References:
        Frazier, Powell & Dayanik, 2009; Frazier, "A Tutorial on Bayesian Optimization", 2018,
        §4.2 (the discretized exact computation).
    """
    mean, slope = _lines(posterior, "knowledge_gradient")
    return expected_max_of_lines(-mean, slope)


def _per_candidate(rule, posterior: Posterior, n: int, owner: str, least: int = 0) -> Tensor:
    """Apply ``rule`` to the posterior over the first ``n`` points plus each later point."""
    if not isinstance(posterior, Posterior):
        raise TypeError(f"{owner}: posterior must be a Posterior, got {show(posterior)}")
    if posterior.covariance is None:
        raise ValueError(f"{owner}: needs the joint posterior covariance (ask the model for "
                         f"posterior(X, covariance=True))")
    check_int(owner, "n", n, low=least, high=posterior.mean.shape[0] - 1)
    values = []
    for c in range(n, posterior.mean.shape[0]):
        index = torch.tensor([*range(n), c])
        cov = posterior.covariance[index][:, index]
        values.append(rule(Posterior(posterior.mean[index], cov.diagonal(), cov,
                                     posterior.noise)))
    return torch.stack(values)


def noisy_expected_improvement_batch(posterior: Posterior, n: int) -> Tensor:
    """:func:`noisy_expected_improvement` of each of ``m`` candidates: ``posterior`` is over
    the ``n`` evaluated points followed by the candidates (``n + m`` points); ``(m,)``."""
    return _per_candidate(noisy_expected_improvement, posterior, n,
                          "noisy_expected_improvement_batch", least=1)


def knowledge_gradient_batch(posterior: Posterior, n: int) -> Tensor:
    """:func:`knowledge_gradient` over the set of the first ``n`` points, for each later
    candidate; ``(m,)``."""
    return _per_candidate(knowledge_gradient, posterior, n, "knowledge_gradient_batch")
