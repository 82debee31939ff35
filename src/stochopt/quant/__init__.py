"""Quantization for optimizer state: the dynamic maps and block-wise (de)quantization of
Dettmers et al. (8-bit optimizers via block-wise quantization)."""

from __future__ import annotations

from stochopt.quant.blockwise import DynamicQuantizer, dequantize_blockwise, quantize_blockwise
from stochopt.quant.maps import dynamic_map

__all__ = ["DynamicQuantizer", "dequantize_blockwise", "dynamic_map", "quantize_blockwise"]
