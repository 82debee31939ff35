"""StableEmbedding: initialization, float32 layer norm, 32-bit state under 8-bit optimizers."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.nn import StableEmbedding
from stochopt.optim import AdamW8bit
from tests.contract import raises_clearly


def test_xavier_uniform_initialization_and_padding() -> None:
    torch.manual_seed(0)
    emb = StableEmbedding(1000, 64, padding_idx=3)
    bound = math.sqrt(6 / (1000 + 64))
    assert emb.weight.abs().max() <= bound
    assert emb.weight.abs().max() > 0.9 * bound  # uniform on the whole interval
    assert torch.equal(emb.weight[3], torch.zeros(64))


def test_layer_norm_runs_in_float32_and_returns_the_weight_dtype() -> None:
    emb = StableEmbedding(50, 8, dtype=torch.bfloat16)
    out = emb(torch.tensor([[1, 2], [3, 4]]))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 2, 8)
    assert emb.norm.weight.dtype == torch.float32
    expected = torch.nn.functional.layer_norm(emb.weight[[1, 2]].float(), (8,))
    torch.testing.assert_close(out[0].float(), expected.to(torch.bfloat16).float())


def test_weight_keeps_32_bit_state_under_an_8_bit_optimizer() -> None:
    emb = StableEmbedding(200, 64)  # 12800 values: above the 8-bit threshold
    linear = torch.nn.Linear(64, 128)  # 8192 values
    opt = AdamW8bit([*emb.parameters(), *linear.parameters()])
    linear(emb(torch.tensor([1, 5, 7]))).sum().backward()
    opt.step()
    assert opt.state[emb.weight]["exp_avg"].dtype == torch.float32
    assert opt.state[linear.weight]["exp_avg"].dtype == torch.uint8


@pytest.mark.parametrize(("args", "kwargs", "names"), [
    ((0, 4), {}, ("num_embeddings must be >= 1, got 0",)),
    ((-1, 4), {}, ("num_embeddings must be >= 1",)),
    ((4.5, 4), {}, ("num_embeddings must be an integer, got 4.5",)),
    ((4, 0), {}, ("embedding_dim must be >= 1, got 0",)),
    ((4, "8"), {}, ("embedding_dim must be an integer",)),
    ((4, 4), {"padding_idx": 10}, ("padding_idx must be in [-4, 3], got 10",)),
    ((4, 4), {"padding_idx": 1.0}, ("padding_idx must be an integer",)),
    ((4, 4), {"dtype": torch.int64}, ("dtype must be a floating-point torch.dtype",)),
    ((4, 4), {"dtype": "float"}, ("dtype must be a floating-point torch.dtype",)),
    ((4, 4), {"device": "nodev"}, ("device must be a torch.device",)),
])
def test_bad_constructor_arguments_are_named(args, kwargs, names) -> None:
    with raises_clearly(*(f"StableEmbedding: {n}" for n in names)):
        StableEmbedding(*args, **kwargs)
