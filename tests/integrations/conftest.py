"""One thread for the trainer-integration tests: their models are tiny, and two threads only
wait on each other (on a busy 2-core machine a step took 1.2 s with two, 7 ms with one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
