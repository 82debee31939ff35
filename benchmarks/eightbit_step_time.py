"""8-bit block-wise optimizer state: step time and state memory on 20M parameters, against
our fp32 fused path and bitsandbytes' 8-bit AdamW on the same machine, in one run.

    python benchmarks/eightbit_step_time.py
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from stochopt import optim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_time import machine, make_params, timed


def contenders() -> list[tuple[str, Callable]]:
    rows: list[tuple[str, Callable]] = [
        ("torch AdamW fused (fp32 state)", lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True)),
        ("stochopt AdamW fused, fp32 state", lambda ps: optim.AdamW(ps, lr=1e-3, fused=True)),
        ("stochopt AdamW fused, bf16 state",
         lambda ps: optim.AdamW(ps, lr=1e-3, fused=True, state_precision="bf16")),
        ("stochopt AdamW fused, 8-bit state", lambda ps: optim.AdamW8bit(ps, lr=1e-3, fused=True)),
        ("stochopt AdaBelief fused, 8-bit state",
         lambda ps: optim.AdaBelief8bit(ps, lr=1e-3, fused=True)),
        ("stochopt AdamW reference, 8-bit state",
         lambda ps: optim.AdamW8bit(ps, lr=1e-3, fused=False)),
    ]
    try:
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
        import bitsandbytes as bnb

        rows.append(("bitsandbytes AdamW8bit (CPU)", lambda ps: bnb.optim.AdamW8bit(ps, lr=1e-3)))
    except ImportError:
        print("bitsandbytes is not installed: its row is skipped", file=sys.stderr)
    return rows


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items()
               if isinstance(v, torch.Tensor) and v.numel() > 1 and k not in ("qmap1", "qmap2"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=8)
    parser.add_argument("--size", type=int, default=2_500_000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device("cpu")
    numel = args.tensors * args.size
    print(f"machine: {machine(device)}")
    print(f"{args.tensors} x {args.size:,} fp32 parameters; median of {args.repeats} steps\n")
    results = []
    for name, factory in contenders():
        params = make_params(args.tensors, args.size, device)
        opt = factory(params)
        start = time.perf_counter()
        opt.step()
        first = time.perf_counter() - start
        seconds = timed(opt.step, device, args.repeats, warmup=2)
        results.append((name, seconds, state_bytes(opt) / numel, first))
        del opt, params
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
