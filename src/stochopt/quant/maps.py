"""Dynamic (tree) quantization maps: 256 values spread over seven decades of magnitude."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from stochopt._checks import check_int, show

__all__ = ["dynamic_map"]


@functools.cache
def _dynamic_map(signed: bool, max_exponent_bits: int, total_bits: int) -> tuple[float, ...]:
    values: list[float] = []
    fraction_bits = total_bits - 1 - max_exponent_bits  # bits left after sign and exponent
    for i in range(max_exponent_bits):
        # decade 10^(i - (max_exponent_bits - 1)) gets 2^(i + fraction_bits) fraction values
        # (twice as many when the sign bit is free), the midpoints of an even grid on [0.1, 1]
        count = 2 ** (i + fraction_bits + (0 if signed else 1))
        grid = torch.linspace(0.1, 1, count + 1, dtype=torch.float32)
        midpoints = (grid[:-1] + grid[1:]) / 2.0
        scale = 10.0 ** (i - (max_exponent_bits - 1))
        values += (scale * midpoints).tolist()
        if signed:
            values += (-scale * midpoints).tolist()
    extra = 2**fraction_bits - 1  # codes left when no exponent bit is set
    if extra > 0:
        grid = torch.linspace(0.1, 1, extra + 1, dtype=torch.float32)
        midpoints = (grid[:-1] + grid[1:]) / 2.0
        scale = 10.0 ** (max_exponent_bits - 1 - (max_exponent_bits - 1))
        values += (scale * midpoints).tolist()
        if signed:
            values += (-scale * midpoints).tolist()
    values += [0.0, 1.0]
    values += [0.0] * (2**total_bits - len(values))
    return tuple(sorted(values))


def dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> Tensor:
    r"""The sorted dynamic quantization map of Dettmers et al.: ``2**total_bits`` float32 values.

    Each value is a sign, an exponent :math:`10^{-e}`, :math:`e \in [0, 6]`, and a linear
    fraction whose resolution grows as the exponent shrinks, so that both large and tiny
    magnitudes (down to about :math:`5.5 \cdot 10^{-7}` of the block maximum) are represented.
    ``signed=False`` spends the sign bit on fraction precision (for non-negative states such as
    Adam's second moment). The map contains 0 and 1.0 (and not -1.0).

    Args:
        signed: spend one bit on the sign (default True).
        max_exponent_bits: decades of magnitude, in ``[0, total_bits - 1]`` (default 7).
        total_bits: bits per code, in ``[1, 16]`` (default 8; the quantizers use 8).

    Returns:
        A float32 tensor of shape ``(2**total_bits,)``, ascending.

    References:
        Dettmers, "8-Bit Approximations for Parallelism in Deep Learning", ICLR 2016,
        arXiv:1511.04561; Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via
        Block-wise Quantization", ICLR 2022, arXiv:2110.02861.
    """
    owner = "dynamic_map"
    if not isinstance(signed, bool):
        raise TypeError(f"{owner}: signed must be True or False, got {show(signed)}")
    total_bits = check_int(owner, "total_bits", total_bits, low=1, high=16)
    max_exponent_bits = check_int(owner, "max_exponent_bits", max_exponent_bits, low=0,
                                  high=total_bits - 1)
    return torch.tensor(_dynamic_map(signed, max_exponent_bits, total_bits), dtype=torch.float32)
