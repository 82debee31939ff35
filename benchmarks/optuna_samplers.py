"""Optuna samplers side by side: stochopt's sampler against Optuna's own GP and TPE samplers.

    python benchmarks/optuna_samplers.py [--problems branin,hartmann6] [--seeds 5] [--jobs 2]
        [--methods stochopt-logei,stochopt-noisy_ei,optuna-gp,optuna-tpe,random]
        [--out results/optuna_samplers.json]

Every method runs as an Optuna sampler on an in-memory Optuna study, minimizing the same
noise-free test function (``stochopt.tasks``) with the same budget and the same number of
random startup trials (10: the default of both ``GPSampler`` and ``TPESampler``), for paired
seeds 0..n-1. Reported: the final simple regret ``min f - f*`` (median and interquartile
range over seeds) and seconds per trial (the study's wall time over its trials: the sampler
plus a negligible objective). Each run uses one torch and one BLAS thread; ``--jobs`` runs in
parallel. All samplers use their defaults otherwise (stochopt: GP, 512 raw samples, 10
L-BFGS-B restarts; Optuna's GPSampler: 2048 QMC points, 10 local searches).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from stochopt._io import write_text_atomic
from stochopt.tasks import Ackley, Branin, Hartmann6

PROBLEMS = {"branin": (Branin, 30), "hartmann6": (Hartmann6, 40),
            "ackley5": (lambda: Ackley(dim=5), 50)}
METHODS = ["stochopt-logei", "stochopt-noisy_ei", "optuna-gp", "optuna-tpe", "random"]
STARTUP = 10


def _sampler(method: str, seed: int):
    import optuna

    from stochopt.integrations.optuna import StochoptSampler

    if method.startswith("stochopt-"):
        return StochoptSampler(acquisition=method.removeprefix("stochopt-"), seed=seed,
                               n_startup_trials=STARTUP)
    if method == "optuna-gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP)
    if method == "optuna-tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP)
    return optuna.samplers.RandomSampler(seed=seed)


def run_one(problem: str, method: str, seed: int) -> dict:
    """One study: the regret curve and the wall time."""
    import optuna

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    make, budget = PROBLEMS[problem]
    f = make()
    low, high = f.bounds[:, 0].tolist(), f.bounds[:, 1].tolist()

    def objective(trial: optuna.Trial) -> float:
        x = [trial.suggest_float(f"x{j}", low[j], high[j]) for j in range(f.dim)]
        return float(f(torch.tensor(x, dtype=torch.float64)))

    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # GPSampler is experimental and says so
        study = optuna.create_study(sampler=_sampler(method, seed))
        start = time.perf_counter()
        study.optimize(objective, n_trials=budget)
        wall = time.perf_counter() - start
    values = [t.value for t in study.trials]
    return {"problem": problem, "method": method, "seed": seed, "budget": budget,
            "regret": min(values) - f.minimum, "seconds_per_trial": wall / budget,
            "curve": [min(values[:n]) - f.minimum for n in range(1, budget + 1)]}


def table(runs: list[dict]) -> str:
    lines = ["| problem (d, trials) | sampler | seeds | final regret: median [IQR] | "
             "s / trial |", "|---|---|---|---|---|"]
    for problem in PROBLEMS:
        group = [r for r in runs if r["problem"] == problem]
        if not group:
            continue
        make, budget = PROBLEMS[problem]
        for method in METHODS:
            mine = [r for r in group if r["method"] == method]
            if not mine:
                continue
            regrets = sorted(r["regret"] for r in mine)
            q = statistics.quantiles(regrets, n=4, method="inclusive") if len(mine) > 1 \
                else [regrets[0]] * 3
            seconds = statistics.mean(r["seconds_per_trial"] for r in mine)
            lines.append(f"| {problem} ({make().dim}, {budget}) | {method} | {len(mine)} | "
                         f"{_g(statistics.median(regrets))} [{_g(q[0])}, {_g(q[2])}] | "
                         f"{seconds:.3f} |")
    return "\n".join(lines)


def _g(value: float) -> str:
    return f"{value:.3g}" if value == 0 or math.log10(abs(value)) > -3 else f"{value:.1e}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", default="branin,hartmann6")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/optuna_samplers.json"))
    args = parser.parse_args(argv)
    problems, methods = args.problems.split(","), args.methods.split(",")
    for names, known in ((problems, list(PROBLEMS)), (methods, METHODS)):
        unknown = sorted(set(names) - set(known))
        if unknown:
            parser.error(f"unknown {unknown}; choose from {known}")
    jobs = [(p, m, s) for s in range(args.seeds) for p in problems for m in methods]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = []
        for run in pool.map(run_one, *zip(*jobs, strict=True)):
            runs.append(run)
            print(f"{run['problem']} {run['method']} seed {run['seed']}: regret "
                  f"{run['regret']:.3g}, {run['seconds_per_trial']:.3f} s/trial", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(runs))
    print(f"\n{table(runs)}\n\n{len(jobs)} studies in {time.perf_counter() - start:.0f} s, "
          f"{args.jobs} processes")


if __name__ == "__main__":
    main()
