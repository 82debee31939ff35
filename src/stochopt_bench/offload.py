"""Measuring the out-of-core step: in-memory time, I/O time, pipelined time, and the disk.

For one optimizer over a parameter set whose state exceeds the memory budget:

* ``T_c``: the in-memory step (same rule, same execution) on the compute device of the
  offloaded step, the CPU; and ``T_c`` over the offloaded step's chunks (the same update on
  chunk-sized tensors, which stay in cache better than whole ones: on a CPU the chunked update
  can be faster than the in-memory step, so ``T_p < T_c`` is possible);
* ``T_io``: reading and writing every chunk once with no update (``DiskOffload.io_pass``);
* ``T_p``: the offloaded, pipelined step;
* overlap efficiency ``(T_io + T_c - T_p) / min(T_io, T_c)`` (1 = the shorter is hidden);
* achieved bytes/s (state bytes read + written per step / ``T_p``) against the disk's own
  bandwidth, measured in the same run with ``dd`` and direct I/O (read, write, and both at
  once, which is what a step does).

Shared by ``benchmarks/offload.py`` (CPU) and ``benchmarks/gpu/offload_check.py``.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from stochopt.offload import DiskOffload

__all__ = ["DiskBandwidth", "OffloadTiming", "dd_bandwidth", "measure", "table"]

_DD_BLOCK = 16 * 2**20


@dataclass
class DiskBandwidth:
    """Bytes per second of ``dd`` with direct I/O and 16 MiB blocks."""

    read: float
    write: float
    mixed: float  # a reader and a writer at once, bytes of both per second


def _dd(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(["dd", f"bs={_DD_BLOCK}", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _seconds(process: subprocess.Popen[str]) -> float:
    _, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"dd failed: {err.strip()}")
    match = re.search(r"copied, ([0-9.]+) s", err)
    if match is None:
        raise RuntimeError(f"could not read dd's time from {err!r}")
    return float(match.group(1))


def dd_bandwidth(directory: Path, nbytes: int) -> DiskBandwidth:
    """The disk's direct-I/O bandwidth under ``directory`` with files of ``nbytes``."""
    count = max(nbytes // _DD_BLOCK, 1)
    size = count * _DD_BLOCK
    a, b = directory / "dd-a.bin", directory / "dd-b.bin"
    try:
        for path in (a, b):
            _seconds(_dd(["if=/dev/zero", f"of={path}", f"count={count}", "oflag=direct",
                          "conv=fdatasync"]))
        write = _seconds(_dd(["if=/dev/zero", f"of={a}", f"count={count}", "oflag=direct",
                              "conv=fdatasync,notrunc"]))
        read = _seconds(_dd([f"if={a}", "of=/dev/null", f"count={count}", "iflag=direct"]))
        start = time.perf_counter()
        both = [_dd([f"if={a}", "of=/dev/null", f"count={count}", "iflag=direct"]),
                _dd(["if=/dev/zero", f"of={b}", f"count={count}", "oflag=direct",
                     "conv=fdatasync,notrunc"])]
        for process in both:
            _seconds(process)
        mixed = time.perf_counter() - start
    finally:
        a.unlink(missing_ok=True)
        b.unlink(missing_ok=True)
    return DiskBandwidth(read=size / read, write=size / write, mixed=2 * size / mixed)


@dataclass
class OffloadTiming:
    """Medians over the timed steps, in seconds, and what they moved."""

    t_compute: float
    t_compute_chunked: float
    t_io: float
    t_pipelined: float
    state_bytes: int  # on disk, one copy
    budget: int
    chunks: int
    direct_io: bool

    @property
    def overlap(self) -> float:
        return (self.t_io + self.t_compute - self.t_pipelined) / min(self.t_io, self.t_compute)

    @property
    def bytes_per_second(self) -> float:
        return 2 * self.state_bytes / self.t_pipelined  # every byte is read and written

    @property
    def versus_bound(self) -> float:
        """``T_p / max(T_io, T_c)``: 1 is perfect overlap; the issue's target is <= 1.2."""
        return self.t_pipelined / max(self.t_io, self.t_compute)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "overlap": self.overlap, "bytes_per_second":
                self.bytes_per_second, "versus_bound": self.versus_bound}


