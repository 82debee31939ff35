"""Property-based tests of stochopt.quant with random and malformed input (issue #20): a
call either works (the codes decode to a tensor of the right shape) or raises a documented
exception naming its argument; ``quantize_into`` writes nothing when it raises."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.quant import DynamicQuantizer, dequantize_blockwise, dynamic_map, quantize_blockwise
from tests.contract import PROPERTIES, assert_clear_error, assert_same, snapshot

BLOCK_SIZES = st.one_of(st.integers(-3, 300), st.sampled_from([2.5, "8", None, True]))
DTYPES = st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16,
                          torch.int32, torch.bool, torch.complex64])
SHAPES = st.sampled_from([(), (0,), (1,), (7,), (3, 5), (2, 3, 4), (300,)])
FILLS = st.lists(st.sampled_from([0.0, 1.0, -2.5, 1e-30, 3e38, math.nan, math.inf]),
                 min_size=1, max_size=4)


def _tensor(shape: tuple[int, ...], dtype: torch.dtype, fills: list[float]) -> torch.Tensor:
    n = math.prod(shape)
    values = torch.tensor([fills[i % len(fills)] for i in range(n)], dtype=torch.float64)
    return values.reshape(shape).to(dtype)


@PROPERTIES
@given(shape=SHAPES, dtype=DTYPES, fills=FILLS, block_size=BLOCK_SIZES,
       signed=st.sampled_from([True, False, "yes"]))
def test_quantize_round_trip_or_a_named_error(shape, dtype, fills, block_size, signed) -> None:
    x = _tensor(shape, dtype, fills)
    try:
        code = dynamic_map(signed)
        codes, absmax = quantize_blockwise(x, code, block_size)
    except Exception as error:
        assert_clear_error(error, "block_size", "x must be", "signed")
        return
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert bool(torch.isfinite(absmax).all())  # non-finite values are stored as 0
    y = dequantize_blockwise(codes, absmax, code, block_size)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    quantizer = DynamicQuantizer(signed, block_size)
    ours = quantizer.quantize(x)
    assert torch.equal(ours[0], codes) and torch.equal(ours[1], absmax)


@PROPERTIES
@given(n=st.integers(0, 600), block_size=st.integers(1, 300), drop=st.integers(-2, 2),
       codes_dtype=st.sampled_from([torch.uint8, torch.uint8, torch.int64, torch.float32]),
       absmax_dtype=st.sampled_from([torch.float32, torch.float32, torch.float64, torch.int32]),
       absmax_2d=st.booleans())
def test_quantize_into_fits_or_writes_nothing(n, block_size, drop, codes_dtype, absmax_dtype,
                                              absmax_2d) -> None:
    quantizer = DynamicQuantizer(True, block_size)
    x = torch.linspace(-3.0, 3.0, n)
    blocks = max(-(-n // block_size) + drop, 0)
    codes = torch.full((n,), 7).to(codes_dtype)
    absmax = torch.full((blocks, 1) if absmax_2d else (blocks,), 0.5).to(absmax_dtype)
    before = snapshot(codes, absmax)
    try:
        quantizer.quantize_into(x, codes, absmax)
    except Exception as error:
        assert_clear_error(error, "DynamicQuantizer.quantize_into: ")
        assert_same(before, snapshot(codes, absmax), "quantize_into raised but wrote")
        return
    assert torch.equal(codes, quantizer.quantize(x)[0])
    try:
        values = quantizer.dequantize(codes, absmax)
    except Exception as error:
        raise AssertionError(f"codes written by quantize_into do not decode: {error}") from None
    assert values.shape == x.shape
