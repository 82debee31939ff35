"""The fused path for 8-bit state on the CPU: a parameter a chunk at a time, through reused
buffers.

Fusing over whole tensors (native dequantize, compiled rule, native quantize) allocates
tensor-sized float32 temporaries for every state at every step: 16 bytes per value of the
largest tensor for Adam, and their first-touch page faults cost as much as the dequantize
kernel itself (docs/performance.md, issue #5). Here each parameter is cut into chunks of whole
quantization blocks (:data:`CHUNK` values): the native kernels dequantize a chunk's states into
buffers reused for every chunk, the compiled rule updates the parameter's chunk and those
buffers in place, and the kernels quantize the buffers back into the chunk's codes and block
scales. Same rule, same kernels, block for block, so bit for bit the whole-tensor result, with
temporaries bounded by the chunk.

Smaller chunks would keep the buffers in L2, but each chunk costs a compiled call (guards,
~50 µs) and three OpenMP fork/joins (~95 µs each when the threads sleep between regions): on
the 2-core machine of docs/performance.md, 2**18-value chunks were about twice as slow as
2**22, which beat 2**20, 2**21 and 2**23.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stochopt._distributed import is_dtensor
from stochopt.optim._storage import ABSMAX, StateStorage, compute_precision
from stochopt.quant import _native

__all__ = ["CHUNK", "PIECES", "apply_chunked", "chunkable", "step_in_place"]

CHUNK = 1 << 22  # values per chunk (rounded down to whole blocks): 16 MB per fp32 buffer
PIECES = 16  # parameters per chunk at most: the compiled step is unrolled over them


def chunkable(storage: StateStorage, p: Tensor, x: Tensor, state: dict[str, Tensor]) -> bool:
    """Whether the chunked path serves parameter ``p`` (input ``x``, state ``state``): a
    contiguous CPU tensor with native kernels whose every state is 8-bit with its size."""
    names = storage.names(state)
    if (is_dtensor(p) or p.device.type != "cpu" or not p.is_contiguous() or not names
            or x.numel() != p.numel() or not _native.usable(p, storage.block_size)):
        return False
    return all(storage.is_quantized(state, name) and state[name].numel() == p.numel()
               and state[name].is_contiguous() and not is_dtensor(state[name])
               for name in names)


def step_in_place(rule: Callable[..., Any], ps: list[Tensor], xs: list[Tensor],
                  values: list[dict[str, Tensor]], cs: list[Any],
                  h: Any) -> tuple[tuple[str, ...], ...]:
    """The rule on each piece of a chunk: writes the new parameter into ``ps[k]`` and each new
    state into ``values[k]`` (the dequantized buffers); returns the names of the states it
    produced, per piece."""
    produced = []
    for p, x, state, c in zip(ps, xs, values, cs, strict=True):
        new_p, new_values = rule(compute_precision(p), compute_precision(x), state, c, h)
        if new_p is not None:
            p.copy_(new_p)
        for name, value in new_values.items():
            state[name].copy_(value)
        produced.append(tuple(new_values))
    return tuple(produced)


@dataclass(frozen=True)
class _Piece:
    """Values ``start:end`` of parameter ``index``."""

    index: int
    start: int
    end: int


def apply_chunked(step: Callable[..., tuple[tuple[str, ...], ...]], buffers: dict[str, Tensor],
                  rule: Callable[..., Any], storage: StateStorage, params: list[Tensor],
                  inputs: list[Tensor], states: list[dict[str, Tensor]],
                  coefficient_type: type, coefficients: tuple[Tensor, ...], h: Any) -> None:
    """As the engine's ``_apply``, a chunk at a time: a chunk is a piece of a large parameter
    or several small ones (one call of each kernel per chunk, however many parameters).
    ``step`` is (a compilation of) :func:`step_in_place`; ``buffers`` are the caller's
    float32 buffers by state name (grown here to at most :data:`CHUNK` values and kept for the
    next step: a fresh allocation would fault its pages in again)."""
    size = max(1, CHUNK // storage.block_size) * storage.block_size
    cs = [coefficient_type(*(vector[i] for vector in coefficients)) for i in range(len(params))]
    flat_p = [p.view(-1) for p in params]
    flat_x = [x.reshape(-1) for x in inputs]  # a strided gradient is copied once, not per piece
    for chunk in _chunks(storage, params, states, size):
        names = storage.names(states[chunk[0].index])
        values = _load(storage, states, names, chunk, buffers)
        produced = step(rule, [flat_p[k.index][k.start:k.end] for k in chunk],
                        [flat_x[k.index][k.start:k.end] for k in chunk], values,
                        [cs[k.index] for k in chunk], h)
        _store(storage, states, chunk, produced, values)


def _chunks(storage: StateStorage, params: list[Tensor], states: list[dict[str, Tensor]],
            size: int) -> list[list[_Piece]]:
    """Pieces of at most ``size`` values, gathered in order into chunks of at most ``size``
    values and :data:`PIECES` pieces whose parameters share their state names (a piece of a
    large parameter fills a chunk alone, so no chunk holds a parameter twice)."""
    chunks: list[list[_Piece]] = []
    filled, names = size, None
    for i, p in enumerate(params):
        for start in range(0, p.numel(), size):
            piece = _Piece(i, start, min(start + size, p.numel()))
            length = piece.end - piece.start
            if (filled + length > size or len(chunks[-1]) >= PIECES
                    or storage.names(states[i]) != names):
                chunks.append([])
                filled, names = 0, storage.names(states[i])
            chunks[-1].append(piece)
            filled += length
    return chunks


def _parts(storage: StateStorage, states: list[dict[str, Tensor]], chunk: list[_Piece],
           names: list[str] | tuple[str, ...]) -> tuple[list[Tensor], list[Tensor], list[bool]]:
    """The codes and block scales of every state ``names`` of every piece (piece-major), and
    whether its map is signed."""
    codes, absmax, signed = [], [], []
    for k in chunk:
        blocks = slice(k.start // storage.block_size, -(-k.end // storage.block_size))
        for name in names:
            codes.append(states[k.index][name].view(-1)[k.start:k.end])
            absmax.append(states[k.index][name + ABSMAX][blocks])
            signed.append(storage.signed(name))
    return codes, absmax, signed


def _load(storage: StateStorage, states: list[dict[str, Tensor]], names: list[str],
          chunk: list[_Piece], buffers: dict[str, Tensor]) -> list[dict[str, Tensor]]:
    """Every state of every piece, dequantized in one call: a chunk of one piece into the
    reused buffers; several small pieces into buffers of their own (views of one buffer
    would alias, and the compiled step would then guard on their offsets and copy their base),
    which the allocator serves from memory freed the step before."""
    if len(chunk) == 1:
        length = chunk[0].end - chunk[0].start
        for name in names:
            if name not in buffers or buffers[name].numel() < length:
                buffers[name] = torch.empty(length, dtype=torch.float32)
        values = [{name: buffers[name][:length] for name in names}]
    else:
        values = [{name: torch.empty(k.end - k.start, dtype=torch.float32) for name in names}
                  for k in chunk]
    codes, absmax, signed = _parts(storage, states, chunk, names)
    out = [piece[name] for piece in values for name in names]
    _native.dequantize_into(codes, absmax, out, signed, storage.block_size, len(names))
    return values


def _store(storage: StateStorage, states: list[dict[str, Tensor]], chunk: list[_Piece],
           produced: tuple[tuple[str, ...], ...], values: list[dict[str, Tensor]]) -> None:
    """Quantize the new states back: one call for the chunk when every piece produced the
    same states (pieces of one optimizer do), else one per piece."""
    if len(set(produced)) == 1:
        _quantize(storage, states, chunk, produced[0], values)
        return
    for piece, names, piece_values in zip(chunk, produced, values, strict=True):
        _quantize(storage, states, [piece], names, [piece_values])


def _quantize(storage: StateStorage, states: list[dict[str, Tensor]], pieces: list[_Piece],
              names: tuple[str, ...], values: list[dict[str, Tensor]]) -> None:
    if names:
        codes, absmax, signed = _parts(storage, states, pieces, names)
        new = [piece_values[name] for piece_values in values for name in names]
        _native.quantize_into(new, codes, absmax, signed, storage.block_size, len(names))
