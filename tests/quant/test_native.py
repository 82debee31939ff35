"""The native (C) block-wise kernels give bit for bit the codes and scales of the torch path."""

from __future__ import annotations

import ctypes
import logging
import os

import pytest
import torch

from stochopt.quant import DynamicQuantizer, _native, dequantize_blockwise, dynamic_map
from stochopt.quant import quantize_blockwise as searched_quantize

pytestmark = pytest.mark.skipif(_native.kernels() is None,
                                reason="no C compiler: the native kernels are not built")


def _native_quantize(x: torch.Tensor, signed: bool, block: int) -> tuple[torch.Tensor, ...]:
    codes = torch.empty(x.shape, dtype=torch.uint8)
    absmax = torch.empty(-(-x.numel() // block))
    _native.quantize_blockwise_(x, codes, absmax, signed, block)
    return codes, absmax


def _codes_of_scaled(values: torch.Tensor, signed: bool) -> torch.Tensor:
    """Native codes of values in [-1, 1] themselves: each in a block [1.0, value], whose scale
    is exactly 1, so that the value reaches the nearest-code search unchanged."""
    pairs = torch.stack([torch.ones_like(values), values], 1)
    return _native_quantize(pairs, signed, 2)[0][:, 1]


def _bounds(signed: bool) -> torch.Tensor:
    code = dynamic_map(signed)
    return (code[:-1] + code[1:]) / 2  # (255,) the searched decision boundaries


@pytest.mark.parametrize("signed", [True, False])
def test_every_boundary_and_its_float_neighbours(signed: bool) -> None:
    # the only values whose code a search could get wrong are within a few ulps of a
    # boundary; 64 float32 steps either side of every one, and exact ties, both signs
    bits = _bounds(signed).view(torch.int32)[:, None] + torch.arange(-64, 65, dtype=torch.int32)
    values = bits.reshape(-1).view(torch.float32).clamp(-1, 1)
    values = torch.cat([values, -values, dynamic_map(signed), torch.tensor([0.0, -0.0])])
    if not signed:
        values = values.clamp(min=0.0)
    assert torch.equal(_codes_of_scaled(values, signed).long(),
                       torch.bucketize(values, _bounds(signed)))


@pytest.mark.parametrize("signed", [True, False])
def test_float32_values_at_a_stride(signed: bool) -> None:
    # one float32 bit pattern in 97 between 0 and 1 (11M values), both signs
    values = torch.arange(0, 0x3F800001, 97, dtype=torch.int32).view(torch.float32)
    values = torch.cat([values, -values]) if signed else values
    reference = DynamicQuantizer(signed)._codes(values)  # the torch path's table quantizer
    assert torch.equal(_codes_of_scaled(values, signed), reference)


@pytest.mark.slow
@pytest.mark.parametrize("signed", [True, False])
def test_every_float32_value(signed: bool) -> None:
    quantizer = DynamicQuantizer(signed)
    for start in range(0, 0x3F800001, 1 << 26):
        values = torch.arange(start, min(start + (1 << 26), 0x3F800001),
                              dtype=torch.int32).view(torch.float32)
        for sign in ((1.0, -1.0) if signed else (1.0,)):
            assert torch.equal(_codes_of_scaled(sign * values, signed),
                               quantizer._codes(sign * values)), (start, sign)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("block", [256, 64, 7, 1])
def test_blocks_match_the_searched_quantizer(signed: bool, block: int) -> None:
    gen = torch.Generator().manual_seed(11)
    # Adam-like magnitudes over many decades, a partial last block, non-finite values, zeros
    x = torch.randn(5000, generator=gen) * torch.rand(5000, generator=gen) ** 6
    x[7], x[100], x[2000], x[3000:3300] = float("nan"), float("inf"), -float("inf"), 0.0
    x = x if signed else x.abs()
    codes, absmax = _native_quantize(x, signed, block)
    expected_codes, expected_absmax = searched_quantize(x, dynamic_map(signed), block)
    assert torch.equal(codes, expected_codes) and torch.equal(absmax, expected_absmax)
    values = _native.dequantize_blockwise(codes, absmax, signed, block)
    assert torch.equal(values, dequantize_blockwise(codes, absmax, dynamic_map(signed), block))


def test_unsigned_map_stores_negative_values_as_zero() -> None:
    x = torch.tensor([-1.0, -0.5, 0.25, 1.0])
    codes, _ = _native_quantize(x, False, 4)
    assert torch.equal(codes, searched_quantize(x, dynamic_map(False), 4)[0])
    assert codes[:2].tolist() == [0, 0]


def test_threads_do_not_change_the_result() -> None:
    x = torch.randn(300_000, generator=torch.Generator().manual_seed(12))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _native_quantize(x, True, 256)
        torch.set_num_threads(2)
        two = _native_quantize(x, True, 256)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


def test_quantizer_uses_the_kernels_in_compiled_graphs_and_falls_back_without_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    quantizer = DynamicQuantizer(True)
    x = torch.randn(1000, generator=torch.Generator().manual_seed(13))

    def step(x: torch.Tensor, codes: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
        quantizer.quantize_into(x * 2, codes, absmax)
        return quantizer.dequantize(codes, absmax)

    expected_codes, expected_absmax = searched_quantize(x * 2, quantizer.code)
    for compiled in (False, True):
        codes, absmax = torch.empty(1000, dtype=torch.uint8), torch.empty(4)
        fn = torch.compile(step, fullgraph=True) if compiled else step
        values = fn(x, codes, absmax)
        assert torch.equal(codes, expected_codes) and torch.equal(absmax, expected_absmax)
        assert torch.equal(values, dequantize_blockwise(codes, absmax, quantizer.code))
    monkeypatch.setattr(_native, "_LIBRARY", None)  # as on a machine without a C compiler
    assert not _native.usable(x, 256)
    codes, absmax = torch.empty(1000, dtype=torch.uint8), torch.empty(4)
    step(x, codes, absmax)
    assert torch.equal(codes, expected_codes) and torch.equal(absmax, expected_absmax)


def test_a_missing_compiler_means_no_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert _native._build() is None


def test_the_portable_c_code_gives_the_same_codes() -> None:
    # the kernels used here are the AVX-512 ones where the CPU has it; build the plain C
    # loops too (what other CPUs run) and check them on the same values
    portable = _native._build((("-O3", "-march=native", "-mno-avx512f", "-fopenmp"),
                               ("-O3", "-fopenmp"), ("-O3",)))
    assert portable is not None
    _native._self_check(portable)  # every boundary and its neighbours, every code
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(14))
    x = x * torch.rand(100_000, generator=torch.Generator().manual_seed(15)) ** 6
    for signed in (True, False):
        values = x if signed else x.abs()
        codes, absmax = torch.empty(100_000, dtype=torch.uint8), torch.empty(391)
        _native.run_quantize(portable, values, codes, absmax, signed, 256, threads=2)
        expected_codes, expected_absmax = searched_quantize(values, dynamic_map(signed))
        assert torch.equal(codes, expected_codes) and torch.equal(absmax, expected_absmax)



def test_a_cached_library_loads_without_the_compiler(tmp_path, monkeypatch) -> None:
    """What a second process does: it loads the library the first one built and kept, and
    runs no compiler (one that cannot run stands in for it: a build would fail)."""
    monkeypatch.setenv("STOCHOPT_CACHE_DIR", str(tmp_path))
    assert _native._cached_build() is not None  # the first process: builds, keeps
    kept = _native.library_path()
    assert os.path.dirname(kept) == str(tmp_path) and os.path.getsize(kept) > 0
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    monkeypatch.setenv("CC", str(tmp_path / "no-compiler"))
    assert _native._build() is None  # no compiler, no build
    lib = _native._cached_build()
    assert lib is not None and lib._name == kept  # loaded from the cache, self-checked


def test_a_damaged_cached_library_is_rebuilt(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("STOCHOPT_CACHE_DIR", str(tmp_path))
    kept = _native.library_path()
    with open(kept, "wb") as f:
        f.write(b"\x7fELF, cut short by a full disk")
    with caplog.at_level(logging.WARNING, logger=_native.__name__):
        lib = _native._cached_build()
    assert lib is not None
    assert kept in caplog.text and "rebuilding" in caplog.text  # the file is named
    with open(kept, "rb") as f:
        assert len(f.read()) > 1000  # replaced by the rebuilt library
    _native._self_check(_native._declared(ctypes.CDLL(kept)))


def test_the_cache_directory_follows_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("STOCHOPT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    assert _native.cache_directory() == os.path.join("/somewhere/cache", "stochopt")
    monkeypatch.setenv("STOCHOPT_CACHE_DIR", "/elsewhere")
    assert os.path.dirname(_native.library_path()) == "/elsewhere"
