"""The last iterate of composite (proximal) SGD on a Lasso (Liu & Zhou, 2024): its
optimality gap shrinks like 1/sqrt(T) up to a log factor, and it is sparse where the average
iterate is not."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochopt.optim import ProxSGD
from stochopt.schedules import InverseSqrt, LinearDecay, ScheduleLR
from stochopt_bench.reproductions._base import Execute, Outcome, Reproduction, Verdict, cached

__all__ = ["LAST_ITERATE", "lasso_problem", "run_prox_sgd"]

HORIZONS = (100, 1_000, 10_000)
SEEDS = (0, 1, 2)
BATCH = 8
SCHEDULES = ("fixed 1/sqrt(T)", "anytime 1/sqrt(t)", "linear decay")


def lasso_problem() -> dict[str, Any]:
    """Standardized synthetic regression (2000 x 200, 10 informative) and its Lasso optimum
    at lambda = 0.1 lambda_max (sklearn's objective ||y - Xw||^2 / 2n + lambda |w|_1)."""
    from sklearn.datasets import make_regression
    from sklearn.linear_model import Lasso

    X, y = make_regression(n_samples=2000, n_features=200, n_informative=10, noise=1.0,
                           random_state=0)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    n = len(y)
    lam = 0.1 * np.max(np.abs(X.T @ y)) / n
    optimum = Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=200_000).fit(X, y).coef_
    smoothness = float(np.max(np.sum(X**2, axis=1)))  # of every one-example loss
    return {"X": X, "y": y, "lam": lam, "optimum": optimum, "L": smoothness}


def objective(problem: dict[str, Any], w: np.ndarray) -> float:
    X, y = problem["X"], problem["y"]
    return float(np.sum((y - X @ w) ** 2) / (2 * len(y)) + problem["lam"] * np.abs(w).sum())


def run_prox_sgd(problem: dict[str, Any], schedule: str, horizon: int,
                 seed: int) -> dict[str, Any]:
    """Proximal SGD with batches of 8 for ``horizon`` steps; gaps of the last and averaged
    iterates and their numbers of nonzeros."""
    X, y = torch.tensor(problem["X"]), torch.tensor(problem["y"])
    w = torch.nn.Parameter(torch.zeros(X.shape[1], dtype=torch.float64))
    opt = ProxSGD([w], lr=1.0, prox="l1", l1=problem["lam"])
    cap = 1.0 / problem["L"]
    eta = 10 * cap  # eta / sqrt(T) is below the cap from T = 100 on
    rule = {"fixed 1/sqrt(T)": InverseSqrt(eta, horizon=horizon, cap=cap),
            "anytime 1/sqrt(t)": InverseSqrt(eta, cap=cap),
            "linear decay": LinearDecay(min(cap, 2 * eta / horizon**0.5), horizon)}[schedule]
    scheduler = ScheduleLR(opt, rule)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(horizon):
        rows = torch.randint(0, len(y), (BATCH,), generator=gen)
        w.grad = X[rows].T @ (X[rows] @ w.detach() - y[rows]) / BATCH
        opt.step()
        scheduler.step()
    last, average = w.detach().numpy(), opt.state[w]["average"].numpy()
    best = objective(problem, problem["optimum"])
    return {"schedule": schedule, "horizon": horizon, "seed": seed,
            "gap_last": objective(problem, last) - best,
            "gap_average": objective(problem, average) - best,
            "nonzeros_last": int(np.count_nonzero(last)),
            "nonzeros_average": int(np.count_nonzero(average))}


def _mean_at(records: list[dict[str, Any]], key: str, horizon: int) -> float:
    return statistics.fmean(r[key] for r in records if r["horizon"] == horizon)


def _slope(records: list[dict[str, Any]], key: str) -> float:
    means = [_mean_at(records, key, T) for T in HORIZONS]
    return float(np.polyfit(np.log10(HORIZONS), np.log10(np.maximum(means, 1e-16)), 1)[0])


def _run(execute: Execute, directory: Path) -> Outcome:
    problem = lasso_problem()
    lines, slopes = [], {}
    for schedule in SCHEDULES:
        tag = schedule.replace(" ", "_").replace("/", "-")
        records = [cached(directory / "lasso" / f"{tag}__T{T}__seed{s}.json",
                          lambda sc=schedule, T=T, s=s: run_prox_sgd(problem, sc, T, s))
                   for T in HORIZONS for s in SEEDS]
        slopes[schedule] = _slope(records, "gap_last")
        at_end = [r for r in records if r["horizon"] == HORIZONS[-1]]
        gaps = ", ".join(f"T={T}: {_mean_at(records, 'gap_last', T):.2e}" for T in HORIZONS)
        lines.append(
            f"- {schedule}: last-iterate gap {gaps}; log-log slope {slopes[schedule]:.2f} "
            f"(average iterate {_slope(records, 'gap_average'):.2f}); at T={HORIZONS[-1]} the "
            f"last iterate has {statistics.fmean(r['nonzeros_last'] for r in at_end):.0f} "
            f"nonzeros, the average {statistics.fmean(r['nonzeros_average'] for r in at_end):.0f}"
            f" (optimum {int(np.count_nonzero(problem['optimum']))} of 200).")
    fixed = slopes["fixed 1/sqrt(T)"]
    if fixed <= -0.35:
        verdict = (f"reproduced as a bound: without averaging, the last iterate's gap falls with "
                   f"slope {fixed:.2f} in log-log under eta/sqrt(T), at least as fast as the "
                   f"predicted -0.5 (up to a log factor); at these horizons the deterministic "
                   f"term still dominates, so the slower noise-limited regime is not reached")
    else:
        verdict = f"not reproduced: the last iterate's gap falls with slope only {fixed:.2f}"
    verdict += (f"; linear decay {slopes['linear decay']:.2f}, anytime "
                f"{slopes['anytime 1/sqrt(t)']:.2f}; the last iterate is sparser than the "
                f"average but far from the optimum's 10 nonzeros")
    return Outcome({}, Verdict("\n".join(lines), verdict))


LAST_ITERATE = Reproduction(
    name="last-iterate",
    minutes=0.4,
    paper="Liu & Zhou, Revisiting the Last-Iterate Convergence of Stochastic Gradient Methods, "
          "ICLR 2024 (arXiv:2312.08531)",
    claim="For convex composite problems the last iterate of stochastic (mirror) proximal "
          "gradient descent converges at the optimal rate up to a log factor, e.g. "
          "O(log T / sqrt(T)), without averaging.",
    setup=f"Lasso on standardized make_regression (2000 x 200, 10 informative, noise 1), "
          f"lambda = 0.1 lambda_max, optimum from scikit-learn's coordinate descent; ProxSGD "
          f"with soft thresholding, batches of {BATCH}, T in {HORIZONS}, 3 seeds, step sizes "
          f"eta/sqrt(T) and eta/sqrt(t+1) with eta = 10/L (both capped at 1/L, L the largest "
          f"one-example smoothness) and linear decay from 2 eta/sqrt(T); "
          f"measured: F(x_T) - F* and its log-log slope in T, and sparsity of x_T vs the "
          f"average iterate. Reproduced if the slope under 1/sqrt(T) is at most -0.35.",
    run=_run,
)
