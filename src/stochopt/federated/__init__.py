"""Federated optimization with asynchronous and heterogeneous clients (Fraboni, Vidal, Kameni
& Lorenzi, "A General Theory for Federated Optimization with Asynchronous and Heterogeneous
Clients Updates", JMLR 2023, arXiv:2206.10189).

The server step :math:`\\theta^{n+1} = \\theta^n + \\eta_g\\sum_i \\omega_i(n)\\Delta_i` is
shared by every scheme (:mod:`~stochopt.federated.weights`); the schemes (:class:`FedAvg`,
:class:`AsyncFedAvg`, :class:`FedBuff`, :class:`FedFix`) say when to aggregate and with which
weights; :class:`Server` holds the state; :class:`Simulation` runs them in virtual time on
clients with their own data (:func:`dirichlet_split`) and compute times (:class:`ClientTimes`).
"""

from __future__ import annotations

from stochopt.federated.data import dirichlet_split, importance
from stochopt.federated.schemes import WEIGHTINGS, AsyncFedAvg, FedAvg, FedBuff, FedFix, Scheme
from stochopt.federated.server import Aggregation, Reply, Server
from stochopt.federated.simulator import FederatedRun, Simulation
from stochopt.federated.times import DISTRIBUTIONS, ClientTimes
from stochopt.federated.weights import (
    aggregate,
    async_participation,
    fedfix_participation,
    surrogate_importance,
    unbiased_weights,
)

__all__ = [
    "DISTRIBUTIONS",
    "WEIGHTINGS",
    "Aggregation",
    "AsyncFedAvg",
    "ClientTimes",
    "FedAvg",
    "FedBuff",
    "FedFix",
    "FederatedRun",
    "Reply",
    "Scheme",
    "Server",
    "Simulation",
    "aggregate",
    "async_participation",
    "dirichlet_split",
    "fedfix_participation",
    "importance",
    "surrogate_importance",
    "unbiased_weights",
]
