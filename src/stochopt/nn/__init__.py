"""Layers the papers define."""

from __future__ import annotations

from stochopt.nn.stable_embedding import StableEmbedding

__all__ = ["StableEmbedding"]
