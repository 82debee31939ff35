"""Block-wise absmax quantization: each block of ``block_size`` consecutive values is scaled
by its largest magnitude and rounded to the nearest value of a (dynamic) map.

Non-finite values are a decision here, not an error: a NaN or infinite input is stored as 0
and does not enter its block's absmax, so one bad value never spoils the rest of its block
(optimizer state meets them when a gradient is non-finite; the optimizers document what
their parameters do then). Everything else is checked where it enters: a ``TypeError`` or
``ValueError`` names the function and the argument (``block_size``, ``codes``, ``absmax``,
``code``) before anything is written.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, show
from stochopt.quant import _native
from stochopt.quant.maps import dynamic_map

__all__ = ["DynamicQuantizer", "dequantize_blockwise", "quantize_blockwise"]

_TINY = 1e-38  # an all-zero block keeps absmax 0 but divides by this instead


def _values(owner: str, x: Any) -> Tensor:
    """``x`` checked as the values to quantize: a real floating-point tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: x must be a tensor, got {show(x)}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: x must be a real floating-point tensor, got dtype {x.dtype}")
    return x


def _code(owner: str, code: Any) -> Tensor:
    """``code`` checked as a map: a sorted 1-d floating tensor of 2 to 256 finite values."""
    if not isinstance(code, Tensor) or not code.is_floating_point():
        raise TypeError(f"{owner}: code must be a floating-point tensor (a map such as "
                        f"dynamic_map()), got {show(code)}")
    if code.ndim != 1 or not 2 <= code.numel() <= 256:
        raise ValueError(f"{owner}: code must be 1-d with 2 to 256 values (codes are uint8), "
                         f"got shape {tuple(code.shape)}")
    if not bool(torch.isfinite(code).all()) or bool((code[1:] < code[:-1]).any()):
        raise ValueError(f"{owner}: code must be finite and sorted ascending")
    return code


