"""GPU check (for a session lent the GPU machine): an offloaded fine-tuning step.

    python benchmarks/gpu/offload_check.py [--layers 12] [--width 4096] [--budget 1GiB]
        [--dir /tmp/stochopt-offload] [--steps 3]

A bf16 stack of ``--layers`` Linear(width, width) layers lives on the GPU (12 x 4096^2: 201M
parameters); AdamW's state and fp32 master weights (12 bytes per parameter, 2.4 GB, twice on
disk) live under ``--dir`` and stream through a ``--budget`` of pinned-free host buffers, the
update computing on the CPU as in Fuyou/ZeRO-Offload. Prints the same figures as
``benchmarks/offload.py`` (T_c, T_io, T_p, overlap, bytes/s against ``dd``) plus the whole
fine-tuning step (forward + backward + step) with the step after backward and with updates
during backward (post-accumulate-grad hooks). No test depends on this script; about 3 minutes
on an H100 machine, most of it disk I/O.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from step_time import machine
from stochopt.offload import DiskOffload, parse_bytes
from stochopt.optim import AdamW
from stochopt_bench.offload import dd_bandwidth, measure, table


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def finetune_step_time(model: torch.nn.Module, offload: DiskOffload, opt: AdamW,
                       x: torch.Tensor, steps: int, during_backward: bool) -> float:
    times = []
    for i in range(steps + 1):
        _sync(x.device)
        start = time.perf_counter()
        opt.zero_grad()
        loss = model(x).float().square().mean()
        if during_backward:
            with offload.update_during_backward():
                loss.backward()
        else:
            loss.backward()
        opt.step()
        _sync(x.device)
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--budget", default="1GiB")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/stochopt-offload"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/gpu/offload_check.py needs a CUDA device; this machine has none")
    budget = parse_bytes(args.budget, "--budget")
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(args.width, args.width, bias=False)
                                  for _ in range(args.layers)]).to(device, torch.bfloat16)
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    print(f"machine: {machine(device)}; {n / 1e6:.0f}M bf16 parameters; fp32 state and master "
          f"{n * 12 / 1e9:.1f} GB per copy; budget {budget / 2**30:.2f} GiB", flush=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    disk = dd_bandwidth(args.dir, min(4 * 2**30, max(n * 12, 2**28)))
    x = torch.randn(args.batch, args.width, device=device, dtype=torch.bfloat16)
    model(x).float().square().mean().backward()
    timing = measure(lambda ps: AdamW(ps, lr=1e-5), params, args.dir / "measure", budget,
                     master_weights=True, steps=args.steps)
    print(table([("adamw + fp32 master, GPU params", timing)], disk), flush=True)
    opt = AdamW(params, lr=1e-5)
    (args.dir / "finetune").mkdir(exist_ok=True)
    with DiskOffload(opt, args.dir / "finetune", memory_budget=budget,
                     master_weights=True) as offload:
        after = finetune_step_time(model, offload, opt, x, args.steps, during_backward=False)
        during = finetune_step_time(model, offload, opt, x, args.steps, during_backward=True)
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        model.zero_grad()
        model(x).float().square().mean().backward()
    _sync(device)
    forward_backward = (time.perf_counter() - start) / args.steps
    print(f"\nfine-tuning step: forward+backward alone {forward_backward:.3f} s; with the "
          f"offloaded step after backward {after:.3f} s; with updates during backward "
          f"{during:.3f} s")


if __name__ == "__main__":
    main()
