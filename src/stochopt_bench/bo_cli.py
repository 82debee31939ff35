"""``stochopt bo``: Bayesian optimization of a synthetic function with a progress bar, a
summary and a regret plot; the study is checkpointed, so an interrupted run resumes.

``--space FILE`` searches the function's coordinates as a JSON search space (one parameter
per coordinate, in order, inside the function's box: ``{"x0": {"type": "float", "low": 0.1,
"high": 10, "log": true}, "x1": {"type": "int", "low": 0, "high": 15}}``; categorical choices
must be numbers), the format of :meth:`stochopt.bayesopt.Space.from_json`.

Bad values are refused by the parser (``stochopt bo: error: argument --calls: ...``, exit
code 2); an ``--out`` that is a file, a ``--space`` file that is not a valid space for the
function, or a checkpoint there that is damaged or holds another study (another function,
space, surrogate, acquisition, batch size, design size, seed or noise) ends with
``stochopt: error: ...`` and exit code 2, before any evaluation; the message says how to
start afresh.
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

from stochopt._io import read_json, write_text_atomic
from stochopt.bayesopt import Categorical, Space, Study, minimize
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
    bo.add_argument("--space", type=Path, metavar="FILE",
                    help="a JSON search space over the function's coordinates (log scales, "
                         "integers, numeric choices); default the function's box")
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
    for name in ("study.json", "noise.json", "summary.json", "regret.png"):
        if (out / name).is_dir():
            raise ValueError(f"--out {out}: {out / name} is a directory, where the command "
                             f"writes a file; remove it or pass another --out")
    return out


def _space(f: TestFunction, path: Path | None) -> Space | None:
    """The ``--space`` file read and checked against ``f``'s coordinates and box."""
    if path is None:
        return None
    space = Space.from_json(read_json(path, what="search space", recover="fix or replace it"),
                            owner=f"--space {path}")
    if len(space) != f.dim:
        raise ValueError(f"--space {path}: {f.name} has {f.dim} coordinates, the space has "
                         f"{len(space)} parameters {space.names}; give one per coordinate")
    for j, (name, dim) in enumerate(space.dimensions.items()):
        low, high = float(f.bounds[j, 0]), float(f.bounds[j, 1])
        if isinstance(dim, Categorical):
            numbers = [c for c in dim.choices if isinstance(c, int | float)
                       and not isinstance(c, bool)]
            values = numbers if len(numbers) == len(dim.choices) else None
        else:
            values = [dim.low, dim.high]
        if values is None or not all(low <= v <= high for v in values):
            raise ValueError(f"--space {path}: parameter {name!r} ({dim}) must take numbers in "
                             f"{f.name}'s coordinate {j} range [{low:g}, {high:g}]")
    return space


def _coordinates(space: Space | None, X: torch.Tensor) -> torch.Tensor:
    """Study points as the function's coordinates (choice indices become the choices)."""
    if space is None:
        return X
    return torch.tensor([list(p.values()) for p in space.params(X)], dtype=torch.float64)


def _resumed(f: TestFunction, checkpoint: Path, args: argparse.Namespace,
             space: Space | None) -> list[float]:
    """The true values of the evaluations a checkpoint holds (empty without one), after
    checking that it is this command's study: the same function (box or space), surrogate,
    acquisition, batch size, design size, seed and noise."""
    if not checkpoint.exists():
        return []
    saved = Study.load(checkpoint)
    start = (f"pass another --out, or delete {checkpoint} (or the whole directory) to start "
             f"afresh")
    if saved.space != space or (space is None and (saved.bounds.shape != f.bounds.shape or
                                                   not torch.equal(saved.bounds, f.bounds))):
        what = f"the space {saved.space.to_json()}" if saved.space is not None else \
            f"the box {saved.bounds.tolist()}"
        wanted = f"the --space of {args.space}" if space is not None else \
            f"{f.name}'s box ({f.dim}-d)"
        raise ValueError(f"--out {checkpoint.parent} holds another study: {checkpoint} searches "
                         f"{what}, not {wanted}; {start}")
    given = _given(args)
    new = Study(space if space is not None else f.bounds, **given)
    differ = [f"{k}: {saved.settings[k]!r} saved, {new.settings[k]!r} given" for k in given
              if saved.settings[k] != new.settings[k]]
    for name, what in (("noise.json", "BO noise setting"), ("summary.json", "BO summary")):
        path = checkpoint.parent / name
        saved_file = read_json(path, what=what, recover="delete it") if path.is_file() else {}
        noise = saved_file.get("noise_std") if isinstance(saved_file, dict) else None
        if noise is not None and noise != args.noise_std:
            differ.append(f"noise_std: {noise!r} saved, {args.noise_std!r} given")
            break
    if differ:
        raise ValueError(f"--out {checkpoint.parent} holds another study, with other settings "
                         f"({'; '.join(differ)}); resume it with the same options, or {start}")
    return [float(f(x)) for x in _coordinates(space, saved.X)]


def _given(args: argparse.Namespace) -> dict:
    """The study settings this command sets (acquisition and design size only if given)."""
    given = {"surrogate": args.surrogate, "q": args.q, "seed": args.seed,
             "acquisition": args.acquisition, "n_initial": args.initial}
    return {k: v for k, v in given.items() if v is not None}


def run(args: argparse.Namespace, console: Console) -> int:
    f = _function(args)
    space = _space(f, args.space)
    out = _output(args.out or Path("results") / f"bo-{args.function}-{args.seed}")
    checkpoint = out / "study.json"

    def observe(point: torch.Tensor | dict) -> float:
        x = point if space is None else torch.tensor(list(point.values()), dtype=torch.float64)
        index = len(seen)
        seen.append(float(f(x)))
        g = torch.Generator().manual_seed((10_007 * args.seed + index) % 2**64)
        return float(f.observe(x, args.noise_std, g))

    seen = _resumed(f, checkpoint, args, space)  # the true values of evaluations made before
    # the noise is no study setting: kept beside the checkpoint from the start, so that an
    # interrupted run is not resumed with another noise level
    write_text_atomic(out / "noise.json", json.dumps({"noise_std": args.noise_std}))
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

        result = minimize(observe, space if space is not None else f.bounds, args.calls,
                          callback=callback, checkpoint=checkpoint, **_given(args))
    summary = _summary(f, result, seen, space) | {"noise_std": args.noise_std}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    _plot(f, seen, summary, out / "regret.png")
    console.print(f"best observed {summary['y_best']:.6g} at {summary['x_best']}\n"
                  f"recommended {summary['x_recommended']} (true regret "
                  f"{summary['regret_recommended']:.3g}); best true regret "
                  f"{summary['regret_best']:.3g}; {summary['seconds_per_iteration']:.2f} s per "
                  f"iteration\nwrote {out / 'summary.json'}, {out / 'regret.png'}")
    return 0


def _summary(f: TestFunction, result, seen: list[float], space: Space | None = None) -> dict:
    seconds = [a + b for a, b in zip(result.fit_seconds, result.acquisition_seconds,
                                     strict=True)]
    best, recommended = _coordinates(space, torch.stack([result.x_best,
                                                         result.x_recommended]))
    return {"function": f.name, "dim": f.dim, "minimum": f.minimum,
            "x_best": best.tolist(), "y_best": result.y_best,
            "x_recommended": recommended.tolist(),
            "regret_recommended": float(f(recommended)) - f.minimum,
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
