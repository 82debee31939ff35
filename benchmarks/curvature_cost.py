"""Per-step cost of the curvature optimizers on charlm, against AdamW, in one run.

    python benchmarks/curvature_cost.py [--steps 60] [--fused]

A training step here is everything a user pays for: forward, backward (with the graph kept,
or the Gauss-Newton-Bartlett label resampling, on curvature steps), the estimate, and the
optimizer update. Each method trains charlm from the same seed; after warm-up, the mean over
``--steps`` steps (a whole number of curvature periods) is reported with its ratio to
``torch.optim.AdamW``, and the mean of curvature steps and of plain steps separately.

Denormal floats are flushed to zero (``torch.set_flush_denormal``), set before torch starts
its worker threads: Sophia's sign-like steps sharpen charlm's attention within ~50 steps, the
softmax then underflows into denormals, and on x86 every matmul that reads them slows down
(forward + backward 37 ms -> 60 ms on the machine in docs/performance.md), a cost of the
trajectory on this hardware, not of the optimizer. ``--keep-denormals`` measures with them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

KEEP_DENORMALS = "--keep-denormals" in sys.argv
torch.set_flush_denormal(not KEEP_DENORMALS)  # before any parallel op starts the thread pool

from stochopt import optim  # noqa: E402
from stochopt.tasks import CharLM  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_time import machine  # noqa: E402


def contenders(fused: bool) -> list[tuple[str, Callable]]:
    return [
        ("torch AdamW (anchor)", lambda ps: torch.optim.AdamW(ps, lr=3e-3)),
        ("stochopt AdamW", lambda ps: optim.AdamW(ps, lr=3e-3, fused=fused)),
        ("SophiaG, k=10", lambda ps: optim.SophiaG(ps, lr=3e-3, update_period=10, fused=fused)),
        ("SophiaH, k=10", lambda ps: optim.SophiaH(ps, lr=3e-3, update_period=10, fused=fused)),
        ("AdaHessian, k=10", lambda ps: optim.AdaHessian(ps, lr=0.15, update_period=10,
                                                         fused=fused)),
        ("AdaHessian, k=1 (official)", lambda ps: optim.AdaHessian(ps, lr=0.15, fused=fused)),
    ]


def step_times(factory: Callable, steps: int, warmup: int) -> tuple[list[float], list[bool]]:
    problem = CharLM().build(0)
    opt = factory(list(problem.model.parameters()))
    times, refresh = [], []
    for i in range(warmup + steps):
        due = bool(getattr(opt, "curvature_due", False))
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, logits = problem.train_outputs()
        if isinstance(opt, optim.CurvatureOptimizer):
            opt.backward(loss, logits=logits)
        else:
            loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
            refresh.append(due)
    return times, refresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps (multiple of 10)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--fused", action="store_true", help="stochopt optimizers fused")
    parser.add_argument("--keep-denormals", action="store_true",
                        help="do not flush denormal floats to zero (see the module docstring)")
    args = parser.parse_args()
    print(f"machine: {machine(torch.device('cpu'))}")
    print(f"charlm (0.42M parameters, batch 32 x 64 characters); mean of {args.steps} steps "
          f"after {args.warmup} warm-up steps; stochopt path: "
          f"{'fused' if args.fused else 'reference'}; denormals "
          f"{'kept' if args.keep_denormals else 'flushed to zero'}\n")
    rows = []
    for name, factory in contenders(args.fused):
        times, refresh = step_times(factory, args.steps, args.warmup)
        curvature = [t for t, r in zip(times, refresh) if r]
        plain = [t for t, r in zip(times, refresh) if not r]
        rows.append((name, statistics.fmean(times), curvature, plain))
    anchor = rows[0][1]
    print("| method | step (ms), mean | vs torch AdamW | curvature step (ms) | plain step (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name, mean, curvature, plain in rows:
        c = f"{1e3 * statistics.fmean(curvature):.1f}" if curvature else "—"
        p = f"{1e3 * statistics.fmean(plain):.1f}" if plain else "—"
        print(f"| {name} | {1e3 * mean:.1f} | {mean / anchor:.2f}x | {c} | {p} |")


if __name__ == "__main__":
    main()
