"""A batch sampler whose batch size can only grow (up to a cap): adaptive batch sizes in a few
lines of a training loop."""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import torch

from stochopt._checks import check_int, show

__all__ = ["GrowingBatchSampler"]


class GrowingBatchSampler:
    """Endless batches of indices into ``range(n)``, drawn without replacement within each
    pass over the data (a new seeded permutation per pass); :meth:`grow` raises the size of
    the following batches, never lowers it, and caps it at ``max_batch_size``.

    Usable as a ``torch.utils.data.DataLoader(..., batch_sampler=...)``.

    Args:
        n: the number of examples, at least 1.
        batch_size: the first batches' size, in ``[1, max_batch_size]`` (a batch may span
            two passes when it exceeds ``n``).
        max_batch_size: the cap of :meth:`grow`.
        generator: the source of the permutations (a ``torch.Generator``; default one seeded
            with 0).

    Example:
        >>> sampler = GrowingBatchSampler(10, batch_size=2, max_batch_size=8)
        >>> batches = iter(sampler)
        >>> len(next(batches)), sampler.grow(5), len(next(batches)), sampler.grow(3)
        (2, 5, 5, 5)
    """

    def __init__(self, n: int, batch_size: int, max_batch_size: int,
                 generator: torch.Generator | None = None) -> None:
        owner = "GrowingBatchSampler"
        n = check_int(owner, "n", n, low=1, high=2**48)  # a permutation of n is kept in memory
        for name, value in (("batch_size", batch_size), ("max_batch_size", max_batch_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{owner}: {name} must be an integer, got {show(value)}")
        if not 1 <= batch_size <= max_batch_size:
            raise ValueError(f"GrowingBatchSampler: need 1 <= batch_size <= max_batch_size, got "
                             f"{batch_size} and {max_batch_size}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{owner}: generator must be a torch.Generator or None, got "
                            f"{show(generator)}")
        self.n, self.batch_size, self.max_batch_size = n, int(batch_size), int(max_batch_size)
        self.generator = generator or torch.Generator().manual_seed(0)
        self.samples = 0  # drawn so far

    def grow(self, requested: int) -> int:
        """Ask for batches of ``requested`` (an integer >= 0, e.g. a batch-size test's answer);
        returns the size now in force."""
        requested = check_int("GrowingBatchSampler.grow", "requested", requested, low=0)
        self.batch_size = min(self.max_batch_size, max(self.batch_size, requested))
        return self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order: list[int] = []
        while True:
            while len(order) < self.batch_size:  # top up with the next pass's permutation
                order += torch.randperm(self.n, generator=self.generator).tolist()
            batch, order = order[: self.batch_size], order[self.batch_size:]
            self.samples += len(batch)
            yield batch
