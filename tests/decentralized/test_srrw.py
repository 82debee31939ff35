"""Base chains, the SRRW kernel and SA-SRRW against dense transcriptions of the papers'
formulas (Doshi, Hu & Eun 2023, eq. for K[x]; Hu, Doshi & Eun 2024, the SA-SRRW iteration),
the walk's empirical measure converging to the target (faster with repellence), and bad
input named."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from stochopt.decentralized import (
    SASRRW,
    SelfRepellentWalk,
    metropolis_hastings,
    regime,
    simple_random_walk,
    srrw_kernel,
)


def _graph() -> nx.Graph:
    """A small irregular graph: a triangle with a tail and a pendant."""
    return nx.Graph([(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (1, 5)])


def _dense_mh(G: nx.Graph, mu: np.ndarray) -> np.ndarray:
    n = G.number_of_nodes()
    P = np.zeros((n, n))
    for i in range(n):
        for j in G.neighbors(i):
            di, dj = G.degree(i), G.degree(j)
            P[i, j] = min(1.0, mu[j] * di / (mu[i] * dj)) / di
        P[i, i] = 1 - P[i].sum()
    return P


def test_base_chains_are_the_textbook_ones():
    G = _graph()
    mu = np.array([1, 2, 3, 1, 2, 1], dtype=float)
    mu /= mu.sum()
    mh = metropolis_hastings(G, mu)
    assert np.allclose(mh.P.toarray(), _dense_mh(G, mu), rtol=0, atol=1e-15)
    assert np.allclose(mu @ mh.P.toarray(), mu, atol=1e-15)  # stationary
    uniform = metropolis_hastings(G).P.toarray()
    for i, j in G.edges:
        assert uniform[i, j] == min(1 / G.degree(i), 1 / G.degree(j))
    srw = simple_random_walk(G)
    degree = np.array([G.degree(i) for i in range(6)], dtype=float)
    assert np.allclose(srw.P.toarray().sum(1), 1) and np.allclose(srw.mu, degree / 12)


def _dense_kernel(P: np.ndarray, mu: np.ndarray, x: np.ndarray, alpha: float) -> np.ndarray:
    """K_ij[x] = P_ij (x_j/mu_j)^-alpha / sum_k P_ik (x_k/mu_k)^-alpha."""
    w = P * (x / mu)[None, :] ** -alpha
    return w / w.sum(1, keepdims=True)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 7.5, 200.0])
def test_the_kernel_is_the_papers_formula(alpha):
    G = _graph()
    chain = metropolis_hastings(G)
    x = np.array([0.3, 0.05, 0.2, 0.1, 0.25, 0.1])
    K = srrw_kernel(chain, x, alpha).toarray()
    assert np.allclose(K.sum(1), 1, rtol=0, atol=1e-14)
    if alpha < 100:  # the dense formula overflows beyond; ours works in log space
        assert np.allclose(K, _dense_kernel(chain.P.toarray(), chain.mu, x, alpha),
                           rtol=1e-12, atol=1e-15)
    else:  # the most repelling limit: each row goes to its least over-visited neighbours
        assert np.isfinite(K).all()
    if alpha == 0.0:
        assert np.allclose(K, chain.P.toarray(), rtol=0, atol=1e-15)
    assert np.allclose(srrw_kernel(chain, chain.mu, alpha).toarray(), chain.P.toarray(),
                       rtol=0, atol=1e-15)  # K[mu] = P


def test_the_walks_steps_follow_the_kernel_and_the_measure_update():
    chain = metropolis_hastings(_graph())
    walk = SelfRepellentWalk(chain, 3.0, start=2, seed=7)
    rng = np.random.default_rng(7)
    x, node = chain.mu.copy(), 2
    P = chain.P.toarray()
    for n in range(1, 40):
        row = _dense_kernel(P, chain.mu, x, 3.0)[node]
        support = np.flatnonzero(row)
        u = rng.random()
        node = int(support[np.searchsorted(np.cumsum(row[support]), u, side="right")])
        x = x + (np.eye(6)[node] - x) / (n + 1)
        assert walk.step() == node
        assert np.allclose(walk.x, x, rtol=0, atol=1e-15)


def test_the_empirical_measure_converges_to_the_target_faster_with_repellence():
    # a lollipop graph: a clique with a path, where the MH walk to a non-uniform target
    # mixes slowly. Over 8 seeds of 8000 steps the total-variation error of the visit
    # frequencies was 0.033 (sd 0.010 across seeds) for the base walk and 0.0045 (sd 0.0008)
    # at alpha = 10 (the SRRW CLT's covariance falls as O(1/alpha)); a walk to the wrong
    # (uniform) target would sit at TV 0.14
    G = nx.lollipop_graph(6, 6)
    target = np.linspace(1.0, 3.0, G.number_of_nodes())
    chain = metropolis_hastings(G, target)

    def error(alpha: float) -> float:
        errs = []
        for seed in range(8):
            walk = SelfRepellentWalk(chain, alpha, seed=seed)
            for _ in range(8000):
                walk.step()
            errs.append(0.5 * np.abs(walk.x - chain.mu).sum())
        return float(np.mean(errs))

    base, repelled = error(0.0), error(10.0)
    assert base < 0.07  # converges to the target
    assert repelled < base / 3


def test_sa_srrw_first_iterates_by_hand_and_convergence_to_the_weighted_optimum():
    G = nx.cycle_graph(5)
    G.add_edge(0, 2)
    chain = metropolis_hastings(G, [1, 2, 3, 4, 5])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [2.0, 2.0]],
                     dtype=torch.float64)
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    sa = SASRRW(chain, torch.optim.SGD([theta], lr=0.0),
                lambda i: 0.5 * ((theta - c[i]) ** 2).sum(), alpha=5.0, a=0.7, b=0.9,
                lr=0.5, seed=3)
    walk = SelfRepellentWalk(chain, 5.0, seed=3, gamma=lambda n: (n + 1) ** -0.7)
    expected = torch.zeros(2, dtype=torch.float64)
    for n in range(1, 6):
        node = walk.step()
        assert sa.step() == node
        expected = expected - 0.5 * (n + 1) ** -0.9 * (expected - c[node])
        assert torch.allclose(theta.detach(), expected, rtol=0, atol=1e-15)
    for _ in range(8000):
        sa.step()
    optimum = torch.tensor(chain.mu) @ c  # argmin of sum_i mu_i f_i
    # three seeds ended 0.0025-0.0029 from it; the unweighted optimum is 0.19 away
    assert torch.linalg.norm(c.mean(0) - optimum) > 0.18
    assert torch.linalg.norm(theta.detach() - optimum) < 0.02


def test_regimes_and_bad_input_are_named():
    assert (regime(0.6, 0.9), regime(0.8, 0.8), regime(0.9, 0.6)) == ("i", "ii", "iii")
    chain = metropolis_hastings(_graph())
    with pytest.raises(ValueError, match="alpha must be in"):
        SelfRepellentWalk(chain, -1.0)
    with pytest.raises(ValueError, match="connected components"):
        metropolis_hastings(nx.Graph([(0, 1), (2, 3)]))
    with pytest.raises(TypeError, match="undirected"):
        simple_random_walk(nx.DiGraph([(0, 1), (1, 0)]))
    with pytest.raises(ValueError, match="a must be in"):
        regime(0.5, 0.9)
    with pytest.raises(ValueError, match="x must be a distribution"):
        srrw_kernel(chain, np.array([1.0, 0, 0, 0, 0, 0]), 1.0)
    with pytest.raises(ValueError, match="target must hold"):
        metropolis_hastings(_graph(), [1.0, -1.0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="start must be in"):
        SelfRepellentWalk(chain, 1.0, start=6)
