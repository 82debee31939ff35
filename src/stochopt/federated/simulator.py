"""A deterministic virtual-time simulator of federated training: M clients with their own
data and compute times, any scheme, any local optimizer, resumable from a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from stochopt._checks import check_int, check_real, check_seed, show
from stochopt._io import damaged
from stochopt.errors import DivergenceError
from stochopt.federated._checkpoint import RECOVER, WHAT, load_checkpoint, save_checkpoint
from stochopt.federated.clock import Clock, events
from stochopt.federated.data import importance
from stochopt.federated.schemes import AsyncFedAvg, FedBuff, FedFix, Scheme
from stochopt.federated.server import Aggregation, Server
from stochopt.federated.times import ClientTimes
from stochopt.federated.weights import (
    async_participation,
    check_distribution,
    fedfix_participation,
)

__all__ = ["FederatedRun", "Simulation"]

#: aggregations of the dry run that estimates FedBuff's participation, per client
DRY_RUN_PER_CLIENT = 200


@dataclass
class FederatedRun:
    """What a simulation recorded.

    Attributes:
        scheme: the scheme's label.
        history: one row per evaluation time: ``time``, ``step`` (the model's version),
            ``aggregated`` (client updates in the model so far), ``loss`` and ``accuracy``
            (the federated objective :math:`\\sum_i p_i L_i` on the clients' data, and its
            accuracy), ``test_loss`` and ``test_accuracy`` when a test set was given.
        aggregations: every server step, with ``times`` its virtual time.
        p: the clients' importance.
        model: the final global model, flat (load it with :meth:`Simulation.load`).
    """

    scheme: str
    p: Tensor
    model: Tensor | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    aggregations: list[Aggregation] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def mean_weight(self) -> Tensor:
        """:math:`\\frac1N\\sum_n \\omega_i(n)` per client: the estimate of
        :math:`\\mathbb{E}[\\omega_i]` (``p`` for an unbiased scheme)."""
        total = torch.zeros(len(self.p), dtype=torch.float64)
        for record in self.aggregations:
            for i, d in zip(record.clients, record.weights):
                total[i] += d
        return total / max(len(self.aggregations), 1)

    def participation(self) -> Tensor:
        """The fraction of aggregations that contained each client."""
        counts = torch.zeros(len(self.p), dtype=torch.float64)
        for record in self.aggregations:
            counts[list(record.clients)] += 1
        return counts / max(len(self.aggregations), 1)


class Simulation:
    """Federated training in virtual time (Fraboni et al. 2023's setting).

    Every client starts from the initial model at time 0. A job of client :math:`i` is
    ``local_steps`` steps of a fresh ``optimizer`` on minibatches of its data (drawn by a
    generator seeded from ``(seed, i, job)``) and takes a duration drawn from ``times``; the
    scheme decides when the server aggregates and with which weights. Same inputs, same run,
    bit for bit, however the run was interrupted and resumed.

    Args:
        model: the network; its parameters and floating-point buffers (all of one dtype) are
            the federated model.
        clients: each client's data ``(x, y)``.
        scheme: :class:`FedAvg`, :class:`AsyncFedAvg`, :class:`FedBuff` or :class:`FedFix`.
        times: the clients' compute times (:class:`ClientTimes`, one per client).
        loss: ``loss(model(x), y)``, a scalar (mean over the batch).
        optimizer: ``optimizer(params)`` -> a ``torch.optim.Optimizer`` (stochopt's or
            torch's), made afresh for each job.
        local_steps: :math:`K` >= 1.
        batch_size: :math:`B` >= 1 (a client with fewer examples uses them all).
        server_lr: :math:`\\eta_g` > 0.
        p: the clients' importance: ``"ratio"`` (by data size), ``"uniform"`` or a vector.
        test: an optional held-out ``(x, y)`` evaluated alongside.
        seed: the run's seed.
    """

    def __init__(self, model: nn.Module, clients: Sequence[tuple[Tensor, Tensor]],
                 scheme: Scheme, times: ClientTimes, *, loss: Callable[[Tensor, Tensor], Tensor],
                 optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
                 local_steps: int = 10, batch_size: int = 64, server_lr: float = 1.0,
                 p: str | Sequence[float] | Tensor = "ratio",
                 test: tuple[Tensor, Tensor] | None = None, seed: int = 0) -> None:
        owner = "Simulation"
        if not isinstance(model, nn.Module):
            raise TypeError(f"{owner}: model must be an nn.Module, got {show(model)}")
        self.clients = _check_clients(clients)
        if not isinstance(scheme, Scheme):
            raise TypeError(f"{owner}: scheme must be FedAvg, AsyncFedAvg, FedBuff or FedFix, "
                            f"got {show(scheme)}")
        scheme.check(len(self.clients))
        if not isinstance(times, ClientTimes) or len(times) != len(self.clients):
            raise ValueError(f"{owner}: times must be a ClientTimes with one time per client "
                             f"({len(self.clients)}), got {show(times)}")
        for name, fn in (("loss", loss), ("optimizer", optimizer)):
            if not callable(fn):
                raise TypeError(f"{owner}: {name} must be callable, got {show(fn)}")
        self.local_steps = check_int(owner, "local_steps", local_steps)
        self.batch_size = check_int(owner, "batch_size", batch_size)
        self.server_lr = check_real(owner, "server_lr", server_lr)
        self.seed = check_seed(owner, "seed", seed)
        self.p = (importance([len(y) for _, y in self.clients], p) if isinstance(p, str)
                  else check_distribution(owner, "p", p))
        if len(self.p) != len(self.clients):
            raise ValueError(f"{owner}: p has {len(self.p)} entries for {len(self.clients)} "
                             f"clients")
        self.test = None if test is None else _check_clients([test], "test")[0]
        self.tensors = _federated_tensors(model)
        self.model, self.scheme, self.times = model, scheme, times
        self.loss, self.optimizer = loss, optimizer
        self.theta0 = torch.cat([t.detach().reshape(-1) for t in self.tensors]).clone()

    # ----------------------------------------------------------------------- the schedule
    def participation(self) -> Tensor:
        """:math:`f_i` for unbiased weights: 1 (FedAvg), the renewal rates (async FedAvg),
        :math:`1/\\mathbb{E}\\lceil T_i/\\Delta t\\rceil` (FedFix), or for FedBuff the
        fraction of the first ``200 M`` aggregations of the schedule that contain :math:`i`
        (as the paper's code does)."""
        scheme = self.scheme
        if isinstance(scheme, AsyncFedAvg):
            return async_participation(self.times.mean)
        if isinstance(scheme, FedFix):
            return fedfix_participation(self.times.expected_windows(scheme.dt))
        if not isinstance(scheme, FedBuff):
            return torch.ones(len(self.clients), dtype=torch.float64)
        n = DRY_RUN_PER_CLIENT * len(self.clients)
        counts = torch.zeros(len(self.clients), dtype=torch.float64)
        ones = torch.ones(len(self.clients), dtype=torch.float64)  # weights do not matter here
        for _, record in _take(self._dry_run(math.inf, ones), n):
            counts[list(record.clients)] += 1
        return counts / n

    def schedule(self, horizon: float) -> list[tuple[float, Aggregation]]:
        """Every aggregation up to ``horizon`` with its time, without training (the weights
        are the run's)."""
        horizon = check_real("Simulation.schedule", "horizon", horizon)
        return list(self._dry_run(horizon, None))

    def _dry_run(self, horizon: float, participation: Tensor | None
                 ) -> Iterator[tuple[float, Aggregation]]:
        server = self._server(torch.zeros(1), participation)
        clock = Clock(self.times, self.seed)
        for kind, t, payload in events(self.scheme, server, clock, horizon,
                                       lambda i, start, job: start):
            if kind == "aggregation":
                yield t, payload

    def _server(self, theta: Tensor, participation: Tensor | None = None) -> Server:
        if participation is None and self.scheme.weights == "unbiased":
            participation = self.participation()
        server = Server(self.scheme, theta, self.p, server_lr=self.server_lr,
                        participation=participation)
        for i in range(len(self.clients)):
            server.send(i)
        return server

    # ------------------------------------------------------------------------ the run
    def run(self, horizon: float, *, eval_every: float | None = None,
            checkpoint: str | Path | None = None) -> FederatedRun:
        """Train up to virtual time ``horizon``, evaluating every ``eval_every`` time units
        (at 0, ``eval_every``, ... up to ``horizon``; by default 50 times). With
        ``checkpoint``, the state is saved there (atomically) at each evaluation and at the
        end, and a run that finds the file resumes from it: interrupted or extended to a
        later horizon, it gives the same numbers as one run straight through.

        Raises:
            DivergenceError: a client's local training produced NaN or infinite weights.
            DamagedFileError: the checkpoint is not one this simulator wrote.
            ValueError: the checkpoint was written with other settings (it names them).
        """
        horizon = check_real("Simulation.run", "horizon", horizon)
        every = horizon / 50 if eval_every is None else check_real(
            "Simulation.run", "eval_every", eval_every)
        path = None if checkpoint is None else Path(checkpoint)
        settings = self._settings(every)
        state = load_checkpoint(path, settings) if path is not None and path.exists() else None
        server = self._server(self.theta0.clone())
        clock = Clock(self.times, self.seed)
        record = FederatedRun(self.scheme.label, self.p)
        if state is not None:
            try:
                server.load_state_dict(state["server"])
                clock.load_state_dict(state["clock"])
                record.aggregations = [Aggregation(*a) for a in state["aggregations"]]
            except (KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
                raise damaged(path, WHAT, f"its state does not fit ({error})", RECOVER) from None
            record.history, record.times = state["history"], state["times"]
        k = len(record.history)  # the next evaluation is at k * every
        model = server.theta  # the model as of the last aggregation
        for kind, t, payload in events(self.scheme, server, clock, horizon, self._work):
            if kind != "aggregation":
                continue
            evaluated = False
            while k * every < t:
                record.history.append(self._row(k * every, record, model, server.step - 1))
                k, evaluated = k + 1, True
            record.aggregations.append(payload)
            record.times.append(t)
            model = server.theta
            if evaluated and path is not None:
                save_checkpoint(path, settings, server, clock, record)
        while k * every <= horizon * (1 + 1e-12):
            record.history.append(self._row(k * every, record, server.theta, server.step))
            k += 1
        if path is not None:
            save_checkpoint(path, settings, server, clock, record)
        record.model = server.theta.clone()
        return record

    def _row(self, time: float, record: FederatedRun, theta: Tensor | None,
             step: int) -> dict[str, float]:
        """The evaluation at ``time`` of the model of version ``step``."""
        aggregated = sum(len(a.clients) for a in record.aggregations)
        row = {"time": time, "step": float(step), "aggregated": float(aggregated)}
        row.update(self.evaluate(theta))
        return row

    def _settings(self, every: float) -> dict[str, Any]:
        """What a checkpoint must match to be resumed."""
        return {"scheme": repr(self.scheme), "clients": len(self.clients),
                "times": [self.times.distribution, self.times.sigma, self.times.mean.tolist()],
                "p": self.p.tolist(), "seed": self.seed, "local_steps": self.local_steps,
                "batch_size": self.batch_size, "server_lr": self.server_lr,
                "eval_every": every, "model_size": len(self.theta0),
                "initial_model_sum": float(self.theta0.double().sum())}

    # ------------------------------------------------------------- clients' work, metrics
    def _work(self, client: int, start: Tensor, job: int) -> Tensor:
        """Client ``client``'s ``job``-th local training from ``start``: its new model."""
        self._load(start)
        x, y = self.clients[client]
        seed = int(np.random.SeedSequence([self.seed, client, job]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(seed)
        optimizer = self.optimizer(list(self.model.parameters()))
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Simulation: optimizer must return a torch.optim.Optimizer, got "
                            f"{show(optimizer)}")
        self.model.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # dropout and other layers' randomness, per job
            for batch in _batches(len(y), self.batch_size, self.local_steps, generator):
                optimizer.zero_grad()
                self.loss(self.model(x[batch]), y[batch]).backward()
                optimizer.step()
        model = torch.cat([t.detach().reshape(-1) for t in self.tensors])
        if not bool(torch.isfinite(model).all()):
            raise DivergenceError(f"Simulation: client {client}'s local training diverged on "
                                  f"its job {job} (NaN or infinite weights); lower the "
                                  f"optimizer's learning rate")
        return model

    def load(self, theta: Tensor) -> nn.Module:
        """Put the flat model ``theta`` (e.g. :attr:`FederatedRun.model`) into the
        simulation's ``model`` and return it."""
        if not isinstance(theta, Tensor) or theta.shape != self.theta0.shape:
            raise ValueError(f"Simulation.load: theta must have shape "
                             f"{tuple(self.theta0.shape)}, got {show(theta)}")
        self._load(theta)
        return self.model

    def _load(self, theta: Tensor) -> None:
        with torch.no_grad():
            offset = 0
            for t in self.tensors:
                t.copy_(theta[offset:offset + t.numel()].view_as(t))
                offset += t.numel()

    @torch.no_grad()
    def evaluate(self, theta: Tensor | None = None) -> dict[str, float]:
        """The federated objective :math:`\\sum_i p_i L_i(\\theta)` and accuracy on the
        clients' data (and on the test set, if any) at ``theta`` (default: the initial
        model)."""
        self._load(self.theta0 if theta is None else theta)
        self.model.eval()
        losses, accuracies = [], []
        for x, y in self.clients:
            loss, accuracy = self._metrics(x, y)
            losses.append(loss)
            accuracies.append(accuracy)
        p = self.p.tolist()
        row = {"loss": float(np.dot(p, losses))}
        if all(a is not None for a in accuracies):
            row["accuracy"] = float(np.dot(p, accuracies))
        if self.test is not None:
            loss, accuracy = self._metrics(*self.test)
            row["test_loss"] = loss
            if accuracy is not None:
                row["test_accuracy"] = accuracy
        return row

    def _metrics(self, x: Tensor, y: Tensor) -> tuple[float, float | None]:
        out = self.model(x)
        loss = float(self.loss(out, y))
        if out.ndim == 2 and out.shape[1] > 1 and not y.is_floating_point():
            return loss, float((out.argmax(1) == y).double().mean())
        return loss, None


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator
             ) -> Iterator[Tensor]:
    """``steps`` minibatches of ``min(batch_size, n)`` indices, walking through shuffled
    epochs of ``range(n)`` (a batch never spans two epochs)."""
    size = min(batch_size, n)
    order, position = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if position + size > n:
            order, position = torch.randperm(n, generator=generator), 0
        yield order[position:position + size]
        position += size


def _take(it: Iterator[Any], n: int) -> Iterator[Any]:
    for _, item in zip(range(n), it):
        yield item


def _check_clients(clients: Any, name: str = "clients") -> list[tuple[Tensor, Tensor]]:
    """A non-empty sequence of ``(x, y)`` tensor pairs with as many ``x`` as ``y`` rows."""
    if not isinstance(clients, Sequence) or len(clients) == 0:
        raise TypeError(f"Simulation: {name} must be a non-empty sequence of (x, y) tensor "
                        f"pairs, got {show(clients)}")
    checked = []
    for k, pair in enumerate(clients):
        ok = (isinstance(pair, (tuple, list)) and len(pair) == 2
              and all(isinstance(t, Tensor) for t in pair))
        if not ok or len(pair[0]) != len(pair[1]) or len(pair[1]) == 0:
            raise ValueError(f"Simulation: {name}[{k}] must be an (x, y) pair of tensors with "
                             f"the same number (>= 1) of rows, got {show(pair)}")
        checked.append((pair[0], pair[1]))
    return checked


def _federated_tensors(model: nn.Module) -> list[Tensor]:
    """The model's parameters and floating-point buffers, all of one floating dtype."""
    tensors = [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]
    dtypes = {t.dtype for t in tensors}
    if not tensors or len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
        raise TypeError(f"Simulation: model must have parameters of one floating dtype, got "
                        f"{sorted(str(d) for d in dtypes) or 'no parameters'}")
    return tensors
