"""The growing batch sampler: never shrinks, capped, passes over the data without replacement."""

from __future__ import annotations

import pytest
import torch

from stochopt.batching import GrowingBatchSampler


def test_grows_never_shrinks_and_is_capped() -> None:
    sampler = GrowingBatchSampler(100, batch_size=4, max_batch_size=32)
    batches = iter(sampler)
    sizes = []
    for request in (2, 10, 7, 1000, 5):
        sizes.append(len(next(batches)))
        sampler.grow(request)
    assert sizes == [4, 4, 10, 10, 32]
    assert sampler.samples == 60
    with pytest.raises(ValueError, match="need 1 <= batch_size <= max_batch_size, got 8 and 4"):
        GrowingBatchSampler(10, batch_size=8, max_batch_size=4)


def test_each_pass_visits_every_index_once() -> None:
    sampler = GrowingBatchSampler(12, batch_size=4, max_batch_size=12,
                                  generator=torch.Generator().manual_seed(3))
    batches = iter(sampler)
    first_pass = [i for _ in range(3) for i in next(batches)]
    assert sorted(first_pass) == list(range(12))
    loader = torch.utils.data.DataLoader(torch.arange(12), batch_sampler=sampler)
    assert len(next(iter(loader))) == 4
