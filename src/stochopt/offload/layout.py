"""Where each parameter's offloaded tensors live in the state files, and how they are chunked.

Every stored tensor (a state, a quantized state's scales, the fp32 master copy) of every
parameter has one region in the file named after it, starting at an aligned byte offset. A
parameter whose update is elementwise and that is larger than a chunk is split into element
ranges ``[start, stop)`` of ``chunk`` elements, ``chunk`` a multiple of a granularity chosen so
that every stored tensor's slice starts on an aligned byte; other parameters are one chunk,
kept whole and shaped (a rule that reads a tensor's shape sees it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from stochopt.offload.io import ALIGN, align_up

__all__ = ["Job", "ParamLayout", "Stored", "granularity"]


@dataclass
class Stored:
    """One stored tensor of one parameter.

    ``ratio``: parameter elements per stored element (1 for a state or master copy, the block
    size for 8-bit scales); ``offset``: byte offset of its region in file ``name``.
    """

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    ratio: int = 1
    offset: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    @property
    def nbytes(self) -> int:
        """The region's size: the tensor's bytes rounded up to the alignment."""
        return align_up(self.numel * self.itemsize)

    def span(self, start: int, stop: int) -> tuple[int, int]:
        """The stored elements that parameter elements ``[start, stop)`` own."""
        return start // self.ratio, min(-(-stop // self.ratio), self.numel)


@dataclass
class ParamLayout:
    """One parameter's place in the files: its stored tensors and its chunks."""

    index: int
    group: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    split: bool
    stored: list[Stored] = field(default_factory=list)
    chunks: list[tuple[int, int]] = field(default_factory=list)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def chunk_bytes(self, start: int, stop: int) -> int:
        """Aligned bytes of every stored slice of chunk ``[start, stop)`` together."""
        if not self.split:
            return sum(s.nbytes for s in self.stored)
        spans = [(s, *s.span(start, stop)) for s in self.stored]
        return sum(align_up((b - a) * s.itemsize) for s, a, b in spans)

    def describe(self) -> dict[str, object]:
        """What must match for a directory to be resumed by this parameter."""
        return {"shape": list(self.shape), "dtype": str(self.dtype).removeprefix("torch."),
                "stored": [[s.name, str(s.dtype).removeprefix("torch."), s.numel, s.offset]
                           for s in self.stored]}


@dataclass(frozen=True)
class Job:
    """One chunk of one parameter: the unit the pipeline reads, updates and writes."""

    param: ParamLayout
    start: int
    stop: int


def granularity(stored: list[Stored]) -> int:
    """The smallest chunk (in parameter elements) whose every stored slice starts aligned."""
    return math.lcm(*(s.ratio * (ALIGN // math.gcd(ALIGN, s.itemsize)) for s in stored))
