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
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt.offload.io import ALIGN, align_up

__all__ = ["MASTER", "Held", "Job", "ParamLayout", "Stored", "check_held", "granularity",
           "place", "slice_values"]

MASTER = "master"  # the stored name of the fp32 master copy of a parameter
#: a parameter's state held in memory (without the step; empty where it has none), its step
Held = tuple[dict[str, Tensor], Any]


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


def place(layouts: list[ParamLayout]) -> dict[str, int]:
    """Give every stored tensor its byte offset in its file; each file's size."""
    sizes: dict[str, int] = {}
    for layout in layouts:
        for s in layout.stored:
            s.offset = sizes.get(s.name, 0)
            sizes[s.name] = s.offset + s.nbytes
    return sizes


def granularity(stored: list[Stored]) -> int:
    """The smallest chunk (in parameter elements) whose every stored slice starts aligned."""
    return math.lcm(*(s.ratio * (ALIGN // math.gcd(ALIGN, s.itemsize)) for s in stored))


def check_held(layout: ParamLayout, state: Mapping[str, Any], master: bool,
               optimizer: str) -> Held:
    """``state``, the state ``optimizer`` holds in memory for ``layout``'s parameter, checked
    against the layout: the same names, each a tensor of the stored shape and of a compatible
    dtype (floating for a floating state, exactly the stored dtype otherwise), and a finite
    step >= 0. An empty state (besides the step) means the rule's initial state.

    Raises:
        TypeError, ValueError: naming the parameter, the state and what differs.
    """
    where = f"DiskOffload: {optimizer}'s state of parameter {layout.index}"
    if not isinstance(state, Mapping):
        raise TypeError(f"{where} must be a dict, got {show(state)}")
    step = state.get("step")
    _check_step(where, step)
    held = {name: value for name, value in state.items() if name != "step"}
    if not held:
        return held, step
    expected = {s.name: s for s in layout.stored if not (master and s.name == MASTER)}
    if set(held) != set(expected):
        missing, extra = sorted(set(expected) - set(held)), sorted(set(held) - set(expected))
        raise ValueError(f"{where} has {sorted(held, key=str)}, the offloaded layout expects "
                         f"{sorted(expected)} (missing {missing}, unexpected {extra}); load a "
                         f"state dict of the same optimizer and settings")
    for name, s in expected.items():
        value = held[name]
        if not isinstance(value, Tensor):
            raise TypeError(f"{where}: {name!r} must be a tensor, got {show(value)}")
        if tuple(value.shape) != s.shape:
            raise ValueError(f"{where}: {name!r} must have shape {s.shape}, got "
                             f"{tuple(value.shape)}")
        same_kind = (value.is_floating_point() if s.dtype.is_floating_point
                     else value.dtype == s.dtype)
        if not same_kind:
            raise TypeError(f"{where}: {name!r} must have dtype {s.dtype}, got {value.dtype}")
    return held, step


def _check_step(where: str, step: Any) -> None:
    """A step is absent, or a finite real >= 0 (a number or a one-element real tensor)."""
    if step is None:
        return
    value = step
    if isinstance(step, Tensor):
        usable = step.numel() == 1 and not step.is_complex() and step.dtype != torch.bool
        value = step.item() if usable else None
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not real or not 0 <= value < 2**63:  # also refuses NaN and infinity
        raise ValueError(f"{where}: 'step' must be a finite number >= 0, got "
                         f"{show(value if real else step)}")


def slice_values(layout: ParamLayout, job: Job, held: dict[str, Tensor], p: Tensor,
                 master: bool) -> dict[str, Tensor]:
    """The stored slices of ``job`` cut from whole state tensors ``held`` (checked by
    :func:`check_held`); the master copy from ``p``, the parameter's chunk."""
    values = {}
    for s in layout.stored:
        if s.name == MASTER and master:
            values[MASTER] = p.to(s.dtype)
            continue
        first, stop = s.span(job.start, job.stop) if layout.split else (0, s.numel)
        values[s.name] = held[s.name].detach().reshape(-1)[first:stop].cpu().to(s.dtype)
    return values
