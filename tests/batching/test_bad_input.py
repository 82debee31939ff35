"""Bad input to stochopt.batching: the sampler, the batch-size tests and per-sample gradients
check their arguments with a message naming them, and ``grow`` refuses instead of
truncating."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochopt.batching import (
    GrowingBatchSampler,
    augmented_test,
    coordinate_test,
    flat_per_sample,
    inner_product_test,
    norm_test,
    per_sample_gradients,
)
from tests.contract import assert_unchanged, raises_clearly


@pytest.mark.parametrize(("args", "kwargs", "names"), [
    ((0, 1, 2), {}, ("n must be in [1, 281474976710656], got 0",)),
    (("10", 1, 2), {}, ("n must be an integer",)),
    ((10, 1.5, 2), {}, ("batch_size must be an integer",)),
    ((10, 1, 2.0), {}, ("max_batch_size must be an integer",)),
    ((10, 0, 2), {}, ("need 1 <= batch_size <= max_batch_size, got 0 and 2",)),
    ((10, 8, 4), {}, ("need 1 <= batch_size <= max_batch_size, got 8 and 4",)),
    ((10, 1, 2), {"generator": 0}, ("generator must be a torch.Generator",)),
])
def test_sampler_refuses_bad_sizes(args, kwargs, names) -> None:
    with raises_clearly(*names):
        GrowingBatchSampler(*args, **kwargs)


@pytest.mark.parametrize(("requested", "names"), [
    (math.inf, ("requested must be an integer, got inf",)),
    (math.nan, ("requested must be an integer, got nan",)),
    (2.7, ("requested must be an integer, got 2.7",)),
    ("8", ("requested must be an integer",)),
    (-1, ("requested must be >= 0, got -1",)),
])
def test_grow_refuses_instead_of_truncating(requested, names) -> None:
    sampler = GrowingBatchSampler(10, batch_size=2, max_batch_size=6)
    assert_unchanged(lambda: sampler.grow(requested), sampler, names=names)
    assert sampler.grow(np.int64(4)) == 4 and sampler.grow(2**62) == 6


@pytest.mark.parametrize("test", [norm_test, inner_product_test, coordinate_test,
                                  augmented_test], ids=lambda f: f.__name__)
def test_size_tests_check_gradients_and_tolerances(test) -> None:
    def call(grads, tolerance=0.1):
        if test is coordinate_test:
            return test(grads, tolerance, 100)
        if test is augmented_test:
            return test(grads, tolerance, 0.1)
        return test(grads, tolerance)

    name = test.__name__
    good = torch.tensor([[1.0, 2.0], [3.0, 5.0], [0.0, 1.0]])
    with raises_clearly(f"{name}: grads must be a tensor"):
        call(good.tolist())
    with raises_clearly(f"{name}: grads must be finite"):
        call(torch.tensor([[1.0, math.nan], [1.0, 2.0]]))
    with raises_clearly(f"{name}: grads must be a floating-point tensor"):
        call(good.long())
    with raises_clearly("(B >= 2, P), got (3, 0)"):
        call(good[:, :0])
    with raises_clearly("(B >= 2, P), got (2,)"):
        call(good[0])
    for bad in (0.0, -0.1, math.inf, math.nan):
        with raises_clearly(f"{name}: "):
            call(good, bad)
    assert call(good) >= 1


def test_zero_mean_gradients_ask_for_nothing_or_for_everything() -> None:
    zeros = torch.zeros(4, 3)
    assert norm_test(zeros, eta=0.1) == 0 and inner_product_test(zeros, theta=0.1) == 0
    assert augmented_test(zeros, theta=0.1, nu=0.1) == 0
    opposite = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # mean 0, variance > 0
    assert norm_test(opposite, eta=0.1) == 2**62
    assert augmented_test(opposite, theta=0.1, nu=0.1) == 2**62
    with raises_clearly("coordinate_test: max_size must be >= 1"):
        coordinate_test(opposite, 0.1, 0)


def test_per_sample_gradients_check_their_arguments() -> None:
    model = torch.nn.Linear(3, 1)

    def loss(out, y):
        return ((out - y) ** 2).mean()

    x, y = torch.randn(4, 3), torch.randn(4, 1)
    with raises_clearly("inputs and targets must hold the same number of examples"):
        per_sample_gradients(model, loss, x, torch.randn(5, 1))
    with raises_clearly("loss_fn must return a scalar loss"):
        per_sample_gradients(model, lambda o, t: (o - t).expand(1, 2), x, y)
    with raises_clearly("model has no parameter that requires grad"):
        per_sample_gradients(torch.nn.ReLU(), loss, x, x)
    with raises_clearly("model must be a torch.nn.Module"):
        per_sample_gradients(lambda t: t, loss, x, y)
    with raises_clearly("loss_fn must be callable"):
        per_sample_gradients(model, "mse", x, y)
    with raises_clearly("inputs must have shape (B, ...) with B >= 1"):
        per_sample_gradients(model, loss, x[:0], y[:0])
    with raises_clearly("targets must be a tensor"):
        per_sample_gradients(model, loss, x, [1.0] * 4)
    with raises_clearly("flat_per_sample: grads must hold at least one"):
        flat_per_sample({})
    with raises_clearly("flat_per_sample: grads must be a dict"):
        flat_per_sample([torch.ones(2, 2)])
    with raises_clearly("the same number of examples"):
        flat_per_sample({"a": torch.ones(2, 3), "b": torch.ones(3)})
