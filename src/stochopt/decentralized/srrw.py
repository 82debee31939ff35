"""The self-repellent random walk (Doshi, Hu & Eun, "Self-Repellent Random Walks on General
Graphs - Achieving Minimal Sampling Variance via Nonlinear Markov Chains", ICML 2023,
arXiv:2305.05097): a walk that avoids the nodes it has visited more than their target share.

With base chain :math:`P` of stationary distribution :math:`\\mu` and the walk's empirical
measure :math:`x`, the next node is drawn from

.. math::

    K_{ij}[x] = \\frac{P_{ij}\\,(x_j/\\mu_j)^{-\\alpha}}
                      {\\sum_{k} P_{ik}\\,(x_k/\\mu_k)^{-\\alpha}},

the sum over :math:`i`'s closed neighbourhood (the self-loop included where
:math:`P_{ii} > 0`); then :math:`x \\leftarrow x + \\gamma_{n+1}(\\delta_{X_{n+1}} - x)`. At
:math:`x = \\mu`, :math:`K = P`; :math:`\\alpha = 0` is the base chain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from stochopt._checks import check_int, check_real, check_seed, show
from stochopt.decentralized.chains import Chain

__all__ = ["SelfRepellentWalk", "srrw_kernel"]


def _repellence(owner: str, alpha: float) -> float:
    return check_real(owner, "alpha", alpha, low=0.0, low_open=False)


def _row(chain: Chain, x: np.ndarray, i: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Node ``i``'s successors and their probabilities :math:`K_{i\\cdot}[x]`, computed in
    log space so that a large ``alpha`` never overflows."""
    start, end = chain.P.indptr[i], chain.P.indptr[i + 1]
    j, P = chain.P.indices[start:end], chain.P.data[start:end]
    logw = np.log(P) - alpha * (np.log(x[j]) - np.log(chain.mu[j]))
    w = np.exp(logw - logw.max())
    return j, w / w.sum()


def srrw_kernel(chain: Chain, x: np.ndarray, alpha: float) -> sp.csr_matrix:
    """:math:`K[x]` as a sparse matrix (every row; the walk itself computes only its row).

    Args:
        chain: the base chain.
        x: a point strictly inside the simplex, shape ``(n,)``.
        alpha: the repellence :math:`\\alpha \\ge 0`.
    """
    alpha = _repellence("srrw_kernel", alpha)
    x = _interior("srrw_kernel", x, len(chain))
    K = chain.P.copy().astype(np.float64)
    for i in range(len(chain)):
        _, K.data[K.indptr[i]:K.indptr[i + 1]] = _row(chain, x, i, alpha)
    return K


def _interior(owner: str, x: object, n: int) -> np.ndarray:
    """``x`` as a float64 point strictly inside the simplex of dimension ``n``."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (n,) or not np.all(np.isfinite(x)) or np.any(x <= 0) \
            or abs(x.sum() - 1) > 1e-9:
        raise ValueError(f"{owner}: x must be a distribution over the {n} nodes with every "
                         f"entry > 0, got {show(x)}")
    return x


class SelfRepellentWalk:
    """A token performing the SRRW on a base chain.

    Args:
        chain: the base chain (:func:`simple_random_walk`, :func:`metropolis_hastings`).
        alpha: the repellence :math:`\\alpha \\ge 0` (0 is the base chain).
        start: the first node (an index into the chain).
        x0: the initial empirical measure, strictly inside the simplex (default :math:`\\mu`).
        gamma: :math:`\\gamma_n` for the empirical measure's update number :math:`n \\ge 1`;
            default :math:`1/(n+1)`, the visit frequencies with :math:`x_0` counted once.
        seed: the walk's seed (a NumPy generator).

    Example:
        >>> import networkx as nx
        >>> from stochopt.decentralized import metropolis_hastings
        >>> walk = SelfRepellentWalk(metropolis_hastings(nx.cycle_graph(5)), alpha=5.0,
        ...                          start=0, seed=0)
        >>> visits = [walk.step() for _ in range(1000)]
        >>> bool(abs(walk.x - 0.2).max() < 0.01)
        True
    """

    def __init__(self, chain: Chain, alpha: float, *, start: int = 0,
                 x0: np.ndarray | None = None, gamma: Callable[[int], float] | None = None,
                 seed: int = 0) -> None:
        owner = "SelfRepellentWalk"
        if not isinstance(chain, Chain):
            raise TypeError(f"{owner}: chain must be a stochopt.decentralized Chain, got "
                            f"{show(chain)}")
        self.alpha = _repellence(owner, alpha)
        self.node = check_int(owner, "start", start, low=0, high=len(chain) - 1)
        self.x = chain.mu.copy() if x0 is None else _interior(owner, x0, len(chain)).copy()
        if gamma is not None and not callable(gamma):
            raise TypeError(f"{owner}: gamma must be callable (n -> step size), got "
                            f"{show(gamma)}")
        self.gamma = gamma or (lambda n: 1.0 / (n + 1))
        self.rng = np.random.default_rng(check_seed(owner, "seed", seed))
        self.chain, self.n = chain, 0

    def step(self) -> int:
        """Move the token: :math:`X_{n+1} \\sim K_{X_n\\cdot}[x_n]`, then
        :math:`x_{n+1} = x_n + \\gamma_{n+1}(\\delta_{X_{n+1}} - x_n)`; returns
        :math:`X_{n+1}`."""
        j, probs = _row(self.chain, self.x, self.node, self.alpha)
        self.node = int(j[np.searchsorted(np.cumsum(probs), self.rng.random() * probs.sum(),
                                          side="right").clip(max=len(j) - 1)])
        gamma = float(self.gamma(self.n + 1))
        if not 0 < gamma < 1:  # gamma = 1 would empty the measure, and K would divide by 0
            raise ValueError(f"SelfRepellentWalk: gamma({self.n + 1}) must be in (0, 1), got "
                             f"{gamma!r}")
        self.x *= 1 - gamma
        self.x[self.node] += gamma
        self.n += 1
        return self.node
