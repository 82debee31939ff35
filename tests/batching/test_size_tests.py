"""Batch-size tests pinned to their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.batching import augmented_test, coordinate_test, inner_product_test, norm_test


def test_identical_per_sample_gradients_never_grow_the_batch() -> None:
    same = torch.tensor([[1.0, -2.0, 0.5]]).repeat(8, 1)
    assert norm_test(same, eta=0.1) == 0
    assert inner_product_test(same, theta=0.1) == 0
    assert augmented_test(same, theta=0.1, nu=0.1) == 0
    assert coordinate_test(same, eta=0.1, max_size=1000) == 0


def test_norm_test_by_hand() -> None:
    grads = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # mean (2, 1); variances 2 and 2
    assert norm_test(grads, eta=0.5) == math.ceil(4 / (0.25 * 5))  # = 4


def test_inner_product_and_orthogonality_by_hand() -> None:
    grads = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # mean (1, 1)
    # <g_i, mean> = 3, 1, 2: variance 1; ||mean||^4 = 4
    assert inner_product_test(grads, theta=0.5) == math.ceil(1 / (0.25 * 4))
    # orthogonal parts along (1, -1)/2: (0.5, -0.5), (-0.5, 0.5), (0, 0): variances 0.25, 0.25
    assert augmented_test(grads, theta=10.0, nu=0.5) == math.ceil(0.5 / (0.25 * 2))


def test_coordinate_test_caps_vanishing_coordinates() -> None:
    grads = torch.tensor([[1.0, 1.0], [1.0, -1.0]])  # second coordinate: mean 0, variance 2
    assert coordinate_test(grads, eta=0.1, max_size=500) == 500
    with pytest.raises(ValueError, match=r"shape \(B >= 2, P\), got \(1, 2\)"):
        norm_test(grads[:1], eta=0.1)
