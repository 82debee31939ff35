"""Property-based: random arguments to the growing sampler and the batch-size tests either work
or raise a documented exception naming the argument; a refused ``grow`` changes nothing."""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.batching import (
    GrowingBatchSampler,
    augmented_test,
    coordinate_test,
    inner_product_test,
    norm_test,
)
from tests.contract import PROPERTIES, assert_clear_error, assert_same, snapshot

SIZES = st.one_of(st.integers(min_value=-2, max_value=40),
                  st.sampled_from([2**62, 1.5, math.inf, math.nan, "4", None, True]))


@PROPERTIES
@given(n=SIZES, batch_size=SIZES, max_batch_size=SIZES, requests=st.lists(SIZES, max_size=4))
def test_sampler_grows_within_its_cap_or_names_the_argument(n, batch_size, max_batch_size,
                                                            requests) -> None:
    try:
        sampler = GrowingBatchSampler(n, batch_size, max_batch_size)
    except Exception as error:
        assert_clear_error(error, "n", "batch_size", "max_batch_size")
        return
    batches = iter(sampler)
    for request in requests:
        before = snapshot(sampler)
        try:
            size = sampler.grow(request)
        except Exception as error:
            assert_clear_error(error, "requested")
            assert_same(before, snapshot(sampler))
        else:
            assert batch_size <= size <= max_batch_size
        if sampler.batch_size <= 64:
            batch = next(batches)
            assert len(batch) == sampler.batch_size and all(0 <= i < n for i in batch)


def _grads(shape: tuple[int, ...], fill: Any, dtype: torch.dtype) -> Any:
    if fill == "list":
        return [[1.0, 2.0], [3.0, 4.0]]
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(shape, generator=gen, dtype=torch.float64) + fill
    return grads.to(dtype)


GRADS = st.builds(_grads, st.sampled_from([(4, 3), (1, 3), (3,), (4, 0), (2, 5)]),
                  st.sampled_from([0.0, 3.0, math.nan, math.inf, "list"]),
                  st.sampled_from([torch.float64, torch.float32, torch.int64]))
TOLERANCES = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from([0.1, 1, "0.1", None]))


@PROPERTIES
@given(grads=GRADS, a=TOLERANCES, b=TOLERANCES, max_size=SIZES)
def test_size_tests_give_sizes_or_name_the_argument(grads, a, b, max_size) -> None:
    calls = {"norm_test": lambda: norm_test(grads, a),
             "inner_product_test": lambda: inner_product_test(grads, a),
             "augmented_test": lambda: augmented_test(grads, a, b),
             "coordinate_test": lambda: coordinate_test(grads, a, max_size)}
    for name, call in calls.items():
        try:
            size = call()
        except Exception as error:
            assert_clear_error(error, "grads", "eta", "theta", "nu", "max_size")
            assert name in str(error)
        else:
            assert isinstance(size, int) and 0 <= size <= 2**62
