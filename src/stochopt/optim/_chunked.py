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
from typing import Any

import torch
from torch import Tensor

from stochopt._distributed import is_dtensor
from stochopt.optim._storage import ABSMAX, StateStorage, compute_precision
from stochopt.quant import _native

__all__ = ["CHUNK", "apply_chunked", "chunkable", "step_in_place"]

CHUNK = 1 << 22  # values per chunk (rounded down to whole blocks): 16 MB per fp32 buffer


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


def step_in_place(rule: Callable[..., Any], p: Tensor, x: Tensor, values: dict[str, Tensor],
                  c: Any, h: Any) -> tuple[str, ...]:
    """The rule on one chunk: writes the new parameter into ``p`` and each new state into
    ``values`` (the dequantized buffers); returns the names of the states it produced."""
    new_p, new_values = rule(compute_precision(p), compute_precision(x), values, c, h)
    if new_p is not None:
        p.copy_(new_p)
    for name, value in new_values.items():
        values[name].copy_(value)
    return tuple(new_values)


def apply_chunked(step: Callable[..., tuple[str, ...]], buffers: dict[str, Tensor],
                  rule: Callable[..., Any], storage: StateStorage, params: list[Tensor],
                  inputs: list[Tensor], states: list[dict[str, Tensor]],
                  coefficient_type: type, coefficients: tuple[Tensor, ...], h: Any) -> None:
    """As the engine's ``_apply``, a chunk at a time; ``step`` is (a compilation of)
    :func:`step_in_place`, ``buffers`` the caller's float32 buffers by state name (grown
    here as needed and kept for the next step: a fresh allocation would fault its pages in
    again)."""
    size = max(1, CHUNK // storage.block_size) * storage.block_size
    for i, (p, x, state) in enumerate(zip(params, inputs, states)):
        c = coefficient_type(*(vector[i] for vector in coefficients))
        flat_p, flat_x, names = p.view(-1), x.reshape(-1), storage.names(state)
        for start in range(0, p.numel(), size):
            end = min(start + size, p.numel())
            values = _load(storage, state, names, start, end, buffers)
            produced = step(rule, flat_p[start:end], flat_x[start:end], values, c, h)
            _store(storage, state, produced, start, end, values)


def _parts(storage: StateStorage, state: dict[str, Tensor], names: tuple[str, ...] | list[str],
           start: int, end: int) -> tuple[list[Tensor], list[Tensor], list[bool]]:
    """The codes and block scales of values ``start:end`` of each state, and its map."""
    blocks = slice(start // storage.block_size, -(-end // storage.block_size))
    return ([state[name].view(-1)[start:end] for name in names],
            [state[name + ABSMAX][blocks] for name in names],
            [name not in storage.unsigned for name in names])


def _load(storage: StateStorage, state: dict[str, Tensor], names: list[str], start: int,
          end: int, buffers: dict[str, Tensor]) -> dict[str, Tensor]:
    """The states over values ``start:end``, dequantized (in one call) into reused buffers."""
    for name in names:
        if name not in buffers or buffers[name].numel() < end - start:
            buffers[name] = torch.empty(end - start, dtype=torch.float32)  # at most CHUNK
    out = [buffers[name][: end - start] for name in names]
    codes, absmax, signed = _parts(storage, state, names, start, end)
    _native.dequantize_into(codes, absmax, out, signed, storage.block_size)
    return dict(zip(names, out, strict=True))


def _store(storage: StateStorage, state: dict[str, Tensor], names: tuple[str, ...], start: int,
           end: int, values: dict[str, Tensor]) -> None:
    """Quantize the new values of the states ``names`` back, in one call."""
    if names:
        codes, absmax, signed = _parts(storage, state, names, start, end)
        _native.quantize_into([values[name] for name in names], codes, absmax, signed,
                              storage.block_size)
