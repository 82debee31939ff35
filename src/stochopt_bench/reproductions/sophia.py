"""Sophia-G and Sophia-H vs AdamW on charlm (Liu et al., 2023), and AdaHessian vs Adam on
digits-cnn (Yao et al., 2020): each method at its best learning rate from a small grid
(one seed), then three seeds at that rate."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from stochopt.tasks import TASKS
from stochopt_bench.report import summarize
from stochopt_bench.reproductions._base import (
    Execute,
    Families,
    Outcome,
    Reproduction,
    Verdict,
    best_learning_rates,
    compare,
    final_metric,
    grid_line,
    grid_suite,
    seeded_suite,
    steps_to,
)

__all__ = ["SOPHIA", "speedup_line"]

STEPS = 400
SEEDS = [0, 1, 2]
#: method families: optimizer options and the learning-rate grid
CHARLM: Families = {
    "adamw": ({"optimizer": "torch.AdamW", "weight_decay": 0.1}, (1e-3, 3e-3, 1e-2)),
    "sophiag": ({"optimizer": "SophiaG", "betas": [0.9, 0.99], "weight_decay": 0.2},
                (1e-3, 3e-3, 1e-2)),
    "sophiah": ({"optimizer": "SophiaH", "betas": [0.9, 0.99], "weight_decay": 0.2},
                (1e-3, 3e-3, 1e-2)),
}
DIGITS: Families = {
    "adam": ({"optimizer": "torch.Adam"}, (1e-3, 3e-3, 1e-2)),
    "adahessian": ({"optimizer": "AdaHessian"}, (0.05, 0.15, 0.5)),
}


def speedup_line(records: list[dict[str, Any]], method: str, baseline: str) -> tuple[str, float]:
    """How many steps ``method`` needs to reach ``baseline``'s final metric (mean over seeds),
    as a line of text and the speedup ``STEPS / median steps`` (0 if a seed never reaches it)."""
    target = final_metric(records, baseline)
    steps = [steps_to(r, target) for r in records if r["method"]["label"] == method]
    reached = [s for s in steps if s is not None]
    if len(reached) < len(steps):
        return (f"{method} reaches {baseline}'s final value {target:.4f} in "
                f"{len(reached)}/{len(steps)} seeds (steps: {steps})"), 0.0
    median = statistics.median(reached)
    speedup = STEPS / median
    return (f"{method} reaches {baseline}'s final value {target:.4f} (mean of 3 seeds at step "
            f"{STEPS}) at step {median:g} (median; per seed {reached}): {speedup:.2f}x fewer "
            f"steps"), speedup


def _verdict(speedups: dict[str, float], adahessian_word: str, cost: float) -> str:
    best = max(speedups.values())
    if all(s >= 2.0 for s in speedups.values()):
        sophia = "reproduced: both Sophias need at most half of AdamW's steps"
    elif best > 1.0:
        sophia = (f"partly reproduced: Sophia needs fewer steps than AdamW (best {best:.2f}x), "
                  f"but not the claimed 2x")
    else:
        sophia = ("not reproduced: at this scale neither Sophia reaches AdamW's final loss in "
                  "fewer steps on every seed")
    if adahessian_word == "better":
        ada = "reproduced: higher final accuracy than Adam"
    elif adahessian_word == "worse":
        ada = "not reproduced: lower final accuracy than Adam"
    else:
        ada = (f"not shown: final accuracy equal to Adam's within seed noise, at {cost:.0f}x "
               f"Adam's step time")
    return f"Sophia: {sophia}. AdaHessian: {ada}"


def _run(execute: Execute, directory: Path) -> Outcome:
    lines, speedups, rows = [], {}, {}
    grid = execute(grid_suite("sophia", "charlm", CHARLM, STEPS))
    best = best_learning_rates(grid, CHARLM)
    suite = seeded_suite("sophia", "charlm", CHARLM, best, STEPS, SEEDS)
    seeded = execute(suite)
    rows.update(summarize(seeded, suite.as_dict()))
    lines.append(grid_line(grid, CHARLM))
    for method in ("sophiag", "sophiah"):
        line, speedups[method] = speedup_line(seeded, method, "adamw")
        _, _, word = compare(rows["charlm"], method, "adamw")
        a, b = (next(r for r in rows["charlm"] if r.method == m) for m in (method, "adamw"))
        lines.append(f"- charlm, lr {best[method]:g} (AdamW {best['adamw']:g}): {line}; final "
                     f"loss {a.final_mean:.4f} ± {a.final_std:.4f} vs AdamW {b.final_mean:.4f} "
                     f"± {b.final_std:.4f}: {word}.")
    digits_grid = execute(grid_suite("sophia", "digits-cnn", DIGITS, STEPS))
    digits_best = best_learning_rates(digits_grid, DIGITS)
    digits_suite = seeded_suite("sophia", "digits-cnn", DIGITS, digits_best, STEPS, SEEDS)
    digits = execute(digits_suite)
    digits_rows = summarize(digits, digits_suite.as_dict())
    rows.update(digits_rows)
    better, noise, word = compare(digits_rows["digits-cnn"], "adahessian", "adam")
    a, b = (next(r for r in digits_rows["digits-cnn"] if r.method == m)
            for m in ("adahessian", "adam"))
    lines.append(grid_line(digits_grid, DIGITS))
    lines.append(f"- digits-cnn: final accuracy AdaHessian (lr {digits_best['adahessian']:g}) "
                 f"{a.final_mean:.4f} ± {a.final_std:.4f} vs Adam (lr {digits_best['adam']:g}) "
                 f"{b.final_mean:.4f} ± {b.final_std:.4f}: {word} (difference {better:+.4f}, "
                 f"2 s.e. {noise:.4f}); step time {a.step_ms:.2f} ms vs {b.step_ms:.2f} ms.")
    verdict = _verdict(speedups, word, a.step_ms / b.step_ms)
    return Outcome(rows, Verdict("\n".join(lines), verdict))


SOPHIA = Reproduction(
    name="sophia",
    paper="Liu, Li, Hall, Liang & Ma, Sophia: A Scalable Stochastic Second-order Optimizer for "
          "Language Model Pre-training, ICLR 2024 (arXiv:2305.14342); Yao et al., ADAHESSIAN: "
          "An Adaptive Second Order Optimizer for Machine Learning, AAAI 2021 "
          "(arXiv:2006.00719)",
    claim="Sophia reaches the same validation loss as AdamW in half the steps on language "
          "model pre-training; AdaHessian reaches higher accuracy than Adam on image "
          "classification.",
    setup=f"charlm ({STEPS} steps): torch AdamW (weight decay 0.1) vs SophiaG and SophiaH "
          f"(weight decay 0.2, twice AdamW's as the authors advise; betas (0.9, 0.99): the "
          f"paper's beta1 = 0.965 lags over so short a run; "
          f"curvature every 10 steps, default rho), each at its best learning rate from "
          f"{{1e-3, 3e-3, 1e-2}} on seed 0, then 3 seeds; measured: the step at which each "
          f"Sophia first reaches AdamW's mean final validation loss (evaluations every "
          f"{TASKS['charlm'].eval_every} steps). digits-cnn ({STEPS} steps): Adam vs "
          f"AdaHessian (official defaults, Hessian every step), best learning rate from a "
          f"grid of three, then 3 seeds.",
    run=_run,
)
