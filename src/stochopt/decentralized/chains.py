"""Base Markov chains on a graph: the simple random walk and Metropolis-Hastings random walks
to a target, as sparse transition matrices (networkx graphs in, SciPy CSR inside)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
import scipy.sparse as sp

from stochopt._checks import show

__all__ = ["Chain", "metropolis_hastings", "simple_random_walk"]


@dataclass(frozen=True)
class Chain:
    """A reversible chain on the nodes ``0 .. n-1`` (``nodes[k]`` is node ``k``'s label in
    the graph).

    Attributes:
        P: the transition matrix, ``(n, n)`` CSR, rows summing to 1.
        mu: its stationary distribution, ``(n,)`` float64.
        nodes: the graph's node labels, in the chain's order.
    """

    P: sp.csr_matrix
    mu: np.ndarray
    nodes: tuple[Any, ...]

    def __len__(self) -> int:
        return len(self.mu)


def _check_graph(owner: str, graph: Any) -> nx.Graph:
    """An undirected, connected networkx graph with at least two nodes."""
    if not isinstance(graph, nx.Graph) or graph.is_directed():
        raise TypeError(f"{owner}: graph must be an undirected networkx.Graph, got "
                        f"{show(graph)}")
    if graph.number_of_nodes() < 2:
        raise ValueError(f"{owner}: graph must have at least 2 nodes, got "
                         f"{graph.number_of_nodes()}")
    if not nx.is_connected(graph):
        parts = nx.number_connected_components(graph)
        raise ValueError(f"{owner}: graph must be connected (a walk must reach every node), "
                         f"but it has {parts} connected components")
    return graph


def _adjacency(graph: nx.Graph) -> tuple[sp.csr_matrix, tuple[Any, ...]]:
    """The 0/1 adjacency without self-loops, and the node order."""
    nodes = tuple(graph.nodes)
    A = nx.to_scipy_sparse_array(graph, nodelist=nodes, weight=None, format="csr")
    A = sp.csr_matrix(A, dtype=np.float64)
    A.setdiag(0)
    A.eliminate_zeros()
    A.data[:] = 1.0
    return A, nodes


def simple_random_walk(graph: nx.Graph) -> Chain:
    """:math:`P_{ij} = 1/d_i` for each neighbour :math:`j`; :math:`\\mu_i = d_i / 2|E|`."""
    A, nodes = _adjacency(_check_graph("simple_random_walk", graph))
    degree = np.asarray(A.sum(1)).ravel()
    P = sp.csr_matrix(sp.diags(1 / degree) @ A)
    return Chain(P, degree / degree.sum(), nodes)


def metropolis_hastings(graph: nx.Graph, target: Any = None) -> Chain:
    """The Metropolis-Hastings walk to ``target`` (uniform by default) with uniform
    neighbour proposals: :math:`P_{ij} = \\frac1{d_i}\\min\\bigl(1,
    \\frac{\\mu_j d_i}{\\mu_i d_j}\\bigr)` for neighbours, the rest on the self-loop
    :math:`P_{ii}` (for a uniform target :math:`P_{ij} = \\min(1/d_i, 1/d_j)`).

    Args:
        graph: an undirected, connected networkx graph.
        target: :math:`\\mu`, one positive weight per node in ``graph.nodes`` order
            (normalized here), or ``None`` for uniform.
    """
    A, nodes = _adjacency(_check_graph("metropolis_hastings", graph))
    n = len(nodes)
    if target is None:
        mu = np.full(n, 1 / n)
    else:
        mu = np.asarray(target, dtype=np.float64)
        if mu.shape != (n,) or not np.all(np.isfinite(mu)) or np.any(mu <= 0):
            raise ValueError(f"metropolis_hastings: target must hold one positive finite "
                             f"weight per node ({n}), got {show(target)}")
        mu = mu / mu.sum()
    degree = np.asarray(A.sum(1)).ravel()
    rows, cols = A.nonzero()
    accept = np.minimum(1.0, mu[cols] * degree[rows] / (mu[rows] * degree[cols]))
    off = sp.csr_matrix((accept / degree[rows], (rows, cols)), shape=(n, n))
    stay = 1 - np.asarray(off.sum(1)).ravel()
    P = sp.csr_matrix(off + sp.diags(np.clip(stay, 0.0, 1.0)))
    P.eliminate_zeros()
    return Chain(P, mu, nodes)
