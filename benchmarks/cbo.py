"""Consensus-based optimization: stochopt.cbo against CBXpy (``cbx``) on the same problems.

    python benchmarks/cbo.py [--runs 100] [--particles 100] [--iterations 1000] [--repeats 3]

Both libraries run the same CBO: the same initial particles (N(1.5, 2^2 I), N per run), dt,
lambda, sigma, anisotropic noise, CBXpy's default alpha schedule (alpha_0 = 1, times 1.05
per step, capped at 1e5) and number of steps, all runs batched in one call (M = --runs), on
Rastrigin and Ackley in 4 and 10 dimensions; CBXpy evaluates its own numpy objectives
(``f_dim='3D'``, checked to equal ours), stochopt the torch ones in float64. Success: the best
particle within 0.25 of the minimizer 0 in the max-norm (CBXpy's ``dist_to_min`` default).
The two libraries draw different noise, so their success rates agree only statistically; a
separate check feeds CBXpy our draws and compares consensus points step for step. Timing:
wall time of the whole batched call divided by the number of runs, the median of --repeats,
the libraries alternating in one process, one thread each.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import numpy as np
import torch
from cbx import dynamics as cbx_dynamics
from cbx import objectives
from threadpoolctl import threadpool_limits

from stochopt.cbo import CBO, MultiplicativeAlpha, gaussian_particles, minimize
from stochopt.tasks import Ackley, Rastrigin, TestFunction

PROBLEMS: dict[str, tuple[TestFunction, Any]] = {
    "rastrigin-4": (Rastrigin(dim=4), objectives.Rastrigin()),
    "rastrigin-10": (Rastrigin(dim=10), objectives.Rastrigin()),
    "ackley-4": (Ackley(dim=4), objectives.Ackley()),
    "ackley-10": (Ackley(dim=10), objectives.Ackley()),
}
DT, LAMDA, SIGMA, TOL = 0.01, 1.0, 3.0, 0.25


def _ours(f: TestFunction, x0: torch.Tensor, iterations: int) -> np.ndarray:
    method = CBO(dt=DT, lamda=LAMDA, sigma=SIGMA, alpha=MultiplicativeAlpha(1.0),
                 noise="anisotropic")
    return minimize(f, x0, method, max_iterations=iterations, seed=1).best_x.numpy()


def _theirs(f: Any, x0: torch.Tensor, iterations: int) -> np.ndarray:
    dynamic = cbx_dynamics.CBO(f, f_dim="3D", x=x0.numpy().copy(), dt=DT, lamda=LAMDA, sigma=SIGMA,
                     alpha=1.0, noise="anisotropic", max_it=iterations, verbosity=0, seed=1)
    return dynamic.optimize()  # sched='default': alpha *= 1.05 per step, up to 1e5


def _timed(run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    best = run()
    return best, time.perf_counter() - start


def compare(name: str, runs: int, particles: int, iterations: int,
            repeats: int) -> dict[str, Any]:
    ours_f, their_f = PROBLEMS[name]
    x0 = gaussian_particles(torch.full((ours_f.dim,), 1.5), 2.0, particles, runs=runs, seed=0)
    gap = float(np.abs(their_f(x0.numpy()) - ours_f(x0).numpy()).max())
    assert gap < 1e-9 * float(ours_f(x0).abs().max()), f"{name}: objectives differ by {gap}"
    times: dict[str, list[float]] = {"stochopt": [], "cbx": []}
    best: dict[str, np.ndarray] = {}
    for _ in range(repeats):  # alternate, so both see the same load on shared cores
        best["stochopt"], t = _timed(lambda: _ours(ours_f, x0, iterations))
        times["stochopt"].append(t / runs)
        best["cbx"], t = _timed(lambda: _theirs(their_f, x0, iterations))
        times["cbx"].append(t / runs)
    out: dict[str, Any] = {"problem": name}
    for library, points in best.items():
        error = np.abs(points).max(-1)  # max-norm distance to the minimizer 0
        out[library] = {"success": float(np.mean(error < TOL)),
                        "median_error": float(np.median(error)),
                        "seconds_per_run": statistics.median(times[library])}
    return out


def parity(steps: int = 50) -> float:
    """Largest difference of the consensus points when CBXpy draws our noise (isotropic:
    CBXpy's anisotropic noise multiplies by the signed drift, ours by its absolute value, the
    same law but other paths)."""
    f = Rastrigin(dim=4)
    x0 = gaussian_particles(torch.full((4,), 1.5), 2.0, 50, runs=4, seed=0)
    draws = torch.Generator().manual_seed(3)

    def sampler(size: tuple[int, ...]) -> np.ndarray:
        return torch.randn(tuple(size), generator=draws, dtype=torch.float64).numpy()

    theirs = cbx_dynamics.CBO(objectives.Rastrigin(), f_dim="3D", x=x0.numpy().copy(), dt=DT,
                    lamda=LAMDA, sigma=1.0, alpha=1.0, noise="isotropic", max_it=steps,
                    verbosity=0, sampler=sampler, check_f_dims=False)
    theirs.optimize()
    ours = minimize(f, x0, CBO(dt=DT, lamda=LAMDA, sigma=1.0, alpha=MultiplicativeAlpha(1.0)),
                    max_iterations=steps, seed=3)
    return float(np.abs(ours.consensus[-2].numpy() - theirs.consensus[:, 0]).max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--particles", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with threadpool_limits(1):
        print(f"parity: CBXpy fed our draws, 50 steps, largest consensus-point difference "
              f"{parity():.2e}")
        print(f"\nM = {args.runs} runs, N = {args.particles}, {args.iterations} steps, dt = "
              f"{DT}, lambda = {LAMDA}, sigma = {SIGMA} (anisotropic), alpha 1 x 1.05^k "
              f"<= 1e5; success: ||best - 0||_inf < {TOL}; time: median of {args.repeats}\n")
        print("| problem | stochopt success | cbx success | stochopt median error | "
              "cbx median error | stochopt ms/run | cbx ms/run | cbx / stochopt time |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.problems.split(","):
            r = compare(name, args.runs, args.particles, args.iterations, args.repeats)
            a, b = r["stochopt"], r["cbx"]
            ratio = b["seconds_per_run"] / a["seconds_per_run"]
            print(f"| {name} | {a['success']:.2f} | {b['success']:.2f} | "
                  f"{a['median_error']:.3g} | {b['median_error']:.3g} | "
                  f"{1e3 * a['seconds_per_run']:.1f} | {1e3 * b['seconds_per_run']:.1f} | "
                  f"{ratio:.2f} |", flush=True)
    print(f"\ntorch {torch.__version__}, numpy {np.__version__}, cbx {version('cbx')}; "
          f"success 95% interval half-width at p = 0.5: {1.96 * math.sqrt(0.25 / args.runs):.2f}")


if __name__ == "__main__":
    main()
