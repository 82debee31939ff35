"""The offload benchmark's measurements on a tiny parameter set (the real run is
benchmarks/offload.py; only the plumbing is checked here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stochopt.optim import AdamW
from stochopt_bench.offload import DiskBandwidth, OffloadTiming, dd_bandwidth, measure, table


def test_measure_times_every_phase_and_cleans_up(tmp_path: Path) -> None:
    params = [torch.randn(50_000).requires_grad_() for _ in range(2)]
    for p in params:
        p.grad = torch.randn_like(p)
    timing = measure(lambda ps: AdamW(ps, lr=1e-3), params, tmp_path / "state", 200_000, steps=2)
    assert timing.chunks == 2 * 7  # 8192-value chunks (3 x 8 bytes x 8192 <= 200000)
    assert timing.state_bytes == 2 * 2 * 200_704  # 2 params x (m, v), 4096-byte aligned
    assert min(timing.t_compute, timing.t_compute_chunked, timing.t_io, timing.t_pipelined) > 0
    assert not (tmp_path / "state").exists()
    record = timing.as_dict()
    assert record["versus_bound"] == pytest.approx(
        timing.t_pipelined / max(timing.t_io, timing.t_compute))


def test_table_reports_ratios_against_the_disk() -> None:
    timing = OffloadTiming(t_compute=1.0, t_compute_chunked=0.8, t_io=2.0, t_pipelined=2.2,
                           state_bytes=10**9, budget=2**26, chunks=30, direct_io=True)
    text = table([("adamw", timing)], DiskBandwidth(read=2e9, write=1e9, mixed=1e9))
    # T_p / max = 1.1; overlap (2 + 1 - 2.2) / 1 = 0.8; 2 GB moved in 2.2 s = 0.91 GB/s
    row = "| adamw | 0.93 | 64 | 30 | 1.000 | 0.800 | 2.000 | 2.200 | 1.10 | 0.80 | 0.91 | 0.91 |"
    assert row in text
    assert "read+write at once 1.00 GB/s" in text


def test_dd_bandwidth_is_positive_and_leaves_no_files(tmp_path: Path) -> None:
    disk = dd_bandwidth(tmp_path, 16 * 2**20)
    assert min(disk.read, disk.write, disk.mixed) > 0
    assert not list(tmp_path.iterdir())
