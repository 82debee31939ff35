"""The consensus point and effective sample size against hand computation: closed forms on a
small particle set, the argmin limit, invariance to shifting f, batching."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.cbo import consensus_point, consensus_weights, effective_sample_size

X = [[0.0, 0.0], [1.0, 2.0], [3.0, -1.0]]
E = [1.0, 0.5, 2.0]


def _by_hand(x: list[list[float]], energy: list[float], alpha: float) -> list[float]:
    """sum_i x_i exp(-alpha f_i) / sum_j exp(-alpha f_j), term by term (unshifted)."""
    w = [math.exp(-alpha * e) for e in energy]
    return [sum(wi * xi[k] for wi, xi in zip(w, x)) / sum(w) for k in range(len(x[0]))]


def _t(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 2.0, 7.5])
def test_consensus_point_equals_the_closed_form(alpha: float) -> None:
    got = consensus_point(_t(X), _t(E), alpha)
    # a handful of float64 operations on O(1) numbers: agreement to a few ulps
    torch.testing.assert_close(got, _t(_by_hand(X, E, alpha)), rtol=1e-14, atol=1e-15)


def test_alpha_zero_is_the_mean_and_weights_sum_to_one() -> None:
    torch.testing.assert_close(consensus_point(_t(X), _t(E), 0.0), _t(X).mean(0))
    weights = consensus_weights(_t(E), 2.0)
    assert abs(float(weights.sum()) - 1.0) < 1e-15
    assert int(weights.argmax()) == 1


@pytest.mark.parametrize("alpha", [1e6, 1e12, 1e300])
def test_huge_alpha_gives_the_argmin_exactly(alpha: float) -> None:
    # the other weights are exp(-alpha * 0.5) or smaller: exactly 0 in float64
    assert torch.equal(consensus_point(_t(X), _t(E), alpha), _t(X[1]))


def test_huge_alpha_splits_evenly_between_tied_minima() -> None:
    energy = _t([0.5, 0.5, 2.0])
    torch.testing.assert_close(consensus_point(_t(X), energy, 1e9), _t([0.5, 1.0]))


@pytest.mark.parametrize("shift", [-3.0, 1e3, 1e8])
def test_shifting_f_changes_nothing(shift: float) -> None:
    # unshifted weights exp(-2 * (1e8 + f)) underflow to 0/0; the stable form does not care
    alpha = 2.0
    got = consensus_point(_t(X), _t(E) + shift, alpha)
    # f + 1e8 loses the energies' last ~27 bits: differences of f are exact only to ~1e-8
    tol = 1e-14 if abs(shift) < 1e4 else 1e-7
    torch.testing.assert_close(got, _t(_by_hand(X, E, alpha)), rtol=tol, atol=tol)


def test_batched_systems_with_one_alpha_each_match_one_at_a_time() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, 3, generator=gen, dtype=torch.float64)  # (M, N, d)
    energy = torch.rand(4, 5, generator=gen, dtype=torch.float64) * 10
    alpha = _t([0.0, 1.0, 10.0, 1e4])
    got = consensus_point(x, energy, alpha)
    assert got.shape == (4, 3)
    for m in range(4):
        low = min(energy[m].tolist())  # by hand with f - min f: exp(-1e4 f) alone underflows
        shifted = [e - low for e in energy[m].tolist()]
        expected = _by_hand(x[m].tolist(), shifted, float(alpha[m]))
        torch.testing.assert_close(got[m], _t(expected), rtol=1e-13, atol=1e-14)


def test_effective_sample_size_by_hand() -> None:
    alpha = 1.3
    w = [math.exp(-alpha * e) for e in E]
    expected = sum(w) ** 2 / sum(v * v for v in w)
    assert abs(float(effective_sample_size(_t(E), alpha)) - expected) < 1e-14 * expected
    assert float(effective_sample_size(_t(E), 0.0)) == pytest.approx(3.0, rel=1e-15)
    assert float(effective_sample_size(_t(E), 1e9)) == pytest.approx(1.0, rel=1e-15)
    batched = effective_sample_size(_t([E, [2.0, 2.0, 2.0]]), _t([alpha, 5.0]))
    torch.testing.assert_close(batched, _t([expected, 3.0]), rtol=1e-14, atol=0.0)
