"""The server's side of a scheme: buffer replies, aggregate when the scheme says, count who
took part. The simulator and the Flower strategies drive the same :class:`Server`, so they
give the same aggregates for the same replies in the same order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, check_tensor, show
from stochopt.federated.schemes import Scheme
from stochopt.federated.weights import aggregate, check_distribution, unbiased_weights

__all__ = ["Aggregation", "Reply", "Server"]


@dataclass(frozen=True)
class Reply:
    """A client's work: its model :math:`\\theta_i^{\\text{received}}` after local training
    from model ``version``."""

    client: int
    version: int
    model: Tensor


@dataclass(frozen=True)
class Aggregation:
    """One server step: who was aggregated (in arrival order), from which versions, with
    which weights :math:`d_i`; ``step`` is the new model's version."""

    step: int
    clients: tuple[int, ...]
    versions: tuple[int, ...]
    weights: tuple[float, ...]

    @property
    def staleness(self) -> tuple[int, ...]:
        """:math:`n - \\rho_i(n)` for each aggregated client."""
        return tuple(self.step - 1 - v for v in self.versions)


class Server:
    """Aggregation state: the global model :math:`\\theta^n`, the models still out with
    clients, the buffered replies and the participation counts.

    A client gets work with :meth:`send` (the current version), returns its trained model
    with :meth:`receive` (:math:`\\Delta_i` is taken against the version it was sent), and the
    caller calls :meth:`aggregate` when :meth:`ready` says so or, for FedFix, at each
    deadline. A client that fails or never answers is :meth:`drop`-ped.

    A step where every reply started from the current model, with :math:`\\eta_g = 1` and
    weights summing to 1 (synchronous FedAvg, FedFix with a window longer than every job), is
    computed as the model average :math:`\\sum_i d_i\\,\\theta_i`, with Flower's arithmetic
    (each model times its weight, summed in arrival order), which is the same number up to
    rounding; every other step as :math:`\\theta^n + \\eta_g\\sum_i d_i\\Delta_i`.

    Args:
        scheme: the :class:`~stochopt.federated.schemes.Scheme`.
        theta: the initial global model, one flat floating-point tensor ``(D,)``.
        p: the clients' importance :math:`p_i`, shape ``(M,)``, a distribution.
        server_lr: :math:`\\eta_g` > 0.
        participation: :math:`f_i` for ``weights="unbiased"`` (in (0, 1]); ignored otherwise.
    """

    def __init__(self, scheme: Scheme, theta: Tensor, p: Tensor, *, server_lr: float = 1.0,
                 participation: Tensor | None = None) -> None:
        if not isinstance(scheme, Scheme):
            raise TypeError(f"Server: scheme must be a stochopt.federated Scheme, got "
                            f"{show(scheme)}")
        theta = check_tensor("Server", "theta", theta, ndim=1)
        p = check_distribution("Server", "p", p)
        scheme.check(len(p))
        self.server_lr = check_real("Server", "server_lr", server_lr)
        if scheme.weights == "unbiased" and not scheme.synchronous:
            if participation is None:
                raise ValueError(f"Server: {scheme.label} needs participation (f_i) for "
                                 f"unbiased weights; a deployment uses weights='observed'")
            self.d = unbiased_weights(p, participation)
        else:
            self.d = scheme.identical(p)
        self.scheme, self.p = scheme, p
        self.theta = theta.detach().clone()
        self.step = 0
        self.versions: dict[int, Tensor] = {0: self.theta}
        self.out: dict[int, int] = {}  # client -> the version it was sent
        self.buffer: list[Reply] = []
        self.counts = torch.zeros(len(p), dtype=torch.int64)

    @property
    def clients(self) -> int:
        return len(self.p)

    def send(self, client: int) -> tuple[int, Tensor]:
        """Give ``client`` the current model: returns ``(version, theta)``."""
        client = check_int("Server.send", "client", client, low=0, high=self.clients - 1)
        if client in self.out or any(r.client == client for r in self.buffer):
            raise ValueError(f"Server.send: client {client} already has work (sent version "
                             f"{self.out.get(client, 'buffered')}); receive or drop it first")
        self.out[client] = self.step
        return self.step, self.theta

    def receive(self, client: int, model: Tensor) -> None:
        """Buffer ``client``'s trained model; refuses a client with no work out, a model not
        shaped like the global one or with NaN/inf entries (nothing changes then)."""
        client = check_int("Server.receive", "client", client, low=0, high=self.clients - 1)
        if client not in self.out:
            raise ValueError(f"Server.receive: client {client} has no work out (it was never "
                             f"sent the model, was dropped, or already replied)")
        if not isinstance(model, Tensor) or model.shape != self.theta.shape:
            raise ValueError(f"Server.receive: model must have the global model's shape "
                             f"{tuple(self.theta.shape)}, got {show(model)}")
        if not bool(torch.isfinite(model).all()):
            raise ValueError(f"Server.receive: client {client}'s model has NaN or infinite "
                             f"entries")
        version = self.out.pop(client)
        self.buffer.append(Reply(client, version, model.detach().to(self.theta.dtype)))

    def drop(self, client: int) -> None:
        """Forget ``client``'s outstanding work (it failed or timed out)."""
        client = check_int("Server.drop", "client", client, low=0, high=self.clients - 1)
        if client not in self.out:
            raise ValueError(f"Server.drop: client {client} has no work out")
        del self.out[client]
        self._prune()

    def ready(self) -> bool:
        """Whether the buffered replies trigger an aggregation (never for a windowed scheme:
        its caller aggregates at the deadline)."""
        return self.scheme.ready(len(self.buffer), self.clients)

    def weights(self, clients: list[int]) -> list[float]:
        """:math:`d_i` for an aggregation of ``clients``."""
        if self.scheme.weights != "observed":
            return [float(self.d[i]) for i in clients]
        counts = self.counts.clone()
        counts[clients] += 1
        f = counts.to(torch.float64) / (self.step + 1)
        return [float(self.p[i] / f[i]) for i in clients]

    def aggregate(self) -> Aggregation:
        """The server step on the buffered replies (an empty buffer leaves the model as it is
        but still counts as a step: a FedFix window nobody finished)."""
        clients = [r.client for r in self.buffer]
        d = self.weights(clients)
        fresh = all(r.version == self.step for r in self.buffer)
        if self.buffer and fresh and self.server_lr == 1.0 and abs(sum(d) - 1) < 1e-12:
            theta = self.buffer[0].model * d[0]
            for reply, weight in zip(self.buffer[1:], d[1:]):
                theta += reply.model * weight
        else:
            deltas = [r.model - self.versions[r.version] for r in self.buffer]
            theta = aggregate(self.theta, deltas, d, self.server_lr)
        record = Aggregation(self.step + 1, tuple(clients),
                             tuple(r.version for r in self.buffer), tuple(d))
        self.theta, self.buffer = theta, []
        self.counts[clients] += 1
        self.step += 1
        self.versions[self.step] = theta
        self._prune()
        return record

    def _prune(self) -> None:
        """Keep the current model and those still out with clients."""
        keep = {self.step, *self.out.values()}
        self.versions = {v: t for v, t in self.versions.items() if v in keep}

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "counts": self.counts.clone(),
                "versions": {v: t.clone() for v, t in self.versions.items()},
                "out": dict(self.out),
                "buffer": [(r.client, r.version, r.model.clone()) for r in self.buffer]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; ``ValueError`` (nothing changed) if it does not fit."""
        step, counts, out = int(state["step"]), state["counts"], dict(state["out"])
        versions = {int(v): t for v, t in state["versions"].items()}
        buffer = [Reply(int(c), int(v), m) for c, v, m in state["buffer"]]
        shapes = [t.shape for t in versions.values()] + [r.model.shape for r in buffer]
        if (step not in versions or any(s != self.theta.shape for s in shapes)
                or not isinstance(counts, Tensor) or counts.shape != self.counts.shape
                or any(v not in versions for v in out.values())):
            raise ValueError("Server.load_state_dict: the state does not fit this server "
                             "(other model size, clients, or missing versions)")
        self.step, self.counts, self.out, self.buffer = step, counts.clone(), out, buffer
        self.versions, self.theta = versions, versions[step]
