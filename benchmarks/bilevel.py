"""Cost per iteration of the bilevel methods on data hyper-cleaning, side by side, in one run.

    python benchmarks/bilevel.py [--iterations 100]

Each method of the ``hyper-cleaning`` reproduction (BO-REP, MA-SOBA, SOBA, the penalty method,
StocBiO, with the reproduction's settings and batches of 128) runs on the same problem (digits,
40% corrupted labels; a linear model and an Elman RNN as the lower level). After 3 warm-up
iterations the next ``--iterations`` are timed; the table gives milliseconds per iteration, its
ratio to SOBA's, and the oracle calls per iteration by kind (upper and lower gradients,
Hessian-vector products), which is what the methods' complexity results count. No other
library implements these methods for PyTorch models, so the anchor is SOBA, the simplest
single-loop implicit method.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from stochopt.bilevel.applications import HyperCleaning
from stochopt_bench.reproductions.bilevel import _cleaning_methods

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_time import machine

WARMUP = 3


def measure(model: str, method: str, iterations: int) -> tuple[float, Counter[str]]:
    """Seconds per iteration and oracle calls per iteration of ``method`` (warm-up excluded)."""
    problem = HyperCleaning(model, seed=0)
    factory, grid = _cleaning_methods()[method]
    solver = factory(problem, grid[0], 0)
    solver.run(WARMUP)
    before = Counter(problem.calls)
    start = time.perf_counter()
    solver.run(iterations)
    seconds = (time.perf_counter() - start) / iterations
    calls = Counter({k: (v - before[k]) / iterations for k, v in problem.calls.items()})
    return seconds, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{machine(torch.device('cpu'))}, {args.iterations} iterations after {WARMUP} warm-up\n")
    print("| lower model | method | ms / iteration | vs SOBA | upper gradients | "
          "lower gradients | Hessian-vector products |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model in ("linear", "rnn"):
        rows = {m: measure(model, m, args.iterations) for m in _cleaning_methods()}
        base = rows["SOBA"][0]
        for method, (seconds, calls) in rows.items():
            print(f"| {model} | {method} | {1e3 * seconds:.1f} | {seconds / base:.2f}x | "
                  f"{calls['grad_f']:.2f} | {calls['grad_g']:.2f} | {calls['hvp']:.2f} |")


if __name__ == "__main__":
    main()
