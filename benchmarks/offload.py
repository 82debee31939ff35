"""Out-of-core optimizer state: in-memory step T_c, I/O-only T_io and pipelined T_p, with the
disk's own bandwidth measured in the same run.

    python benchmarks/offload.py [--params 64] [--budget 64MiB] [--dir .scratch/offload]
        [--optimizers adamw,adabelief] [--steps 5] [--json results/offload.json]

``--params`` millions of float32 parameters in 8 equal tensors, each optimizer's state on
disk under ``--dir`` (which must sit on the disk to measure; its free space must hold two
copies of the state) through a ``--budget`` memory budget far below the state's size. Rows:
each optimizer as is, and AdamW with fp32 master weights on disk too. Columns: T_c, T_io,
T_p, T_p / max(T_io, T_c) (the issue's target: <= 1.2), overlap efficiency
(T_io + T_c - T_p) / min(T_io, T_c), and achieved bytes/s (state read + written per step /
T_p) as a fraction of ``dd``'s direct-I/O read+write bandwidth. Results go in
docs/performance.md with the machine line printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_time import machine
from stochopt import optim
from stochopt._io import write_text_atomic
from stochopt.offload import parse_bytes
from stochopt_bench.offload import dd_bandwidth, measure, table

OPTIMIZERS = {"adamw": optim.AdamW, "adabelief": optim.AdaBelief, "diffgrad": optim.DiffGrad}


def make_params(millions: float, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
    size = int(millions * 1e6) // 8
    gen = torch.Generator().manual_seed(0)
    params = []
    for _ in range(8):
        p = torch.randn(size, generator=gen).to(device, dtype).requires_grad_()
        p.grad = torch.randn(size, generator=gen).to(device, dtype)
        params.append(p)
    return params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=64, help="millions of parameters")
    parser.add_argument("--budget", default="64MiB")
    parser.add_argument("--dir", type=Path, default=Path(".scratch/offload"))
    parser.add_argument("--optimizers", default="adamw,adabelief")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    names = args.optimizers.split(",")
    unknown = sorted(set(names) - set(OPTIMIZERS))
    if unknown:
        parser.error(f"unknown optimizers {unknown}; choose from {sorted(OPTIMIZERS)}")
    budget = parse_bytes(args.budget, "--budget")
    device = torch.device(args.device)
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine(device)}; state under {args.dir.resolve()}", flush=True)
    params = make_params(args.params, device, torch.float32)
    state_bytes = sum(p.numel() for p in params) * 4 * 3
    disk = dd_bandwidth(args.dir, min(max(state_bytes, 2**30), 4 * 2**30))
    runs = [(name, OPTIMIZERS[name], False) for name in names] + [("adamw", optim.AdamW, True)]
    rows = []
    for name, cls, master in runs:
        label = f"{name}{' + fp32 master' if master else ''}"
        timing = measure(lambda ps, cls=cls: cls(ps, lr=1e-3), params, args.dir / label.replace(
            " ", ""), budget, master_weights=master, steps=args.steps)
        rows.append((label, timing))
        print(f"{label}: T_c {timing.t_compute:.3f} s, T_io {timing.t_io:.3f} s, T_p "
              f"{timing.t_pipelined:.3f} s", flush=True)
    text = table(rows, disk)
    print(f"\n{sum(p.numel() for p in params) / 1e6:.0f}M float32 parameters, "
          f"torch threads {torch.get_num_threads()}, os cpus {os.cpu_count()}\n")
    print(text)
    if args.json is not None:
        record = {"machine": machine(device), "disk": vars(disk),
                  "runs": {label: t.as_dict() for label, t in rows}}
        write_text_atomic(args.json, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
