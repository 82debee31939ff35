"""Decentralized stochastic optimization by a token that walks a graph: base chains (simple
and Metropolis-Hastings random walks), the self-repellent random walk of Doshi, Hu & Eun
(ICML 2023) and SA-SRRW (Hu, Doshi & Eun, "Accelerating Distributed Stochastic Optimization
via Self-Repellent Random Walks", ICLR 2024, arXiv:2401.09665)."""

from __future__ import annotations

from stochopt.decentralized.chains import Chain, metropolis_hastings, simple_random_walk
from stochopt.decentralized.sa import SASRRW, regime
from stochopt.decentralized.srrw import SelfRepellentWalk, srrw_kernel

__all__ = [
    "SASRRW",
    "Chain",
    "SelfRepellentWalk",
    "metropolis_hastings",
    "regime",
    "simple_random_walk",
    "srrw_kernel",
]
