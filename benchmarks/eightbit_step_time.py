"""8-bit block-wise optimizer state: step time and state memory on 20M parameters, against
our fp32 fused path and bitsandbytes' 8-bit AdamW on the same machine, in one run.

    python benchmarks/eightbit_step_time.py

Every contender keeps its own parameters, so the steps can be interleaved: each round times
one step of every contender in turn, and the table reports the median over the rounds (a
machine whose load changes during the run then slows all contenders alike). The 8-bit rows
use the native quantization kernels (``stochopt.quant._native``) where they build; the
"torch path" row turns them off, as on a machine without a C compiler.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from stochopt import optim
from stochopt.quant import _native

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_time import machine, make_params


@contextlib.contextmanager
def torch_path_only() -> Iterator[None]:
    """Hide the native kernels (the 8-bit state then takes the pure-torch path)."""
    library, _native._LIBRARY = _native._LIBRARY, None
    try:
        yield
    finally:
        _native._LIBRARY = library


def contenders(device: torch.device) -> list[tuple[str, Callable, bool]]:
    """(name, factory, whether the torch path only) of every optimizer timed on ``device``
    (the native kernels and so the torch-path row exist on the CPU only)."""
    rows: list[tuple[str, Callable, bool]] = [
        ("torch AdamW fused (fp32 state)",
         lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True), False),
        ("stochopt AdamW fused, fp32 state", lambda ps: optim.AdamW(ps, lr=1e-3, fused=True),
         False),
        ("stochopt AdamW fused, bf16 state",
         lambda ps: optim.AdamW(ps, lr=1e-3, fused=True, state_precision="bf16"), False),
        ("stochopt AdamW fused, 8-bit state",
         lambda ps: optim.AdamW8bit(ps, lr=1e-3, fused=True), False),
        *([("stochopt AdamW fused, 8-bit state, torch path",
            lambda ps: optim.AdamW8bit(ps, lr=1e-3, fused=True), True)]
          if device.type == "cpu" else []),
        ("stochopt AdaBelief fused, 8-bit state",
         lambda ps: optim.AdaBelief8bit(ps, lr=1e-3, fused=True), False),
        ("stochopt AdamW reference, 8-bit state",
         lambda ps: optim.AdamW8bit(ps, lr=1e-3, fused=False), False),
    ]
    try:
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
        import bitsandbytes as bnb

        rows.append((f"bitsandbytes AdamW8bit ({device.type.upper()})",
                     lambda ps: bnb.optim.AdamW8bit(ps, lr=1e-3), False))
    except ImportError:
        print("bitsandbytes is not installed: its row is skipped", file=sys.stderr)
    return rows


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items()
               if isinstance(v, torch.Tensor) and v.numel() > 1 and k not in ("qmap1", "qmap2"))


def timed_step(opt: torch.optim.Optimizer, torch_only: bool, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch_path_only() if torch_only else contextlib.nullcontext():
        sync()
        start = time.perf_counter()
        opt.step()
        sync()
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=8)
    parser.add_argument("--size", type=int, default=2_500_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (benchmarks/gpu/)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    _native.kernels()
    device = torch.device(args.device)
    numel = args.tensors * args.size
    print(f"machine: {machine(device)}")
    print(f"native quantization kernels: {'built' if _native.kernels() else 'not available'}")
    print(f"{args.tensors} x {args.size:,} fp32 parameters; median of {args.rounds} interleaved "
          f"rounds\n")
    runs = []
    for name, factory, torch_only in contenders(device):
        opt = factory(make_params(args.tensors, args.size, device))
        first = timed_step(opt, torch_only, device)
        for _ in range(2):
            timed_step(opt, torch_only, device)
        runs.append((name, opt, torch_only, first, []))
    for _ in range(args.rounds):
        for _, opt, torch_only, _, times in runs:
            times.append(timed_step(opt, torch_only, device))
    results = [(name, statistics.median(times), state_bytes(opt) / numel, first)
               for name, opt, _, first, times in runs]
    ours32 = results[1][1]
    bnb = results[-1][1] if results[-1][0].startswith("bitsandbytes") else None
    print("| optimizer | step (ms) | vs our fp32 fused | vs bitsandbytes 8-bit | state B/param "
          "| first step (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds, per_param, first in results:
        versus_bnb = f"{bnb / seconds:.2f}x faster" if bnb else "—"
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / ours32:.2f}x | {versus_bnb} "
              f"| {per_param:.3f} | {first:.1f} |")


if __name__ == "__main__":
    main()
