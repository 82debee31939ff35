"""The schedules against an independent transcription of the paper's code
(``FL/clients_schedule.py`` of Accenture/Labs-Federated-Learning, branch asynchronous_FL), and
the theory's central quantity: E[omega_i] = p_i for the unbiased weights, q_i proportional
to 1/tau_i for asynchronous FedAvg with identical weights."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from stochopt.federated import (
    AsyncFedAvg,
    ClientTimes,
    FedAvg,
    FedBuff,
    FedFix,
    Simulation,
    async_participation,
)


def _official(scheme: str, tau: list[Fraction], T: Fraction) -> list[set[tuple[int, int]]]:
    """The paper's schedule, transcribed, in exact rational arithmetic (the paper's code
    compares floats, so a return time that equals a deadline can fall on either side of it;
    in exact arithmetic it is inside the window): per aggregation, (client, version sent)."""
    M = len(tau)
    rows: list[set[tuple[int, int]]] = []
    if scheme == "FL":
        for n in range(int(T / max(tau))):
            rows.append({(i, n) for i in range(M)})
        return rows
    returns, latest = list(tau), [0] * M
    if scheme.startswith("FedFix"):
        dt = Fraction(scheme.split("-")[1])
        for n in range(int(T / dt)):
            idx = [i for i in range(M) if returns[i] <= (n + 1) * dt]
            rows.append({(i, latest[i]) for i in idx})
            for i in idx:
                returns[i] = (n + 1) * dt + tau[i]
                latest[i] = n + 1
        return rows
    c = 1 if scheme == "Async" else int(scheme.split("-")[1])
    while min(returns) <= T:
        idx = sorted(range(M), key=lambda i: (returns[i], i))[:c]
        t = max(returns[i] for i in idx)
        if t > T:  # the last buffer does not fill before T
            break
        rows.append({(i, latest[i]) for i in idx})
        for i in idx:
            returns[i] = t + tau[i]
            latest[i] = len(rows)
    return rows


def _simulation(scheme, times: ClientTimes, p=None, seed: int = 0) -> Simulation:
    """A simulation for its schedule only (the model and data are never trained)."""
    M = len(times)
    clients = [(torch.zeros(1, 1), torch.zeros(1, 1)) for _ in range(M)]
    return Simulation(nn.Linear(1, 1), clients, scheme, times, loss=nn.functional.mse_loss,
                      optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1),
                      p="uniform" if p is None else p, seed=seed)


@pytest.mark.parametrize("name, scheme", [
    ("FL", FedAvg()), ("Async", AsyncFedAvg("identical")), ("FedFix-0.3", FedFix(0.3)),
    ("FedFix-0.5", FedFix(0.5)), ("FedBuff-3", FedBuff(3))])
def test_the_schedule_is_the_papers(name, scheme):
    times = ClientTimes.scenario(7, slower=80)
    exact = [1 - Fraction(i * 80, 100 * 6) for i in range(7)]  # F-80: 1 - i (X/100)/(M-1)
    ours = [{(i, v) for i, v in zip(a.clients, a.versions)}
            for _, a in _simulation(scheme, times).schedule(20.0)]
    assert ours == _official(name, exact, Fraction(20))
    assert len(ours) > 15


def _mean_omega(schedule, M: int) -> np.ndarray:
    total = np.zeros(M)
    for _, a in schedule:
        for i, d in zip(a.clients, a.weights):
            total[i] += d
    return total / len(schedule)


P = torch.tensor([0.1, 0.3, 0.15, 0.25, 0.2], dtype=torch.float64)
MEANS = [1.0, 0.4, 0.7, 0.25, 0.55]


def test_async_unbiased_weights_give_p_on_average_with_random_times():
    # exponential compute times: the arrivals are a superposition of Poisson processes, so
    # the client of each arrival is an independent draw with probabilities f_i, and its
    # count is Binomial(N, f_i): E[omega_i] estimated within 4 standard deviations
    times = ClientTimes(MEANS, distribution="exponential")
    schedule = _simulation(AsyncFedAvg("unbiased"), times, P).schedule(2000.0)
    N = len(schedule)
    f = async_participation(times.mean).numpy()
    sd = P.numpy() * np.sqrt((1 - f) / (N * f))
    assert N > 7500
    assert np.all(np.abs(_mean_omega(schedule, 5) - P.numpy()) < 4 * sd)


def test_fedfix_unbiased_weights_give_p_on_average_with_random_times():
    # exponential times restarted at a window's end: client i finishes inside each window
    # with probability q_i = 1 - exp(-dt/tau_i), independently, so its count is binomial
    dt = 0.3
    times = ClientTimes(MEANS, distribution="exponential")
    schedule = _simulation(FedFix(dt), times, P).schedule(3000.0)
    N = len(schedule)
    q = 1 - np.exp(-dt / np.array(MEANS))
    sd = P.numpy() * np.sqrt((1 - q) / (N * q))
    assert N == 10000
    assert np.all(np.abs(_mean_omega(schedule, 5) - P.numpy()) < 4 * sd)


def test_fedfix_unbiased_weights_are_exact_with_fixed_times():
    # fixed times: client i is aggregated every ceil(tau_i/dt) windows exactly, so over a
    # whole number of common periods the average is p_i up to the last partial period
    dt = 0.25
    times = ClientTimes([1.0, 0.5, 0.75, 0.25, 0.5])
    schedule = _simulation(FedFix(dt), times, P).schedule(1200.0)  # 4800 windows, period 12
    assert np.allclose(_mean_omega(schedule, 5), P.numpy(), rtol=0, atol=1e-12)


def test_fedbuff_observed_weights_approach_p():
    # a deployment's weights: p_i over the running fraction of aggregations with client i.
    # Over 30 seeds of this schedule (about 9000 aggregations) the average weight's relative
    # error had mean within 0.2% of 0 (no bias) and a standard deviation of at most 2.4% per
    # client, so 10% is 4 standard deviations; identical weights are off by 30% here
    times = ClientTimes(MEANS, distribution="exponential")
    schedule = _simulation(FedBuff(2, weights="observed"), times, P).schedule(2000.0)
    assert len(schedule) > 8000
    assert np.allclose(_mean_omega(schedule, 5), P.numpy(), rtol=0.1, atol=0)
    identical = _simulation(FedBuff(2), times, P).schedule(2000.0)
    assert np.abs(_mean_omega(identical, 5) / P.numpy() - 1).max() > 0.25


def test_identical_async_weights_favour_fast_clients_as_the_theory_says():
    # q_i = E[omega_i] / sum_j E[omega_j] with omega_i = 1 when aggregated: q_i = f_i, which
    # is proportional to 1/tau_i (fixed times: exact up to one arrival per client in T)
    times = ClientTimes(MEANS)
    T = 1000.0
    schedule = _simulation(AsyncFedAvg("identical"), times).schedule(T)
    omega = _mean_omega(schedule, 5)
    q = (1 / np.array(MEANS)) / (1 / np.array(MEANS)).sum()
    assert np.allclose(omega / omega.sum(), q, rtol=0, atol=len(MEANS) / len(schedule))
    assert not np.allclose(q, 0.2, atol=0.05)  # the bias is large here, not a rounding


def test_fedbuff_unbiased_participation_is_the_schedules_own():
    times = ClientTimes.scenario(6, slower=60)
    sim = _simulation(FedBuff(3, weights="unbiased"), times)
    f = sim.participation().numpy()
    schedule = sim.schedule(600.0)
    counts = np.zeros(6)
    for _, a in schedule[: 200 * 6]:
        counts[list(a.clients)] += 1
    assert np.allclose(f, counts / (200 * 6))
    assert np.allclose(_mean_omega(schedule[: 200 * 6], 6), 1 / 6)
