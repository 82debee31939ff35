"""Virtual time: which client returns when, and the discrete-event loop that turns the
clients' returns and the scheme's deadlines into aggregations (mirroring the paper's
``clients_schedule.py``, here for random compute times too)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochopt.federated.schemes import Scheme
from stochopt.federated.server import Aggregation, Server
from stochopt.federated.times import ClientTimes

__all__ = ["Clock", "Event", "events"]

#: an arrival exactly at a deadline belongs to that window (relative rounding slack)
SLACK = 1e-12

#: one step of the loop: ``("arrival", time, client)`` or ``("aggregation", time, record)``
Event = tuple[str, float, Any]


class Clock:
    """Each client's current job: when it returns, which job of the client it is, and whether
    its reply waits in the server's buffer (the version it started from is the server's).

    Durations are drawn from one NumPy generator per client (seeded by ``(seed, i)``), in job
    order, so the schedule does not depend on how long the training takes or on the order in
    which the simulator computes it. At time 0 every client starts from version 0.
    """

    def __init__(self, times: ClientTimes, seed: int) -> None:
        self.times = times
        self.rngs = [np.random.default_rng([seed, i]) for i in range(len(times))]
        self.returns = np.array([times.draw(i, rng) for i, rng in enumerate(self.rngs)])
        self.job = np.zeros(len(times), dtype=np.int64)
        self.waiting = np.zeros(len(times), dtype=bool)

    def next_arrival(self) -> tuple[int, float]:
        """The busy client that returns first and its time; ``(-1, inf)`` when every client
        waits for an aggregation. Times within a relative :data:`SLACK` of the first are
        ties (sums of durations that are equal in exact arithmetic may differ in the last
        bit), broken by the lowest index, as the paper's code does for exact ties."""
        busy = np.where(self.waiting, math.inf, self.returns)
        first = float(busy.min())
        if not math.isfinite(first):
            return -1, math.inf
        i = int(np.flatnonzero(busy <= first * (1 + SLACK))[0])
        return i, float(busy[i])

    def restart(self, clients: tuple[int, ...], time: float) -> None:
        """``clients`` start their next job at ``time``."""
        for i in clients:
            self.returns[i] = time + self.times.draw(i, self.rngs[i])
            self.waiting[i] = False
            self.job[i] += 1

    def state_dict(self) -> dict[str, Any]:
        return {"returns": torch.from_numpy(self.returns.copy()),
                "job": torch.from_numpy(self.job.copy()),
                "waiting": torch.from_numpy(self.waiting.copy()),
                "rngs": [rng.bit_generator.state for rng in self.rngs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        M = len(self.times)
        arrays = [state[k].numpy().copy() for k in ("returns", "job", "waiting")]
        if any(a.shape != (M,) for a in arrays) or len(state["rngs"]) != M:
            raise ValueError(f"the clock's state is not for {M} clients")
        for rng, saved in zip(self.rngs, state["rngs"]):
            rng.bit_generator.state = saved
        self.returns, self.job, self.waiting = arrays


def events(scheme: Scheme, server: Server, clock: Clock, horizon: float,
           work: Callable[[int, Tensor, int], Tensor]) -> Iterator[Event]:
    """The discrete-event loop up to ``horizon``: the next event is the earliest arrival or,
    for a windowed scheme, the window's deadline (an arrival at the deadline first). An
    arrival asks ``work(client, start_model, job)`` for the client's trained model and
    buffers it; an aggregation restarts the aggregated clients at its time from the new
    model. The caller has sent every busy client its work (:meth:`Server.send`) before.

    Yields ``("arrival", t, client)`` and ``("aggregation", t, Aggregation)``. A caller that
    saves the clock and server to resume later does so after an aggregation (after an
    arrival, an aggregation it triggers may still be due).
    """
    while True:
        client, arrival = clock.next_arrival()
        deadline = scheme.deadline(server.step)
        if arrival > deadline * (1 + SLACK):
            if deadline > horizon:
                return
            yield "aggregation", deadline, _aggregate(server, clock, deadline)
            continue
        if arrival > horizon:
            return
        start = server.versions[server.out[client]]
        server.receive(client, work(client, start, int(clock.job[client])))
        clock.waiting[client] = True
        yield "arrival", arrival, client
        if server.ready():
            yield "aggregation", arrival, _aggregate(server, clock, arrival)


def _aggregate(server: Server, clock: Clock, time: float) -> Aggregation:
    record = server.aggregate()
    clock.restart(record.clients, time)
    for client in record.clients:
        server.send(client)
    return record
