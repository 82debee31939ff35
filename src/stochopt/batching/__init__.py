"""Adaptive batch sizes: per-sample gradients, the batch-size tests (norm, inner-product,
augmented, coordinate-wise) and a sampler that grows the batch (AdAdaGrad, Lau et al. 2024).

A training loop with AdaGrad and the norm test::

    sampler = GrowingBatchSampler(len(x), batch_size=2, max_batch_size=len(x))
    for step, batch in zip(range(steps), sampler):
        grads = per_sample_gradients(model, loss_fn, x[batch], y[batch])
        for name, p in model.named_parameters():
            p.grad = grads[name].mean(dim=0)
        opt.step()
        sampler.grow(norm_test(flat_per_sample(grads), eta=0.1))
"""

from __future__ import annotations

from stochopt.batching.per_sample import flat_per_sample, per_sample_gradients
from stochopt.batching.sampler import GrowingBatchSampler
from stochopt.batching.size_tests import (
    augmented_test,
    coordinate_test,
    inner_product_test,
    norm_test,
)

__all__ = [
    "GrowingBatchSampler",
    "augmented_test",
    "coordinate_test",
    "flat_per_sample",
    "inner_product_test",
    "norm_test",
    "per_sample_gradients",
]
