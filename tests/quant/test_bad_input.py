"""Bad input to stochopt.quant (issue #20): each public function names the argument at fault,
and ``quantize_into`` writes nothing when it raises."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from stochopt.quant import DynamicQuantizer, dequantize_blockwise, dynamic_map, quantize_blockwise
from tests.contract import assert_unchanged, raises_clearly

X = torch.linspace(-1.0, 1.0, 1000)
CODE = dynamic_map(True)
CODES, ABSMAX = quantize_blockwise(X, CODE, 256)


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"block_size": 0}, ("block_size must be >= 1, got 0",)),
    ({"block_size": -3}, ("block_size must be >= 1",)),
    ({"block_size": 2.5}, ("block_size must be an integer, got 2.5",)),
    ({"block_size": "256"}, ("block_size must be an integer",)),
    ({"x": torch.arange(10)}, ("x must be a real floating-point tensor, got dtype torch.int64",)),
    ({"x": torch.zeros(3, dtype=torch.complex64)}, ("x must be a real floating-point",)),
    ({"x": [1.0, 2.0]}, ("x must be a tensor",)),
    ({"code": torch.randn(10, generator=torch.Generator().manual_seed(0))},
     ("code must be finite and sorted ascending",)),
    ({"code": torch.zeros(300)}, ("code must be 1-d with 2 to 256 values",)),
    ({"code": torch.tensor([0.0, float("nan")])}, ("code must be finite",)),
    ({"code": torch.arange(256)}, ("code must be a floating-point tensor",)),
])
def test_quantize_blockwise_refuses(kwargs: dict[str, Any], names: tuple[str, ...]) -> None:
    args = {"x": X, "code": CODE, "block_size": 256, **kwargs}
    with raises_clearly(*(f"quantize_blockwise: {n}" for n in names)):
        quantize_blockwise(**args)


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"absmax": ABSMAX[:2]}, ("absmax must have shape (4,), one value per block of 256",)),
    ({"absmax": torch.cat([ABSMAX, ABSMAX])}, ("absmax must have shape (4,)",)),
    ({"absmax": ABSMAX[:, None]}, ("absmax must have shape (4,)",)),
    ({"absmax": ABSMAX.long()}, ("absmax must be a floating-point tensor",)),
    ({"codes": CODES.float()}, ("codes must be a torch.uint8 tensor",)),
    ({"codes": CODES.long() + 300}, ("codes must be a torch.uint8 tensor",)),
    ({"block_size": 0}, ("block_size must be >= 1",)),
    ({"block_size": 100}, ("absmax must have shape (10,)",)),
    ({"dtype": torch.int32}, ("dtype must be a floating-point torch.dtype",)),
    ({"dtype": "float32"}, ("dtype must be a floating-point torch.dtype",)),
    ({"code": torch.linspace(-1, 1, 16)}, ("codes must index code (< 16)",)),
])
def test_dequantize_blockwise_refuses(kwargs: dict[str, Any], names: tuple[str, ...]) -> None:
    args = {"codes": CODES, "absmax": ABSMAX, "code": CODE, "block_size": 256, **kwargs}
    with raises_clearly(*(f"dequantize_blockwise: {n}" for n in names)):
        dequantize_blockwise(**args)


@pytest.mark.parametrize(("args", "names"), [
    ((True, 0), ("block_size must be >= 1",)),
    ((True, 2.5), ("block_size must be an integer",)),
    (("yes",), ("signed must be True or False, got 'yes'",)),
    ((True, 256, "nodev"), ("device must be a torch.device or a device name",)),
])
def test_dynamic_quantizer_constructor_refuses(args: tuple[Any, ...], names: tuple[str, ...]
                                               ) -> None:
    with raises_clearly(*(f"DynamicQuantizer: {n}" for n in names)):
        DynamicQuantizer(*args)


def test_dynamic_quantizer_methods_refuse_what_does_not_fit() -> None:
    q = DynamicQuantizer(True, 256)
    with raises_clearly("DynamicQuantizer.quantize: x must be a real floating-point tensor"):
        q.quantize(torch.arange(4))
    with raises_clearly("DynamicQuantizer.dequantize: absmax must have shape (4,)"):
        q.dequantize(CODES, ABSMAX[:1])
    with raises_clearly("DynamicQuantizer.dequantize: codes must be a torch.uint8 tensor"):
        q.dequantize(CODES.float(), ABSMAX)


@pytest.mark.parametrize(("codes", "absmax", "names"), [
    (torch.zeros(10, dtype=torch.uint8), torch.zeros(1), ("codes must have the 1000 values",)),
    (torch.zeros(1000), torch.zeros(4), ("codes must be a torch.uint8 tensor",)),
    (torch.zeros(1000, dtype=torch.uint8), torch.zeros(3), ("absmax must have shape (4,)",)),
    (torch.zeros(1000, dtype=torch.uint8), torch.zeros(4, dtype=torch.float64),
     ("absmax must have dtype torch.float32",)),
])
def test_quantize_into_refuses_and_writes_nothing(codes, absmax, names) -> None:
    q = DynamicQuantizer(False, 256)
    assert_unchanged(lambda: q.quantize_into(X.abs(), codes, absmax), codes, absmax,
                     names=tuple(f"DynamicQuantizer.quantize_into: {n}" for n in names))


@pytest.mark.parametrize(("kwargs", "names"), [
    ({"signed": "x"}, ("signed must be True or False",)),
    ({"total_bits": 0}, ("total_bits must be in [1, 16], got 0",)),
    ({"total_bits": 20}, ("total_bits must be in [1, 16], got 20",)),
    ({"max_exponent_bits": 9}, ("max_exponent_bits must be in [0, 7], got 9",)),
    ({"max_exponent_bits": -1}, ("max_exponent_bits must be in [0, 7]",)),
    ({"max_exponent_bits": 2.0}, ("max_exponent_bits must be an integer",)),
])
def test_dynamic_map_refuses(kwargs: dict[str, Any], names: tuple[str, ...]) -> None:
    with raises_clearly(*(f"dynamic_map: {n}" for n in names)):
        dynamic_map(**kwargs)


def test_smaller_valid_maps_still_build() -> None:
    assert dynamic_map(True, 3, 4).shape == (16,)
    assert dynamic_map(False, 0, 2).shape == (4,)
