"""Bayesian-optimization studies shared by ``benchmarks/bayesopt.py``, the reproductions and
the ``stochopt bo`` command: paired-seed runs of stochopt's surrogates and acquisitions, random
search and BoTorch on synthetic functions, scored by simple regret on the noise-free function.

Regret is measured without noise at the best evaluated point; with noise at the recommended
point, the evaluated point of smallest posterior mean under the same GP for every method (so
random search and BoTorch are scored the way stochopt recommends), every 10 evaluations.
Observation noise is drawn per (seed, evaluation index), the same for every method. Each run
is one JSON file written atomically, so an interrupted study resumes where it stopped; a run
record that cannot be read back (truncated, not JSON, missing entries, another run's) is
reported, moved aside as ``<name>.json.damaged`` and run again.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from stochopt._checks import check_seed
from stochopt._io import damaged, read_json, require_fields, write_text_atomic
from stochopt.bayesopt import GP, Study
from stochopt.bayesopt.optimize import sobol
from stochopt.errors import DamagedFileError
from stochopt.tasks import Ackley, Branin, Hartmann6
from stochopt.tasks.functions import TestFunction


@dataclass(frozen=True)
class Problem:
    """A synthetic function with its Sobol design size, evaluation budget and the noise
    standard deviation of its noisy variant."""

    function: TestFunction
    n_initial: int
    budget: int
    noise_std: float


PROBLEMS: dict[str, Problem] = {
    "branin": Problem(Branin(), 5, 40, 2.0),
    "hartmann6": Problem(Hartmann6(), 12, 80, 0.1),
    "ackley5": Problem(Ackley(dim=5), 10, 100, 1.0),
}
OURS = {
    "gp-logei": ("gp", "logei"),
    "gp-noisy_ei": ("gp", "noisy_ei"),
    "gp-kg": ("gp", "kg"),
    "ibnn-logei": ("ibnn", "logei"),
    "dkl-logei": ("dkl", "logei"),
    "ensemble-logei": ("ensemble", "logei"),
    "hmc-logei": ("hmc", "logei"),
}
METHODS = [*OURS, "random", "botorch-qlognei"]
EVERY = 10  # evaluations between recommendations under noise
RECORD = "BO run record"
RECOVER = "it is moved aside and run again when the study runs next (or delete it)"
_log = logging.getLogger(__name__)


def _noise(seed: int, index: int, sigma: float) -> float:
    if sigma == 0:
        return 0.0
    g = torch.Generator().manual_seed(10_007 * seed + index)
    return sigma * float(torch.randn((), generator=g, dtype=torch.float64))


def _observe(f: TestFunction, X: torch.Tensor, seed: int, start: int, sigma: float
             ) -> tuple[list[float], list[float]]:
    true = [float(f(x)) for x in X]
    return true, [v + _noise(seed, start + i, sigma) for i, v in enumerate(true)]


def _run_ours(method: str, f: TestFunction, n_initial: int, budget: int, seed: int,
              sigma: float) -> dict:
    surrogate, acquisition = OURS[method]
    study = Study(f.bounds, surrogate=surrogate, acquisition=acquisition, seed=seed,
                  n_initial=n_initial)
    true: list[float] = []
    while study.n < budget:
        X = study.ask()
        t, y = _observe(f, X, seed, study.n, sigma)
        study.tell(X, y)
        true += t
    seconds = [a + b for a, b in zip(study.fit_seconds, study.acquisition_seconds, strict=True)]
    return {"X": study.X.tolist(), "y": study.y.tolist(), "true": true, "seconds": seconds}


def _run_random(f: TestFunction, budget: int, seed: int, sigma: float) -> dict:
    g = torch.Generator().manual_seed(seed)
    low, high = f.bounds[:, 0], f.bounds[:, 1]
    X = low + (high - low) * torch.rand(budget, f.dim, generator=g, dtype=torch.float64)
    true, y = _observe(f, X, seed, 0, sigma)
    return {"X": X.tolist(), "y": y, "true": true, "seconds": []}


def _run_botorch(f: TestFunction, n_initial: int, budget: int, seed: int, sigma: float
                 ) -> dict:
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize
    from botorch.optim import optimize_acqf
    from gpytorch.mlls import ExactMarginalLogLikelihood

    bounds = f.bounds.T.contiguous()
    design = sobol(n_initial, f.dim, torch.Generator().manual_seed(seed))  # as Study's
    X = bounds[0] + design * (bounds[1] - bounds[0])
    true, y = _observe(f, X, seed, 0, sigma)
    seconds = []
    while len(y) < budget:
        torch.manual_seed(1_000 * seed + len(y))
        start = time.perf_counter()
        Y = -torch.tensor(y, dtype=torch.float64)[:, None]  # BoTorch maximizes
        model = SingleTaskGP(X, Y, input_transform=Normalize(f.dim, bounds=bounds),
                             outcome_transform=Standardize(1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        acq = qLogNoisyExpectedImprovement(model, X_baseline=X, prune_baseline=True)
        x, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=10, raw_samples=512)
        seconds.append(time.perf_counter() - start)
        t, new = _observe(f, x.detach(), seed, len(y), sigma)
        X, true, y = torch.cat([X, x.detach()]), true + t, y + new
    return {"X": X.tolist(), "y": y, "true": true, "seconds": seconds}


def _regret_curve(f: TestFunction, run: dict, sigma: float) -> list[tuple[int, float]]:
    """(evaluations, regret) pairs: best true value so far without noise; the true value at
    the GP-recommended evaluated point every ``EVERY`` evaluations with noise."""
    true = run["true"]
    if sigma == 0:
        return [(n, min(true[:n]) - f.minimum) for n in range(1, len(true) + 1)]
    X, y = torch.tensor(run["X"], dtype=torch.float64), torch.tensor(run["y"],
                                                                     dtype=torch.float64)
    curve = []
    for n in [*range(EVERY, len(true), EVERY), len(true)]:
        model = GP().fit(X[:n], y[:n], f.bounds, torch.Generator().manual_seed(0))
        with torch.no_grad():
            best = int(model.posterior(X[:n]).mean.argmin())
        curve.append((n, true[best] - f.minimum))
    return curve


def _path(out: Path, problem: str, noisy: bool, method: str, seed: int) -> Path:
    return out / "runs" / f"{problem}-{'noisy' if noisy else 'exact'}-{method}-{seed}.json"


def check_job(out: Path, problem: str, noisy: bool, method: str, seed: int) -> None:
    """A job's arguments: a known problem and method, a boolean ``noisy``, a seed in
    ``[0, 2**63 - 1]``, and an output directory that is not a file."""
    if problem not in PROBLEMS:
        raise ValueError(f"BO study: unknown problem {problem!r}; choose from {list(PROBLEMS)}")
    if method not in METHODS:
        raise ValueError(f"BO study: unknown method {method!r}; choose from {METHODS}")
    if not isinstance(noisy, bool):
        raise TypeError(f"BO study: noisy must be True or False, got {noisy!r}")
    check_seed("BO study", "seed", seed)
    for directory in (Path(out), Path(out) / "runs"):
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"BO study: the output directory {directory} is a file; pass "
                             f"another directory")


def check_record(path: Path, job: tuple[str, bool, str, int] | None = None) -> dict[str, Any]:
    """The run record at ``path``, checked: the entries the report reads, with their types,
    and (given the ``job`` ``(problem, noisy, method, seed)``) that it records that job.

    Raises:
        DamagedFileError: naming the file, what is wrong and how it is recovered.
    """
    run = read_json(path, what=RECORD, recover=RECOVER)
    require_fields(run, path, RECORD, RECOVER, problem=str, noisy=bool, method=str, seed=int,
                   curve=list, seconds=list)
    pairs = [c for c in run["curve"] if isinstance(c, list) and len(c) == 2
             and all(_real(v) for v in c)]
    if not run["curve"] or len(pairs) != len(run["curve"]):
        raise damaged(path, RECORD, "its 'curve' entry is not a non-empty list of "
                      "[evaluations, regret] pairs", RECOVER)
    if not all(_real(v) for v in run["seconds"]):
        raise damaged(path, RECORD, "its 'seconds' entry holds a value that is not a number",
                      RECOVER)
    recorded = (run["problem"], run["noisy"], run["method"], run["seed"])
    if job is not None and recorded != job:
        raise damaged(path, RECORD, f"it records the run {recorded}, not {job}", RECOVER)
    return run


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def set_aside(path: Path) -> Path:
    """Move a damaged record out of the study's way (``<name>.damaged``, numbered if taken);
    returns where it went."""
    target, n = path.with_name(path.name + ".damaged"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged{n}")
    path.rename(target)
    return target


def run_one(out: Path, problem: str, noisy: bool, method: str, seed: int) -> str:
    """One (problem, noise, method, seed) run; skipped if its record exists and reads back,
    run again (the damaged record moved aside) if it does not. Each run uses one thread for
    torch and one for BLAS (scipy's L-BFGS-B calls BLAS: with a thread per core and several
    runs at once, its threads spin against each other and inflate timings)."""
    check_job(out, problem, noisy, method, seed)
    path = _path(out, problem, noisy, method, seed)
    note = ""
    if path.exists():
        try:
            check_record(path, (problem, noisy, method, seed))
            return f"{path.name} (kept)"
        except DamagedFileError as error:
            note = f"{error} (moved aside to {set_aside(path).name}; run again) "
    torch.set_num_threads(1)
    with threadpool_limits(1):
        return note + _run_and_save(path, problem, noisy, method, seed)


def _run_and_save(path: Path, problem: str, noisy: bool, method: str, seed: int) -> str:
    spec = PROBLEMS[problem]
    f, n_initial, budget = spec.function, spec.n_initial, spec.budget
    sigma = spec.noise_std if noisy else 0.0
    start = time.perf_counter()
    if method == "random":
        run = _run_random(f, budget, seed, sigma)
    elif method == "botorch-qlognei":
        run = _run_botorch(f, n_initial, budget, seed, sigma)
    else:
        run = _run_ours(method, f, n_initial, budget, seed, sigma)
    run.update(problem=problem, noisy=noisy, method=method, seed=seed, sigma=sigma,
               curve=_regret_curve(f, run, sigma), wall=time.perf_counter() - start,
               machine=f"{platform.processor() or platform.machine()}, "
                       f"{os.cpu_count()} cores, 1 torch and 1 BLAS thread per run")
    write_text_atomic(path, json.dumps(run))
    return f"{path.name} {run['wall']:.0f}s"


def _log10(regret: float) -> float:
    return math.log10(max(regret, 1e-10))


def _wilcoxon_less(a: list[float], b: list[float]) -> float:
    import scipy.stats

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if all(d == 0 for d in diffs):
        return 1.0
    return float(scipy.stats.wilcoxon(a, b, alternative="less").pvalue)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """The first quartile, the median and the third quartile of ``values`` (at least one)."""
    if not values:
        raise ValueError("quartiles: values is empty; there is nothing to summarize")
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else \
        [values[0]] * 3
    return q[0], statistics.median(values), q[2]


def load_runs(out: Path, say: Callable[[str], None] | None = None) -> list[dict]:
    """Every run record under ``out/runs``. A record that does not read back is reported
    through ``say`` (default: a logged warning), moved aside and left out; the next run of
    the study repeats it."""
    say = say or _log.warning
    runs = []
    for path in sorted((out / "runs").glob("*.json")):
        try:
            run = check_record(path)
            job = (run["problem"], run["noisy"], run["method"], run["seed"])
            if path != _path(out, *job):
                raise damaged(path, RECORD, f"it records the run {job}, which belongs in "
                              f"{_path(out, *job).name}", RECOVER)
            runs.append(run)
        except DamagedFileError as error:
            say(f"{error} (moved aside to {set_aside(path).name})")
    return runs


def final_log_regrets(runs: list[dict], problem: str, noisy: bool) -> dict[str, dict[int, float]]:
    """method -> seed -> log10 simple regret at the end of the run."""
    final: dict[str, dict[int, float]] = {}
    for r in runs:
        if r["problem"] == problem and r["noisy"] == noisy:
            final.setdefault(r["method"], {})[r["seed"]] = _log10(r["curve"][-1][1])
    return final


def paired_p(values: dict[int, float], baseline: dict[int, float]) -> float | None:
    """One-sided Wilcoxon p that ``values`` are below ``baseline`` on the shared seeds
    (``None`` with fewer than 5 pairs)."""
    seeds = sorted(set(values) & set(baseline))
    if len(seeds) < 5:
        return None
    return _wilcoxon_less([values[s] for s in seeds], [baseline[s] for s in seeds])


def report(out: Path, figures: Path | None, say: Callable[[str], None] | None = None) -> str:
    """Markdown tables of every (problem, noise) group that has runs; figures if asked.
    Damaged records are reported through ``say`` (see :func:`load_runs`)."""
    runs = load_runs(out, say)
    lines = []
    for problem in PROBLEMS:
        for noisy in (False, True):
            group = [r for r in runs if r["problem"] == problem and r["noisy"] == noisy]
            if group:
                lines += _table(problem, noisy, group)
                if figures is not None:
                    _figure(problem, noisy, group, figures)
    return "\n".join(lines)


def _table(problem: str, noisy: bool, group: list[dict]) -> list[str]:
    spec = PROBLEMS[problem]
    final = final_log_regrets(group, problem, noisy)
    seconds: dict[str, list[float]] = {}
    for r in group:
        seconds.setdefault(r["method"], []).extend(r["seconds"])
    random = final.get("random", {})
    noise = f"noise sd {spec.noise_std:g}" if noisy else "noise-free"
    point = "recommended" if noisy else "best"
    lines = [f"\n**{problem}, {noise}, {spec.budget} evaluations** (log10 simple regret at the "
             f"end, {point} point)\n", "| method | seeds | median | IQR | p vs random | s/iter |",
             "|---|---|---|---|---|---|"]
    for method in [m for m in METHODS if m in final]:
        values = final[method]
        q1, med, q3 = quartiles(list(values.values()))
        p = None if method == "random" else paired_p(values, random)
        per_iter = f"{statistics.median(seconds[method]):.2f}" if seconds[method] else "-"
        lines.append(f"| {method} | {len(values)} | {med:.2f} | [{q1:.2f}, {q3:.2f}] | "
                     f"{'' if p is None else f'{p:.4f}'} | {per_iter} |")
    return lines


def _figure(problem: str, noisy: bool, group: list[dict], figures: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method in [m for m in METHODS if any(r["method"] == m for r in group)]:
        curves = [r["curve"] for r in group if r["method"] == method]
        xs = [n for n, _ in curves[0]][:min(len(c) for c in curves)]
        per_n = [[_log10(c[i][1]) for c in curves] for i in range(len(xs))]
        q = [quartiles(v) for v in per_n]
        ax.plot(xs, [m for _, m, _ in q], label=method)
        ax.fill_between(xs, [a for a, _, _ in q], [b for _, _, b in q], alpha=0.15)
    ax.set(xlabel="evaluations", ylabel="log10 simple regret",
           title=f"{problem} ({'noisy' if noisy else 'noise-free'}): median and IQR")
    ax.legend(fontsize=7)
    figures.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figures / f"bayesopt-{problem}-{'noisy' if noisy else 'exact'}.png", dpi=110)
    plt.close(fig)


def run_all(jobs: list[tuple], workers: int, say: Callable[[str], None]) -> None:
    """:func:`run_one` for every job, in ``workers`` processes; every job is checked before
    any runs."""
    for job in jobs:
        check_job(*job)
    if workers <= 1:
        for job in jobs:
            say(run_one(*job))
        return
    with ProcessPoolExecutor(workers) as pool:
        for message in pool.map(run_one, *zip(*jobs, strict=True)):
            say(message)