def _median_time(fn: Callable[[], object], steps: int, warmup: int,
                 sync: Callable[[], None]) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(make_optimizer: Callable[[list[torch.Tensor]], Any], params: list[torch.Tensor],
            directory: Path, budget: int, *, master_weights: bool = False, steps: int = 5,
            warmup: int = 1, io: str = "auto") -> OffloadTiming:
    """Time the in-memory step, the I/O alone and the pipelined step of one optimizer.

    ``params`` need gradients; the in-memory step runs on CPU copies of them (the offloaded
    update computes on the CPU whatever device the parameters are on).
    """
    sync = torch.cuda.synchronize if any(p.is_cuda for p in params) else (lambda: None)
    directory.mkdir(parents=True, exist_ok=True)
    opt = make_optimizer(params)
    offload = DiskOffload(opt, directory, memory_budget=budget, master_weights=master_weights,
                          io=io)
    try:
        whole = [(p, None) for p in params]
        t_compute = _in_memory_step_time(make_optimizer, whole, steps, warmup)
        pieces = [(p, (a, b)) for p, layout in zip(params, offload.layouts)
                  for a, b in layout.chunks]
        t_compute_chunked = _in_memory_step_time(make_optimizer, pieces, steps, warmup)
        t_io = _median_time(lambda: (offload.io_pass(), offload.commit()), steps, warmup, sync)
        t_pipelined = _median_time(opt.step, steps, warmup, sync)
        state_bytes = sum(s.nbytes for layout in offload.layouts for s in layout.stored)
        chunks = sum(len(layout.chunks) for layout in offload.layouts)
        direct = all(f.direct for f in offload._files.values())
    finally:
        offload.close()
        shutil.rmtree(directory, ignore_errors=True)
    return OffloadTiming(t_compute, t_compute_chunked, t_io, t_pipelined, state_bytes, budget,
                         chunks, direct)


def _in_memory_step_time(make_optimizer: Callable[[list[torch.Tensor]], Any],
                         pieces: list[tuple[torch.Tensor, tuple[int, int] | None]], steps: int,
                         warmup: int) -> float:
    """The in-memory step on CPU float32 copies of whole parameters or of element ranges."""
    copies = []
    for p, span in pieces:
        value, grad = p.detach(), p.grad.detach()
        if span is not None:
            value, grad = value.reshape(-1)[span[0]:span[1]], grad.reshape(-1)[span[0]:span[1]]
        copy = value.cpu().float().clone().requires_grad_()
        copy.grad = grad.cpu().float().clone()
        copies.append(copy)
    return _median_time(make_optimizer(copies).step, steps, warmup, lambda: None)


def table(rows: list[tuple[str, OffloadTiming]], disk: DiskBandwidth) -> str:
    """A markdown table of timings, with bandwidth as a fraction of the disk's."""
    lines = ["| run | state (GiB) | budget (MiB) | chunks | T_c (s) | T_c chunked (s) | T_io (s) "
             "| T_p (s) | T_p / max(T_io, T_c) | overlap | GB/s | of dd mixed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, t in rows:
        lines.append(
            f"| {name} | {t.state_bytes / 2**30:.2f} | {t.budget / 2**20:.0f} | {t.chunks} | "
            f"{t.t_compute:.3f} | {t.t_compute_chunked:.3f} | {t.t_io:.3f} | "
            f"{t.t_pipelined:.3f} | {t.versus_bound:.2f} | "
            f"{t.overlap:.2f} | {t.bytes_per_second / 1e9:.2f} | "
            f"{t.bytes_per_second / disk.mixed:.2f} |")
    lines.append("")
    lines.append(f"Disk (dd, direct I/O, 16 MiB blocks): read {disk.read / 1e9:.2f} GB/s, write "
                 f"{disk.write / 1e9:.2f} GB/s, read+write at once {disk.mixed / 1e9:.2f} GB/s.")
    return "\n".join(lines)
