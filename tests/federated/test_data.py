"""The Dirichlet label split and the clients' importance; the compute times (the paper's F-X
formula, expected FedFix windows against their definition)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochopt.federated import ClientTimes, dirichlet_split, importance

LABELS = torch.arange(1000) % 10


def test_the_split_partitions_the_examples_and_is_reproducible():
    parts = dirichlet_split(LABELS, 7, alpha=0.3, seed=3)
    joined = torch.cat(parts).sort().values
    assert torch.equal(joined, torch.arange(1000))
    again = dirichlet_split(LABELS, 7, alpha=0.3, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))


def test_small_alpha_concentrates_classes_and_large_alpha_is_near_iid():
    def top_class_share(alpha: float) -> float:
        """The mean, over clients, of the share of a client's examples in its main class."""
        parts = dirichlet_split(LABELS, 10, alpha=alpha, seed=0)
        return float(np.mean([LABELS[p].bincount().max() / len(p) for p in parts if len(p)]))

    # Dir(0.05) gives most clients one dominant class; Dir(1000) about a tenth of each
    # class (an IID client's main class holds 10% plus the multinomial spread, ~3%)
    assert top_class_share(0.05) > 0.6
    assert top_class_share(1000.0) < 0.16


def test_a_split_that_cannot_meet_min_size_says_what_to_change():
    with pytest.raises(ValueError, match="raise alpha or lower min_size"):
        dirichlet_split(LABELS, 50, alpha=0.01, seed=0, min_size=15, tries=3)
    with pytest.raises(ValueError, match="needs 2000 examples"):
        dirichlet_split(LABELS, 20, alpha=1.0, min_size=100)
    with pytest.raises(ValueError, match="alpha must be in"):
        dirichlet_split(LABELS, 2, alpha=-1.0)
    with pytest.raises(TypeError, match="labels must be a 1-d integer tensor"):
        dirichlet_split(LABELS.float(), 2, alpha=1.0)


def test_importance():
    assert torch.equal(importance([1, 3]), torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert torch.equal(importance([1, 3], "uniform"), torch.tensor([0.5, 0.5],
                                                                   dtype=torch.float64))
    with pytest.raises(ValueError, match="kind must be"):
        importance([1, 3], "size")


def test_the_f_x_scenario_is_the_papers_formula():
    times = ClientTimes.scenario(5, slower=80)
    assert times.mean.tolist() == pytest.approx([1 - i * 0.8 / 4 for i in range(5)], abs=0)
    with pytest.raises(ValueError, match="slower must be in"):
        ClientTimes.scenario(5, slower=100)
    with pytest.raises(ValueError, match="one positive time per client"):
        ClientTimes([1.0, 0.0])


def test_expected_windows_match_their_definition():
    dt = 0.3
    fixed = ClientTimes([1.0, 0.6, 0.2])
    assert fixed.expected_windows(dt).tolist() == [4.0, 2.0, 1.0]  # 0.6/0.3 is 2 windows
    exp = ClientTimes([1.0, 0.25], distribution="exponential")
    # sum_k P(T > k dt) = sum_k exp(-k dt / tau)
    series = [sum(math.exp(-k * dt / t) for k in range(2000)) for t in (1.0, 0.25)]
    assert exp.expected_windows(dt).tolist() == pytest.approx(series, rel=1e-12)
    # log-normal: the series against a Monte Carlo mean of ceil(T/dt) over 200k draws
    # (standard error below 0.01 for these means; 5 of them is the tolerance)
    ln = ClientTimes([1.0, 0.4], distribution="lognormal", sigma=0.5)
    rng = np.random.default_rng(0)
    mc = []
    for i in range(2):
        draws = np.array([ln.draw(i, rng) for _ in range(200_000)])
        mc.append(np.ceil(draws / dt).mean())
        assert abs(draws.mean() - ln.mean[i].item()) < 5 * draws.std() / math.sqrt(2e5)
    assert ln.expected_windows(dt).tolist() == pytest.approx(mc, abs=0.05)
