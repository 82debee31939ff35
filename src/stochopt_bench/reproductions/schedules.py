"""Linear decay vs cosine vs step vs the refined schedule (Defazio et al., 2023), each at its
best peak learning rate, on digits-mlp and charlm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stochopt.schedules import refine
from stochopt_bench.report import Row, summarize
from stochopt_bench.reproductions._base import (
    Execute,
    Families,
    Outcome,
    Reproduction,
    Verdict,
    best_learning_rates,
    compare,
    grid_line,
    grid_suite,
    seeded_suite,
)

__all__ = ["SCHEDULES", "refined_shape"]

SEEDS = [0, 1, 2]
TASKS = {"digits-mlp": (600, (1e-3, 3e-3, 1e-2)), "charlm": (400, (3e-3, 6e-3, 1.2e-2))}
OPTIMIZER = {"optimizer": "torch.AdamW"}
FIXED = {"linear": {"kind": "linear"}, "cosine": {"kind": "cosine"},
         "step": {"kind": "step", "milestones": [0.5, 0.75], "gamma": 0.1}}


def refined_shape(records: list[dict[str, Any]], label: str) -> list[float]:
    """The refined schedule (Adam form: inverse l1 norms) from seed 0 of run ``label``."""
    record = next(r for r in records if r["method"]["label"] == label and r["seed"] == 0)
    return list(refine(record["grad_norm_l1"], method="adam").shape)


def _families(schedules: dict[str, dict[str, Any]], lrs: tuple[float, ...]) -> Families:
    return {name: ({**OPTIMIZER, "schedule": schedule}, lrs)
            for name, schedule in schedules.items()}


def _study(execute: Execute, task: str) -> tuple[list[Row], list[str]]:
    steps, lrs = TASKS[task]
    linear = _families({"linear": FIXED["linear"]}, lrs)
    linear_grid = execute(grid_suite("schedules-linear", task, linear, steps))
    best_linear = best_learning_rates(linear_grid, linear)["linear"]
    shape = refined_shape(linear_grid, f"linear-lr{best_linear:g}")
    families = _families({**FIXED, "refined": {"kind": "refined", "shape": shape}}, lrs)
    grid = execute(grid_suite("schedules", task, families, steps))
    best = best_learning_rates(grid, families)
    suite = seeded_suite("schedules", task, families, best, steps, SEEDS)
    rows = summarize(execute(suite), suite.as_dict())[task]
    peak = max(range(len(shape)), key=shape.__getitem__)
    lines = [grid_line(grid, families),
             f"- {task}: the refined schedule (from the best linear run's gradient l1 norms) "
             f"peaks at step {peak} of {steps} ({peak / steps:.0%})."]
    for ours, theirs in (("linear", "cosine"), ("linear", "step"), ("refined", "linear")):
        word = compare(rows, ours, theirs)[2]
        a, b = (next(r for r in rows if r.method == m) for m in (ours, theirs))
        lines.append(f"- {task}: {ours} (peak {best[ours]:g}) final {a.metric} "
                     f"{a.final_mean:.4f} ± {a.final_std:.4f} vs {theirs} (peak "
                     f"{best[theirs]:g}) {b.final_mean:.4f} ± {b.final_std:.4f}: {word}.")
    return rows, lines


def _verdict(rows: dict[str, list[Row]]) -> str:
    words = {(task, a, b): compare(task_rows, a, b)[2] for task, task_rows in rows.items()
             for a, b in (("linear", "cosine"), ("refined", "linear"))}
    linear_ok = all(w != "worse" for (_, a, _), w in words.items() if a == "linear")
    refined = [w for (_, a, _), w in words.items() if a == "refined"]
    first = ("linear decay matches or beats cosine on both tasks" if linear_ok
             else "linear decay is worse than cosine on at least one task")
    if all(w == "better" for w in refined):
        second = "refinement improves on linear decay on both"
    elif "worse" in refined:
        second = "refinement is worse than linear decay on at least one task"
    else:
        second = "refinement is within seed noise of linear decay"
    status = ("reproduced" if linear_ok and all(w == "better" for w in refined)
              else "partly reproduced" if linear_ok else "not reproduced")
    return f"{status}: {first}; {second}"


def _run(execute: Execute, directory: Path) -> Outcome:
    rows: dict[str, list[Row]] = {}
    lines: list[str] = []
    for task in TASKS:
        task_rows, task_lines = _study(execute, task)
        rows[task] = task_rows
        lines += task_lines
    return Outcome(rows, Verdict("\n".join(lines), _verdict(rows)))


SCHEDULES = Reproduction(
    name="schedules",
    minutes=21,
    paper="Defazio, Cutkosky, Mehta & Mishchenko, When, Why and How Much? Adaptive Learning "
          "Rate Scheduling by Refinement, 2023 (arXiv:2310.07831)",
    claim="Linear decay matches or beats cosine and other standard schedules, and the schedule "
          "refined from a previous run's gradient norms improves further.",
    setup="AdamW on digits-mlp (600 steps) and charlm (400 steps). Linear decay is run at "
          "three peak learning rates; the gradient l1 norms of the best one (seed 0) give the "
          "refined schedule (Adam form, w = 1/||g||_1, median filter over 10% of the run). "
          "Linear, cosine, step (x0.1 at 50% and 75%) and refined then each take their best "
          "peak from the same three-point grid (seed 0) and run 3 seeds; final validation "
          "metrics are compared within 2 standard errors.",
    run=_run,
)
