"""A training run with offloaded state that kills itself (SIGKILL) at a chosen point.

    python -m tests.offload.crash_worker DIRECTORY STEPS OUT [--kill write:N|sync:N] [--resume]

Parameters, gradients and the optimizer are fixed by seeds; gradient ``t`` depends only on the
step number, so a resumed run must reproduce the uninterrupted one exactly. On success the
final parameters and state dict are saved to OUT.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import torch
from torch import Tensor

from stochopt.offload import DiskOffload, FileIO
from stochopt.optim import AdamW

SHAPES = ((60, 100), (3000,), (5,))
BUDGET = 3 * 12 * 2048  # chunks of 2048 values: AdamW (m, v) + the fp32 master copy


def make_params() -> list[Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]


def gradients(step: int) -> list[Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(s, generator=gen) for s in SHAPES]


def train(opt: torch.optim.Optimizer, params: list[Tensor], start: int, steps: int) -> None:
    for t in range(start, steps):
        for p, g in zip(params, gradients(t)):
            p.grad = g
        opt.step()


class _Killer:
    """Counts calls of one kind and kills the process at the chosen one."""

    kind, at, seen = "", -1, 0

    @classmethod
    def tick(cls, kind: str) -> None:
        if kind == cls.kind:
            cls.seen += 1
            if cls.seen == cls.at:
                os.kill(os.getpid(), signal.SIGKILL)


class KillingFile(FileIO):
    def write(self, buffer: Tensor, offset: int) -> None:
        super().write(buffer, offset)
        _Killer.tick("write")

    def sync(self) -> None:
        _Killer.tick("sync")
        super().sync()


class KillingOffload(DiskOffload):
    file_type = KillingFile


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("steps", type=int)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kill", default="")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    params = make_params()
    opt = AdamW(params, lr=1e-2)
    offload = KillingOffload(opt, args.directory, memory_budget=BUDGET, master_weights=True,
                             resume=args.resume)
    if args.kill:
        _Killer.kind, at = args.kill.split(":")
        _Killer.at = int(at)
    start = int(opt.state[params[0]]["step"])
    train(opt, params, start, args.steps)
    torch.save({"params": [p.detach() for p in params], "state": opt.state_dict(),
                "resumed_from": start}, args.out)
    offload.close()


if __name__ == "__main__":
    main()
