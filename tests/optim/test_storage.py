"""Native state storage: names, compute precision, write-back."""

from __future__ import annotations

import torch

from stochopt.optim._storage import NativeStorage, compute_precision


def test_native_storage_round_trip_in_compute_precision() -> None:
    storage = NativeStorage()
    state = {"step": torch.tensor(3.0)}
    storage.create(state, "exp_avg", torch.zeros(4, dtype=torch.bfloat16))
    assert storage.names(state) == ["exp_avg"]
    loaded = storage.load(state, "exp_avg")
    assert loaded.dtype == torch.float32
    storage.store(state, "exp_avg", loaded + 1.5)
    assert state["exp_avg"].dtype == torch.bfloat16
    assert torch.equal(state["exp_avg"].float(), torch.full((4,), 1.5))


def test_compute_precision_upcasts_only_half_types() -> None:
    assert compute_precision(torch.zeros(1, dtype=torch.float16)).dtype == torch.float32
    assert compute_precision(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    assert compute_precision(torch.zeros(1, dtype=torch.complex64)).dtype == torch.complex64
