"""``stochopt bo``: Bayesian optimization of a synthetic function with a progress bar, a
summary and a regret plot; the study is checkpointed, so an interrupted run resumes.

Bad values are refused by the parser (``stochopt bo: error: argument --calls: ...``, exit
code 2); an ``--out`` that is a file, or a checkpoint there that is damaged or holds another
function's study, ends with ``stochopt: error: ...`` and exit code 2, before any evaluation.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.quasirandom import SobolEngine

from stochopt._io import write_text_atomic
from stochopt.bayesopt import Study, minimize
from stochopt.bayesopt.acquire import ACQUISITIONS
from stochopt.bayesopt.surrogates import SURROGATES
from stochopt.tasks import Ackley, Branin, Hartmann6, Levy, Michalewicz, Rosenbrock
from stochopt.tasks.functions import TestFunction
from stochopt_bench.store import output_directory

__all__ = ["FUNCTIONS", "add_parser", "run"]

FUNCTIONS = {"branin": Branin, "hartmann6": Hartmann6, "ackley": Ackley, "levy": Levy,
             "rosenbrock": Rosenbrock, "michalewicz": Michalewicz}
FIXED_DIM = {"branin": 2, "hartmann6": 6}


def _integer(low: int, high: int | None = None, shown: str | None = None
             ) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]`` (``high`` written as ``shown``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            allowed = f">= {low}" if high is None else f"in [{low}, {shown or high}]"
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}, got {value}")
        return value

    return parse


def _noise_std(text: str) -> float:
    """An argparse type: a finite real number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    bo = commands.add_parser(
        "bo", help="Bayesian optimization of a synthetic function",
        description="Minimize a synthetic function with stochopt.bayesopt.minimize; writes the "
                    "study (resumable), a JSON summary and a regret plot to the output "
                    "directory.")
    bo.add_argument("function", choices=sorted(FUNCTIONS))
    bo.add_argument("--dim", type=_integer(2, SobolEngine.MAXDIM),
                    help="dimension (ackley, levy, rosenbrock, michalewicz)")
    bo.add_argument("--calls", type=_integer(1), default=40, help="evaluations (default 40)")
    bo.add_argument("--initial", type=_integer(1), help="Sobol design size (default max(5, 2d))")
    bo.add_argument("--surrogate", choices=sorted(SURROGATES), default="gp")
    bo.add_argument("--acquisition", choices=sorted(ACQUISITIONS),
                    help="default logei (qei for --q > 1)")
    bo.add_argument("--q", type=_integer(1), default=1, help="points per batch")
    bo.add_argument("--noise-std", type=_noise_std, default=0.0,
                    help="observation noise added to every evaluation")
    bo.add_argument("--seed", type=_integer(0, 2**63 - 1, "2**63 - 1"), default=0)
    bo.add_argument("--out", type=Path, help="default results/bo-<function>-<seed>")
    bo.set_defaults(handler=run)


def _function(args: argparse.Namespace) -> TestFunction:
    if args.function in FIXED_DIM:
        if args.dim not in (None, FIXED_DIM[args.function]):
            raise ValueError(f"--dim: {args.function} is {FIXED_DIM[args.function]}-dimensional,"
                             f" got {args.dim}")
        return FUNCTIONS[args.function]()
    return FUNCTIONS[args.function]() if args.dim is None else \
        FUNCTIONS[args.function](dim=args.dim)


def _output(out: Path) -> Path:
    """The output directory, created; a clear ``ValueError`` naming ``--out`` if it is a
    file, lies under a file, cannot be created, or holds a directory where a result goes."""
    output_directory(out, "--out")
    for name in ("study.json", "summary.json", "regret.png"):
        if (out / name).is_dir():
            raise ValueError(f"--out {out}: {out / name} is a directory, where the command "
                             f"writes a file; remove it or pass another --out")
    return out


def _resumed(f: TestFunction, checkpoint: Path) -> list[float]:
    """The true values of the evaluations a checkpoint holds (empty without one), after
    checking that it is a study of ``f``."""
    if not checkpoint.exists():
        return []
    saved = Study.load(checkpoint)
    if saved.bounds.shape != f.bounds.shape or not torch.equal(saved.bounds, f.bounds):
        raise ValueError(f"{checkpoint} holds a study over the box {saved.bounds.tolist()}, "
                         f"not {f.name} ({f.dim}-d); pass another --out or delete it")
    return [float(f(x)) for x in saved.X]


def run(args: argparse.Namespace, console: Console) -> int:
    f = _function(args)
    out = _output(args.out or Path("results") / f"bo-{args.function}-{args.seed}")
    checkpoint = out / "study.json"

    def observe(x: torch.Tensor) -> float:
        index = len(seen)
        seen.append(float(f(x)))
        g = torch.Generator().manual_seed((10_007 * args.seed + index) % 2**64)
        return float(f.observe(x, args.noise_std, g))

    seen = _resumed(f, checkpoint)  # replay the true values of the evaluations already made
    if seen:
        console.print(f"resuming {checkpoint} at {len(seen)} evaluations")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"{f.name} ({f.dim}-d)", total=args.calls, completed=len(seen))

        def callback(result) -> None:
            regret = min(seen) - f.minimum
            progress.update(bar, completed=len(result.y),
                            description=f"{f.name} ({f.dim}-d) regret {regret:.3g}")

        given = {"acquisition": args.acquisition, "n_initial": args.initial}
        result = minimize(observe, f.bounds, args.calls, callback=callback,
                          checkpoint=checkpoint, surrogate=args.surrogate, q=args.q,
                          seed=args.seed, **{k: v for k, v in given.items() if v is not None})
    summary = _summary(f, result, seen)
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    _plot(f, seen, summary, out / "regret.png")
    console.print(f"best observed {summary['y_best']:.6g} at {summary['x_best']}\n"
                  f"recommended {summary['x_recommended']} (true regret "
                  f"{summary['regret_recommended']:.3g}); best true regret "
                  f"{summary['regret_best']:.3g}; {summary['seconds_per_iteration']:.2f} s per "
                  f"iteration\nwrote {out / 'summary.json'}, {out / 'regret.png'}")
    return 0


def _summary(f: TestFunction, result, seen: list[float]) -> dict:
    seconds = [a + b for a, b in zip(result.fit_seconds, result.acquisition_seconds,
                                     strict=True)]
    return {"function": f.name, "dim": f.dim, "minimum": f.minimum,
            "x_best": result.x_best.tolist(), "y_best": result.y_best,
            "x_recommended": result.x_recommended.tolist(),
            "regret_recommended": float(f(result.x_recommended)) - f.minimum,
            "regret_best": min(seen) - f.minimum,
            "regret_curve": [min(seen[:n]) - f.minimum for n in range(1, len(seen) + 1)],
            "seconds_per_iteration": sum(seconds) / len(seconds) if seconds else 0.0}


def _plot(f: TestFunction, seen: list[float], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    curve = [math.log10(max(r, 1e-12)) for r in summary["regret_curve"]]
    ax.plot(range(1, len(curve) + 1), curve, label="best evaluated (true value)")
    ax.scatter([len(curve)], [math.log10(max(summary["regret_recommended"], 1e-12))],
               color="C3", zorder=3, label="recommended point")
    ax.set(xlabel="evaluations", ylabel="log10 simple regret", title=f"{f.name} ({f.dim}-d)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
