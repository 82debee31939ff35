"""StableEmbedding: initialization, float32 layer norm, 32-bit state under 8-bit optimizers."""

from __future__ import annotations

import copy
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


def _state_dtype_after_a_step(emb: StableEmbedding) -> torch.dtype:
    """The dtype of the first moment an 8-bit optimizer built now gives ``emb.weight``."""
    opt = AdamW8bit(emb.parameters())
    emb(torch.tensor([1, 5, 7])).float().sum().backward()
    opt.step()
    return opt.state[emb.weight]["exp_avg"].dtype


def _deepcopied() -> StableEmbedding:
    return copy.deepcopy(StableEmbedding(200, 64))


def _loaded_with_assign() -> StableEmbedding:
    emb = StableEmbedding(200, 64)
    emb.load_state_dict(StableEmbedding(200, 64).state_dict(), assign=True)
    return emb


def _built_on_meta() -> StableEmbedding:
    with torch.device("meta"):
        emb = StableEmbedding(200, 64, padding_idx=0)
    emb.to_empty(device="cpu")
    emb.reset_parameters()
    return emb


def _reassigned() -> StableEmbedding:
    emb = StableEmbedding(200, 64)
    emb.weight = torch.nn.Parameter(torch.randn(200, 64))
    return emb


@pytest.mark.parametrize("make", [_deepcopied, _loaded_with_assign, _built_on_meta, _reassigned],
                         ids=["deepcopy", "load_state_dict-assign", "meta-to_empty", "setattr"])
def test_32_bit_state_survives_what_replaces_the_weight(make) -> None:
    """Each of these torch operations puts a new Parameter object in place of the weight; the
    module re-applies its 32-bit request to it, so an optimizer built afterwards keeps the
    embedding's state in float32 (12800 values: 8-bit without the request)."""
    torch.manual_seed(0)
    emb = make()
    assert _state_dtype_after_a_step(emb) == torch.float32


def test_meta_initialization_resets_the_layer_norm_too() -> None:
    """After ``to_empty`` every parameter holds garbage; ``reset_parameters()`` reinitializes
    the layer norm as well as the embedding, so the module equals a freshly built one's
    initialization (ones and zeros) and its padding row is zero."""
    emb = _built_on_meta()
    assert torch.equal(emb.norm.weight, torch.ones(64))
    assert torch.equal(emb.norm.bias, torch.zeros(64))
    assert torch.equal(emb.weight[0], torch.zeros(64))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_forward_after_converting_the_module(dtype) -> None:
    """``model.to(dtype)`` converts the layer norm's parameters too; the forward still
    normalizes in at least float32 and returns the module's dtype. Reference: the same
    lookup, normalized in float64 with the converted norm parameters; bf16 output carries 8
    significant bits (relative error 2**-8), fp16 11, float64 is exact to rounding."""
    torch.manual_seed(0)
    emb = StableEmbedding(50, 8)
    with torch.no_grad():
        emb.norm.weight.uniform_(0.5, 1.5)
        emb.norm.bias.uniform_(-0.5, 0.5)
    emb = emb.to(dtype)
    assert emb.norm.weight.dtype == dtype
    index = torch.tensor([[1, 2], [3, 4]])
    out = emb(index)
    assert out.dtype == dtype and out.shape == (2, 2, 8)
    expected = torch.nn.functional.layer_norm(
        emb.weight[index].double(), (8,), emb.norm.weight.double(), emb.norm.bias.double())
    tolerance = {torch.bfloat16: 2**-7, torch.float16: 2**-10, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(out.double(), expected, atol=tolerance * 4, rtol=tolerance)
    out.float().sum().backward()
    assert emb.weight.grad.dtype == dtype and emb.norm.weight.grad.dtype == dtype


def test_converted_module_keeps_32_bit_state() -> None:
    emb = StableEmbedding(200, 64).to(torch.bfloat16)
    assert _state_dtype_after_a_step(emb) == torch.float32
