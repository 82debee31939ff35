"""AdaBelief vs Adam on digits-cnn and charlm (Zhuang et al., 2020)."""

from __future__ import annotations

from pathlib import Path

from stochopt_bench.report import Row, summarize
from stochopt_bench.reproductions._base import Execute, Outcome, Reproduction, Verdict, compare
from stochopt_bench.suite import Suite, parse_suite

__all__ = ["ADABELIEF"]


def judge(rows: dict[str, list[Row]]) -> Verdict:
    """Quality: final metric better / no worse / worse than Adam beyond 2 standard errors.
    Speed: median steps to the task's target at most 10% more than Adam's."""
    lines, words, fast = [], [], []
    for task, task_rows in rows.items():
        better, noise, word = compare(task_rows, "adabelief", "adam")
        a = next(r for r in task_rows if r.method == "adabelief")
        b = next(r for r in task_rows if r.method == "adam")
        lines.append(
            f"- {task}: final {a.metric} AdaBelief {a.final_mean:.4f} ± {a.final_std:.4f} vs "
            f"Adam {b.final_mean:.4f} ± {b.final_std:.4f} ({a.seeds} seeds): AdaBelief is "
            f"{word} (difference {better:+.4f}, 2 s.e. {noise:.4f}); steps to target "
            f"{_steps(a)} vs {_steps(b)}.")
        words.append(word)
        fast.append(a.steps_to_target is not None and (b.steps_to_target is None or
                    a.steps_to_target <= 1.1 * b.steps_to_target))
    speed = ("converges as fast as Adam" if all(fast)
             else "converges more slowly than Adam on at least one task")
    if "worse" in words:
        verdict = f"not reproduced: AdaBelief is worse than Adam on at least one task; {speed}"
    elif all(w == "better" for w in words) and all(fast):
        verdict = "reproduced: AdaBelief converges as fast as Adam and ends better on every task"
    elif any(w == "better" for w in words):
        verdict = (f"partly reproduced: AdaBelief {speed}, ends better on some tasks and "
                   f"within seed noise of Adam on the others")
    else:
        verdict = (f"partly reproduced: AdaBelief {speed}, but its final validation metric is "
                   f"within seed noise of Adam's on every task; the claimed improvement does "
                   f"not show at this scale")
    return Verdict("\n".join(lines), verdict)


def _steps(row: Row) -> str:
    if row.steps_to_target is None:
        return "not reached"
    return f"{row.steps_to_target:.0f} ({row.reached}/{row.seeds} seeds)"


def _adabelief_suite(task: str, steps: int, lr: float, eps: float) -> Suite:
    return parse_suite({
        "name": f"adabelief-{task}", "seeds": [0, 1, 2], "tasks": [{"name": task, "steps": steps}],
        "methods": {
            "adam": {"optimizer": "torch.Adam", "lr": lr},
            "adabelief": {"optimizer": "AdaBelief", "lr": lr, "eps": eps, "rectify": False,
                          "weight_decouple": False},
        },
    }, source=f"reproduction adabelief ({task})")


def _run(execute: Execute, directory: Path) -> Outcome:
    rows: dict[str, list[Row]] = {}
    for suite in (_adabelief_suite("digits-cnn", 400, 1e-3, 1e-8),
                  _adabelief_suite("charlm", 400, 3e-3, 1e-16)):
        rows.update(summarize(execute(suite), suite.as_dict()))
    return Outcome(rows, judge(rows))


ADABELIEF = Reproduction(
    name="adabelief",
    minutes=4,
    paper="Zhuang et al., AdaBelief Optimizer: Adapting Stepsizes by the Belief in "
          "Observed Gradients, NeurIPS 2020 (arXiv:2010.07468)",
    claim="AdaBelief converges as fast as Adam and reaches better validation "
          "performance than Adam, on image classification (CNNs) and language "
          "modelling, with the same hyperparameters as Adam.",
    setup="Adam vs AdaBelief (the paper's algorithm: no rectification, L2 decay off), "
          "same learning rate and betas, 3 seeds: digits-cnn (400 steps, lr 1e-3, "
          "AdaBelief eps 1e-8 as in the paper's CNN experiments) and charlm (400 steps, "
          "lr 3e-3, eps 1e-16 as the authors recommend for transformers).",
    run=_run,
)
