"""The pipelined step overlaps reads, updates and writes: with slow I/O and a slow update
(both sleeps, so the timing does not depend on the machine's load), the step takes about the
longer of the two, not their sum."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochopt.offload import DiskOffload, FileIO
from stochopt.optim import AdamW

DELAY = 0.02  # seconds per file read or write of one chunk
CHUNK = 5120  # values per chunk: 3 buffer sets x 5120 values x 8 bytes of AdamW state


class SlowFile(FileIO):
    def read(self, buffer: Tensor, offset: int) -> None:
        time.sleep(DELAY)
        super().read(buffer, offset)

    def write(self, buffer: Tensor, offset: int) -> None:
        time.sleep(DELAY)
        super().write(buffer, offset)


class SlowOffload(DiskOffload):
    file_type = SlowFile


class SlowAdamW(AdamW):
    """AdamW whose update takes 2 * DELAY per chunk: as long as reading a chunk's two states."""

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        time.sleep(2 * DELAY * p.numel() / CHUNK)
        return AdamW.update(p, g, state, c, h)


def _timed(fn: Any, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def test_pipelined_step_overlaps_io_with_the_update(tmp_path: Path) -> None:
    p = torch.zeros(10 * CHUNK, requires_grad=True)
    p.grad = torch.ones_like(p)
    in_memory = SlowAdamW([p.detach().clone().requires_grad_()], lr=1e-3)
    in_memory.param_groups[0]["params"][0].grad = torch.ones_like(p)
    t_compute = _timed(in_memory.step)
    opt = SlowAdamW([p], lr=1e-3)
    offload = SlowOffload(opt, tmp_path, memory_budget=3 * CHUNK * 8)
    assert len(offload.layouts[0].chunks) == 10
    t_io = _timed(lambda: (offload.io_pass(), offload.commit()))
    t_pipelined = _timed(opt.step)
    offload.close()
    # serial: t_io + t_compute (~0.44 + 0.4 s); overlapped: the longer plus a chunk (~0.5 s)
    assert t_pipelined < 0.8 * (t_io + t_compute), (t_pipelined, t_io, t_compute)
    assert t_pipelined < 1.5 * max(t_io, t_compute), (t_pipelined, t_io, t_compute)
