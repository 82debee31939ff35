"""Block-wise quantization: errors no worse than bitsandbytes', and the edge cases."""

from __future__ import annotations

import logging

import pytest
import torch

from stochopt.quant import dequantize_blockwise, dynamic_map, quantize_blockwise


def _round_trip(x: torch.Tensor, signed: bool, block: int = 256) -> torch.Tensor:
    code = dynamic_map(signed)
    codes, absmax = quantize_blockwise(x, code, block)
    return dequantize_blockwise(codes, absmax, code, block)


@pytest.mark.parametrize(("data", "signed", "bnb_bound"), [
    ("randn", True, 0.011), ("rand", True, 0.0036), ("rand", False, 0.0023)])
def test_errors_no_worse_than_bitsandbytes(data: str, signed: bool, bnb_bound: float) -> None:
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    F = pytest.importorskip("bitsandbytes.functional")
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn if data == "randn" else torch.rand)(1024, 1024, generator=gen)
    ours = (_round_trip(x, signed) - x).abs().mean().item()
    codes, state = F.quantize_blockwise(x, code=dynamic_map(signed), blocksize=256)
    theirs = (F.dequantize_blockwise(codes, state) - x).abs().mean().item()
    assert ours <= theirs * (1 + 1e-6), f"ours {ours:.3g} vs bitsandbytes {theirs:.3g}"
    assert ours < bnb_bound  # the bound bitsandbytes' own tests use


def test_codes_are_nearest_map_entries_and_keep_signs() -> None:
    code = dynamic_map(True)
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(1))
    codes, absmax = quantize_blockwise(x, code, 256)
    y = dequantize_blockwise(codes, absmax, code, 256)
    assert bool(((y == 0) | (torch.sign(y) == torch.sign(x))).all())
    full = x[: 9984].view(-1, 256) / absmax[:-1, None]
    distance = (full.reshape(-1, 1) - code[None, :]).abs()
    assert torch.equal(codes[:9984].long(), distance.argmin(dim=1))  # 39 full blocks of 256


def test_last_partial_block_zeros_and_empty() -> None:
    code = dynamic_map(True)
    x = torch.cat([torch.zeros(256), torch.tensor([3.0, -1.5, 0.0])])
    codes, absmax = quantize_blockwise(x, code, 256)
    assert absmax.tolist() == [0.0, 3.0]
    y = dequantize_blockwise(codes, absmax, code, 256)
    assert torch.equal(y[:256], torch.zeros(256))
    assert y[256].item() == 3.0 and y[257].item() == pytest.approx(-1.5, rel=0.01)
    empty_codes, empty_absmax = quantize_blockwise(torch.empty(0), code, 256)
    assert empty_codes.shape == (0,) and empty_absmax.shape == (0,)
    assert dequantize_blockwise(empty_codes, empty_absmax, code, 256).shape == (0,)


def test_non_finite_values_are_stored_as_zero_and_do_not_spoil_the_block() -> None:
    code = dynamic_map(True)
    x = torch.tensor([1.0, float("nan"), float("inf"), -2.0])
    codes, absmax = quantize_blockwise(x, code, 4)
    assert absmax.tolist() == [2.0]
    y = dequantize_blockwise(codes, absmax, code, 4)
    assert y[1].item() == 0.0 and y[2].item() == 0.0
    assert y[3].item() == pytest.approx(-2.0, rel=0.01) and y[0].item() == pytest.approx(1.0,
                                                                                         rel=0.01)


@pytest.mark.parametrize("signed", [True, False])
def test_table_quantizer_gives_exactly_the_searched_codes(signed: bool) -> None:
    from stochopt.quant import DynamicQuantizer

    code = dynamic_map(signed)
    bounds = (code[:-1] + code[1:]) / 2
    gen = torch.Generator().manual_seed(7)
    # random values, tiny ones, every decision boundary and its float neighbours (ties)
    x = torch.cat([torch.randn(200_000, generator=gen), torch.randn(5000, generator=gen) * 1e-6,
                   bounds, bounds.nextafter(torch.tensor(2.0)),
                   bounds.nextafter(torch.tensor(-2.0)), torch.tensor([0.0, -0.0, 1.0, -1.0])])
    x = x.abs() if not signed else x
    ours, our_absmax = DynamicQuantizer(signed, 256).quantize(x)
    searched, absmax = quantize_blockwise(x, code, 256)
    assert torch.equal(ours, searched) and torch.equal(our_absmax, absmax)
    scaled = torch.cat([bounds, -bounds, bounds.nextafter(torch.tensor(2.0))]).clamp(-1, 1)
    scaled = scaled.abs() if not signed else scaled
    quantizer = DynamicQuantizer(signed, 256)
    assert torch.equal(quantizer._codes(scaled).long(), torch.bucketize(scaled, bounds))
