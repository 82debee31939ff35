"""State storage: native, bf16 and 8-bit block-wise, behind one interface."""

from __future__ import annotations

import pytest
import torch

from stochopt.optim._storage import (
    StateStorage,
    compute_precision,
    override_state_precision,
    precision_of,
)
from stochopt.quant import dynamic_map, quantize_blockwise
from tests.contract import raises_clearly


def test_native_and_bf16_round_trip_in_compute_precision() -> None:
    storage = StateStorage()
    state = {"step": torch.tensor(3.0)}
    storage.create(state, "exp_avg", torch.zeros(4), "bf16", 4096)
    storage.create(state, "other", torch.zeros(4, dtype=torch.float64), "native", 4096)
    assert storage.names(state) == ["exp_avg", "other"]
    assert state["exp_avg"].dtype == torch.bfloat16 and state["other"].dtype == torch.float64
    loaded = storage.load(state, "exp_avg")
    assert loaded.dtype == torch.float32
    storage.store(state, "exp_avg", loaded + 1.5)
    assert torch.equal(state["exp_avg"].float(), torch.full((4,), 1.5))


def test_8bit_state_is_codes_and_block_scales() -> None:
    storage = StateStorage(block_size=256, unsigned=frozenset({"exp_avg_sq"}))
    state: dict[str, torch.Tensor] = {}
    value = torch.randn(5000, generator=torch.Generator().manual_seed(0))
    storage.create(state, "exp_avg", value, "8bit", 4096)
    storage.create(state, "exp_avg_sq", value.square(), "8bit", 4096)
    storage.create(state, "small", torch.ones(10), "8bit", 4096)  # below the threshold
    assert storage.names(state) == ["exp_avg", "exp_avg_sq", "small"]
    assert state["exp_avg"].dtype == torch.uint8 and state["exp_avg.absmax"].shape == (20,)
    assert state["small"].dtype == torch.float32
    codes, _ = quantize_blockwise(value.square(), dynamic_map(signed=False), 256)
    assert torch.equal(state["exp_avg_sq"], codes)  # the unsigned map for declared states
    assert (storage.load(state, "exp_avg") - value).abs().mean() < 0.011
    storage.store(state, "exp_avg", -value)
    assert (storage.load(state, "exp_avg") + value).abs().mean() < 0.011


def test_compute_precision_upcasts_only_half_types() -> None:
    assert compute_precision(torch.zeros(1, dtype=torch.float16)).dtype == torch.float32
    assert compute_precision(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    assert compute_precision(torch.zeros(1, dtype=torch.complex64)).dtype == torch.complex64


def test_per_parameter_override() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    assert precision_of(p, "8bit") == "8bit"
    assert override_state_precision(p, "native") is p
    assert precision_of(p, "8bit") == "native"
    with pytest.raises(ValueError, match="precision must be one of"):
        override_state_precision(p, "4bit")


@pytest.mark.parametrize(("param", "precision", "names"), [
    (torch.zeros(2), "4bit", ("override_state_precision: precision must be one of 'native'",)),
    (torch.zeros(2), 8, ("override_state_precision: precision must be one of",)),
    ([1.0], "fp32", ("override_state_precision: param must be a tensor",)),
])
def test_override_state_precision_names_its_argument(param, precision, names) -> None:
    with raises_clearly(*names):
        override_state_precision(param, precision)
    assert not hasattr(param, "_stochopt_state_precision")
