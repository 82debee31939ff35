"""The packed default path (``stochopt.optim._packed``) against the tensor-by-tensor run."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from stochopt.optim import AdaBelief, AdamW, DiffGrad, _lifted, _packed, override_state_precision
from tests.optim.helpers import assert_same_state, clone_params, grad_stream, run

#: odd sizes (no multiple of a vector width), a transposed parameter, one larger than a
#: pack, a 0-d one (run apart), and an empty one
SHAPES = ((7,), (13, 3), (1,), (33,), (5, 1, 3), (20_000,), (), (0,), (64,))


def odd_params(dtype: torch.dtype) -> list[Tensor]:
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
              for shape in SHAPES]
    params[1] = params[1].t().contiguous().t()  # transposed strides
    return [p.detach().requires_grad_() for p in params]


def twin_runs(make: Callable[[list[Tensor]], torch.optim.Optimizer], dtype: torch.dtype,
              monkeypatch: pytest.MonkeyPatch, steps: int = 5):
    """The default path and the tensor-by-tensor run, from the same parameters and gradients
    (parameter 2 without a gradient at steps 1-2: its own step count, its own pack)."""
    params = odd_params(dtype)
    twins = clone_params(params)
    stream = grad_stream(params, steps=steps, frozen=(2, range(1, 3)))
    packed = make(params)
    run(packed, params, stream)
    with monkeypatch.context() as patch:
        patch.setattr(_lifted, "apply_lifted", lambda *args: False)
        patch.setattr(_packed, "apply_packed", lambda *args: False)
        one_by_one = make(twins)
        run(one_by_one, twins, stream)
    return packed, one_by_one, params, twins


def test_packs_are_consecutive_and_bounded() -> None:
    assert _packed._packs([3, 4, 2, 9, 1], most=8) == [[0, 1], [2], [3], [4]]
    assert _packed._packs([10], most=8) == [[0]]
    assert _packed._packs([0, 0, 8, 0], most=8) == [[0, 1, 2, 3]]


def test_the_benchmark_model_is_packed(monkeypatch) -> None:
    """AdamW takes the packed path (not the lists) on the CPU."""
    calls = []
    original = _packed.apply_packed
    monkeypatch.setattr(_packed, "apply_packed",
                        lambda *args: calls.append(original(*args)) or calls[-1])
    params = odd_params(torch.float32)
    run(AdamW(params, lr=1e-2), params, grad_stream(params, steps=1))
    assert calls == [True]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("make", [
    lambda ps: AdamW(ps, lr=1e-2, weight_decay=0.1, amsgrad=True),
    lambda ps: AdaBelief(ps, lr=1e-2, weight_decay=0.05, weight_decouple=False),
    lambda ps: AdamW(ps, lr=1e-2, state_precision="bf16"),
], ids=["adamw-amsgrad", "adabelief-l2", "adamw-bf16-state"])
def test_correctly_rounded_rules_give_the_tensor_by_tensor_bits(make, dtype,
                                                               monkeypatch) -> None:
    """Additions, products, quotients and square roots are correctly rounded: a pack gives
    each value the bits it gets alone, whatever the pack's layout."""
    assert_same_state(*twin_runs(make, dtype, monkeypatch), exact=True)


def test_mixed_state_precision_packs_apart(monkeypatch) -> None:
    """A parameter whose state is kept in float32 under a bf16-state group (what
    StableEmbedding asks for) shares no pack with the others, and gets its own bits."""
    def make(ps):
        override_state_precision(ps[3], "fp32")
        return AdamW(ps, lr=1e-2, state_precision="bf16")
    packed, one_by_one, params, twins = twin_runs(make, torch.float32, monkeypatch)
    assert packed.state[params[3]]["exp_avg"].dtype == torch.float32
    assert packed.state[params[4]]["exp_avg"].dtype == torch.bfloat16
    assert_same_state(packed, one_by_one, params, twins, exact=True)


def test_transcendental_functions_agree_to_the_last_place(monkeypatch) -> None:
    """DiffGrad's friction is a sigmoid, which torch's CPU kernels compute differently in a
    vectorized body and its scalar tail (float64): a value moved across that boundary by
    packing may differ in its last bit (2**-53 relative), which a step carries into the
    parameter scaled by the learning rate. rtol 1e-14 over 5 steps is ~50 such roundings;
    anything else a pack could get wrong (a value from the wrong parameter, the wrong
    coefficient) is off by O(lr) = 1e-2."""
    packed, one_by_one, params, twins = twin_runs(
        lambda ps: DiffGrad(ps, lr=1e-2), torch.float64, monkeypatch)
    assert_same_state(packed, one_by_one, params, twins, exact=False, rtol=1e-14, atol=1e-16)
