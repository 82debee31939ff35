"""Optimizer step time on 20M float32 parameters against torch's fused AdamW and the
memory-bandwidth bound, all in one run.

    python benchmarks/step_time.py                 # CPU, 8 tensors x 2.5M
    python benchmarks/step_time.py --device cuda   # what benchmarks/gpu/step_time.py runs

For each optimizer it times ``step()`` (gradients fixed, median of ``--repeats`` steps after
warm-up and compilation) and prints the ratio to ``torch.optim.AdamW(fused=True)`` and the
fraction of the measured memory bandwidth it reaches under a minimum-traffic model: the bytes
one fused pass must read and write per parameter (e.g. AdamW reads p, g, m, v and writes p, m,
v: 28 B). Optimizers update in place, so the bandwidth is measured the same way: an in-place
``x.add_(y, alpha=a)`` over the same number of elements (12 B per element: read x and y, write
x). An out-of-place copy would report about two thirds of it, because writing a fresh buffer
first reads each cache line into the cache (write-allocate).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch

import stochopt
from stochopt import optim

#: minimum bytes read + written per parameter by one fused fp32 step
TRAFFIC = {
    "AdamW": 28, "AdaBelief": 28, "DiffGrad": 36, "AdaGrad": 20,
    # AdaGrad-Norm reads g twice: once for the norm, once for the update (p, g in; p out)
    "AdaGradNorm": 16,
}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int,
          best: bool = False) -> float:
    """Median (or with ``best``, minimum) seconds per call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times) if best else statistics.median(times)


def inplace_bandwidth(numel: int, device: torch.device, repeats: int) -> float:
    """Best bytes per second of the in-place ``x += a * y`` on ``numel`` float32 (12 B each)."""
    x = torch.randn(numel, device=device)
    y = torch.randn(numel, device=device)
    seconds = timed(lambda: x.add_(y, alpha=1e-9), device, 3 * repeats, warmup=3, best=True)
    return 3 * 4 * numel / seconds


def make_params(tensors: int, size: int, device: torch.device) -> list[torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    params = []
    for _ in range(tensors):
        p = torch.randn(size, generator=gen).to(device).requires_grad_()
        p.grad = torch.randn(size, generator=gen).to(device) * 1e-3
        params.append(p)
    return params


def contenders(device: torch.device) -> list[tuple[str, str, Callable]]:
    """(name, traffic key, factory) for every optimizer timed; anchors first."""
    rows: list[tuple[str, str, Callable]] = [
        ("torch AdamW fused (anchor)", "AdamW",
         lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True)),
        ("torch AdamW for-loop", "AdamW",
         lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=False)),
    ]
    try:
        import pytorch_optimizer as po

        rows += [
            ("pytorch-optimizer AdaBelief", "AdaBelief", lambda ps: po.AdaBelief(ps, lr=1e-3)),
            ("pytorch-optimizer DiffGrad", "DiffGrad", lambda ps: po.DiffGrad(ps, lr=1e-3)),
        ]
    except ImportError:
        print("pytorch-optimizer is not installed: its rows are skipped", file=sys.stderr)
    rows += [
        ("stochopt AdamW fused", "AdamW", lambda ps: optim.AdamW(ps, lr=1e-3, fused=True)),
        ("stochopt AdamW reference", "AdamW", lambda ps: optim.AdamW(ps, lr=1e-3, fused=False)),
        ("stochopt AdaBelief fused", "AdaBelief",
         lambda ps: optim.AdaBelief(ps, lr=1e-3, fused=True)),
        ("stochopt DiffGrad fused", "DiffGrad", lambda ps: optim.DiffGrad(ps, lr=1e-3, fused=True)),
        ("stochopt AdaGrad fused", "AdaGrad", lambda ps: optim.AdaGrad(ps, lr=1e-3, fused=True)),
        ("stochopt AdaGradNorm fused (global)", "AdaGradNorm",
         lambda ps: optim.AdaGradNorm(ps, lr=1e-3, mode="global", fused=True)),
        ("stochopt AdaGradNorm fused (row)", "AdaGradNorm",
         lambda ps: optim.AdaGradNorm(ps, lr=1e-3, mode="row", fused=True)),
    ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tensors", type=int, default=8)
    parser.add_argument("--size", type=int, default=2_500_000, help="elements per tensor")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    numel = args.tensors * args.size

    bandwidth = inplace_bandwidth(numel, device, args.repeats)
    print(f"machine: {machine(device)}")
    print(f"stochopt {stochopt.__version__}; {args.tensors} x {args.size:,} fp32 parameters "
          f"({numel / 1e6:.0f}M); in-place bandwidth {bandwidth / 1e9:.1f} GB/s (x += a*y)\n")

    results = []
    for name, key, factory in contenders(device):
        params = make_params(args.tensors, args.size, device)
        opt = factory(params)
        start = time.perf_counter()
        opt.step()  # first step builds state (and compiles, for fused stochopt paths)
        sync(device)
        first = time.perf_counter() - start
        seconds = timed(opt.step, device, args.repeats, warmup=3)
        results.append((name, key, seconds, first))
        del opt, params

    anchor = results[0][2]
    print("| optimizer | step (ms) | vs torch fused AdamW | B/param (model) | bound (ms) "
          "| of bandwidth | first step (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, key, seconds, first in results:
        bound = TRAFFIC[key] * numel / bandwidth
        print(f"| {name} | {seconds * 1e3:.2f} | {seconds / anchor:.2f}x | {TRAFFIC[key]} "
              f"| {bound * 1e3:.2f} | {bound / seconds:.0%} | {first:.1f} |")


if __name__ == "__main__":
    main()