def _codes(owner: str, codes: Any, absmax: Any, block_size: int) -> None:
    """``codes`` (uint8) and ``absmax`` (1-d floating, one value per block) checked to fit."""
    if not isinstance(codes, Tensor) or codes.dtype != torch.uint8:
        raise TypeError(f"{owner}: codes must be a torch.uint8 tensor, got {show(codes)}")
    if not isinstance(absmax, Tensor) or not absmax.is_floating_point():
        raise TypeError(f"{owner}: absmax must be a floating-point tensor, got {show(absmax)}")
    blocks = -(-codes.numel() // block_size)
    if absmax.ndim != 1 or absmax.numel() != blocks:
        raise ValueError(f"{owner}: absmax must have shape ({blocks},), one value per block of "
                         f"{block_size} of the {codes.numel()} codes, got shape "
                         f"{tuple(absmax.shape)}")


def _quantize_rows(rows: Tensor, bounds: Tensor) -> tuple[Tensor, Tensor]:
    """Codes and absmax of each row of ``rows`` (r, b); non-finite entries count as 0."""
    rows = torch.where(torch.isfinite(rows), rows, 0.0)
    absmax = rows.abs().amax(dim=1)  # (r,)
    scaled = (rows * (1.0 / absmax.clamp(min=_TINY))[:, None]).clamp(-1.0, 1.0)
    return torch.bucketize(scaled, bounds).to(torch.uint8), absmax


def quantize_blockwise(x: Tensor, code: Tensor, block_size: int = 256) -> tuple[Tensor, Tensor]:
    """Quantize ``x`` to 8-bit codes, block by block (the last block may be shorter).

    Each value becomes the index of the nearest entry of ``code`` to ``x / absmax`` of its
    block (ties go to the lower entry), so a value keeps its sign unless it rounds to 0.
    Non-finite values are stored as 0 and do not enter ``absmax``.

    Args:
        x: any shape, any floating dtype; flattened in row-major order.
        code: the sorted map, shape ``(256,)`` (e.g. :func:`stochopt.quant.dynamic_map`).
        block_size: values per block (default 256).

    Returns:
        ``codes``, uint8 of ``x``'s shape, and ``absmax``, float32 of shape
        ``(ceil(x.numel() / block_size),)``.

    Raises:
        TypeError: ``x`` or ``code`` is not a floating-point tensor, ``block_size`` not an
            integer.
        ValueError: ``block_size < 1``; ``code`` not sorted, finite and 1-d of 2 to 256 values.
    """
    owner = "quantize_blockwise"
    x, code = _values(owner, x), _code(owner, code)
    block_size = check_int(owner, "block_size", block_size, low=1)
    flat = x.reshape(-1).float()
    n = flat.numel()
    full = n - n % block_size
    bounds = (code[:-1] + code[1:]) / 2  # decision boundaries between neighbouring codes
    codes, absmax = [], []
    if full:
        c, a = _quantize_rows(flat[:full].view(-1, block_size), bounds)
        codes.append(c.reshape(-1))
        absmax.append(a)
    if n > full:
        c, a = _quantize_rows(flat[full:].view(1, -1), bounds)
        codes.append(c.reshape(-1))
        absmax.append(a)
    if not codes:
        return torch.empty(x.shape, dtype=torch.uint8, device=x.device), flat.new_empty(0)
    return torch.cat(codes).view(x.shape), torch.cat(absmax)


def dequantize_blockwise(codes: Tensor, absmax: Tensor, code: Tensor, block_size: int = 256,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """The values that :func:`quantize_blockwise` encoded: ``code[codes] * absmax`` per block.

    Args:
        codes: uint8 codes, any shape.
        absmax: the block scales, shape ``(ceil(codes.numel() / block_size),)``.
        code: the map the codes index (as given to :func:`quantize_blockwise`).
        block_size: values per block (default 256).
        dtype: a floating-point dtype of the result (default float32).

    Returns:
        A tensor of ``codes``' shape and ``dtype``.

    Raises:
        TypeError, ValueError: naming the argument that does not fit (a code beyond the end
            of ``code`` included).
    """
    owner = "dequantize_blockwise"
    code = _code(owner, code)
    block_size = check_int(owner, "block_size", block_size, low=1)
    _codes(owner, codes, absmax, block_size)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{owner}: dtype must be a floating-point torch.dtype, got {show(dtype)}")
    if code.numel() < 256 and codes.numel() and int(codes.max()) >= code.numel():
        raise ValueError(f"{owner}: codes must index code (< {code.numel()}), got the code "
                         f"{int(codes.max())}")
    values = code[codes.reshape(-1).long()]  # (n,) in [-1, 1]
    n = values.numel()
    full = n - n % block_size
    parts = []
    if full:
        parts.append((values[:full].view(-1, block_size) * absmax[: full // block_size, None])
                     .reshape(-1))
    if n > full:
        parts.append(values[full:] * absmax[-1])
    if not parts:
        return values.to(dtype).view(codes.shape)
    return torch.cat(parts).to(dtype).view(codes.shape)


_MANTISSA_BITS = 7  # float32 cells of 1/128 of a binade hold at most one decision boundary
_LOW_EXPONENT = 102  # biased exponent of 2**-25: smaller magnitudes share the first cell


class DynamicQuantizer:
    """Block-wise quantization to a dynamic map without a binary search.

    Gives exactly the codes of :func:`quantize_blockwise` with the same map. On the CPU it runs
    the native kernels of :mod:`stochopt.quant._native` where they build (eagerly and, as
    custom ops, inside compiled graphs); elsewhere, and without a C compiler, it runs torch
    code: instead of searching 255 boundaries per value, it reads the float's exponent and top
    seven mantissa bits as an index into a table of the boundary just below that cell (built
    once per map with ``torch.bucketize``; each cell holds at most one boundary), and compares
    once. Signed maps are handled on magnitudes and mirrored; the code's layout is that of the
    sorted map.

    Args:
        signed: the signed map (first moments) or the unsigned one (non-negative states).
        block_size: values per block.
        device: where the tables live.
    """

    def __init__(self, signed: bool, block_size: int = 256,
                 device: torch.device | str = "cpu") -> None:
        owner = "DynamicQuantizer"
        if not isinstance(signed, bool):
            raise TypeError(f"{owner}: signed must be True or False, got {show(signed)}")
        block_size = check_int(owner, "block_size", block_size, low=1)
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"{owner}: device must be a torch.device or a device name such "
                             f"as 'cpu' or 'cuda:0', got {show(device)}") from None
        self.signed, self.block_size = signed, block_size
        self.code = dynamic_map(signed).to(device)
        magnitudes = self.code[self.code >= 0] if signed else self.code  # (129,) or (256,)
        bounds = (magnitudes[:-1] + magnitudes[1:]) / 2
        self.bounds = torch.cat([bounds, bounds.new_tensor([float("inf")])])
        cells = torch.arange((127 - _LOW_EXPONENT + 1) << _MANTISSA_BITS, dtype=torch.int32,
                             device=bounds.device)
        starts = ((cells + (_LOW_EXPONENT << _MANTISSA_BITS)) << (23 - _MANTISSA_BITS))
        self.table = torch.bucketize(starts.view(torch.float32), bounds)  # (cells,) int64
        self.zero = int((self.code < 0).sum())  # index of 0 in the sorted map
        if torch.device(device).type == "cpu":
            _native.kernels()  # build them now, outside any compiled region

    def _codes(self, scaled: Tensor) -> Tensor:
        """Codes of values in [-1, 1] (float32): the index of the nearest map entry."""
        magnitude = scaled.abs() if self.signed else scaled.clamp(min=0.0)
        cell = (magnitude.view(torch.int32) >> (23 - _MANTISSA_BITS)) - (
            _LOW_EXPONENT << _MANTISSA_BITS)
        rank = self.table[cell.clamp(min=0).long()]
        boundary = self.bounds[rank]
        negative = scaled < 0
        # ties go to the lower map entry, which for negative values is the larger magnitude
        rank = rank + torch.where(negative, magnitude >= boundary, magnitude > boundary).long()
        if not self.signed:
            return rank.to(torch.uint8)
        mirrored = self.zero - rank.clamp(max=self.zero)  # the map has no -1.0
        return torch.where(negative, mirrored, self.zero + rank).to(torch.uint8)

    def _rows(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        rows = torch.where(torch.isfinite(rows), rows, 0.0)
        absmax = rows.abs().amax(dim=1)
        scaled = (rows * (1.0 / absmax.clamp(min=_TINY))[:, None]).clamp(-1.0, 1.0)
        return self._codes(scaled).reshape(-1), absmax

    def quantize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """As :func:`quantize_blockwise` with this map: uint8 codes and float32 absmax."""
        _values("DynamicQuantizer.quantize", x)
        if _native.usable(x, self.block_size):
            codes = torch.empty(x.shape, dtype=torch.uint8)
            absmax = torch.empty(-(-x.numel() // self.block_size), dtype=torch.float32)
            _native.quantize_blockwise_(x, codes, absmax, self.signed, self.block_size)
            return codes, absmax
        flat = x.reshape(-1).float()
        n = flat.numel()
        full = n - n % self.block_size
        parts = []
        if full:
            parts.append(self._rows(flat[:full].view(-1, self.block_size)))
        if n > full:
            parts.append(self._rows(flat[full:].view(1, -1)))
        if not parts:
            return torch.empty(x.shape, dtype=torch.uint8, device=x.device), flat.new_empty(0)
        return (torch.cat([c for c, _ in parts]).view(x.shape),
                torch.cat([a for _, a in parts]))

    def quantize_into(self, x: Tensor, codes: Tensor, absmax: Tensor) -> None:
        """:meth:`quantize` ``x`` into existing ``codes`` (contiguous uint8 of ``x``'s size) and
        ``absmax`` (contiguous float32, one value per block)."""
        owner = "DynamicQuantizer.quantize_into"
        _values(owner, x)
        _codes(owner, codes, absmax, self.block_size)
        if codes.numel() != x.numel():
            raise ValueError(f"{owner}: codes must have the {x.numel()} values of x, got "
                             f"{codes.numel()}")
        if absmax.dtype != torch.float32:
            raise TypeError(f"{owner}: absmax must have dtype torch.float32 (it is written in "
                            f"place), got {absmax.dtype}")
        if _native.usable(x, self.block_size) and codes.is_contiguous() and absmax.is_contiguous():
            _native.quantize_blockwise_(x, codes, absmax, self.signed, self.block_size)
        else:
            new_codes, new_absmax = self.quantize(x)
            codes.copy_(new_codes.view(codes.shape))
            absmax.copy_(new_absmax)

    def dequantize(self, codes: Tensor, absmax: Tensor) -> Tensor:
        """As :func:`dequantize_blockwise` with this map (float32)."""
        _codes("DynamicQuantizer.dequantize", codes, absmax, self.block_size)
        if _native.usable(codes, self.block_size):
            return _native.dequantize_blockwise(codes, absmax, self.signed, self.block_size)
        return dequantize_blockwise(codes, absmax, self.code, self.block_size)
