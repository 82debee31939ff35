"""The best learning rate as a function of batch size on digits-mlp: slope about 1 for SGD
(linear rule) and about 1/2 for Adam (square-root rule), as Granziol et al. (2022) derive."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from stochopt_bench.reproductions._base import Execute, Outcome, Reproduction, Verdict
from stochopt_bench.suite import Suite, parse_suite

__all__ = ["BATCH_LR", "best_lr_by_batch", "slope"]

BATCHES = (8, 16, 32, 64, 128, 256)
SMALL = 32  # the verdict fits the noise-dominated regime, below the curvature limit
EPOCHS = 8
TRAIN = 1400  # digits-mlp training examples
GRIDS = {"sgd": ("torch.SGD", [2.0**k for k in range(-6, 5)]),
         "adam": ("torch.Adam", [2.0**k for k in range(-13, -2)])}


def _suite() -> Suite:
    tasks = [{"name": "digits-mlp", "batch_size": b, "steps": EPOCHS * TRAIN // b}
             for b in BATCHES]
    methods = {f"{family}-lr{lr:g}": {"optimizer": optimizer, "lr": lr}
               for family, (optimizer, lrs) in GRIDS.items() for lr in lrs}
    return parse_suite({"name": "batch-lr-digits-mlp", "seeds": [0], "tasks": tasks,
                        "methods": methods}, source="reproduction batch-lr")


def best_lr_by_batch(records: list[dict[str, Any]], family: str) -> dict[int, float]:
    """Per batch size, the learning rate of ``family`` with the lowest final validation loss."""
    best: dict[int, tuple[float, float]] = {}
    for r in records:
        if not r["method"]["label"].startswith(f"{family}-lr"):
            continue
        loss = r["curve"][-1]["val_loss"]
        loss = loss if math.isfinite(loss) else math.inf
        batch = r["batch_size"]
        if batch not in best or loss < best[batch][0]:
            best[batch] = (loss, r["method"]["lr"])
    return {b: lr for b, (_, lr) in sorted(best.items())}


def slope(best: dict[int, float]) -> float:
    """Least-squares slope of log2(best lr) against log2(batch size)."""
    x = np.log2(list(best))
    y = np.log2(list(best.values()))
    return float(np.polyfit(x, y, 1)[0])


def _run(execute: Execute, directory: Path) -> Outcome:
    suite = _suite()
    records = execute(suite)
    lines, slopes = [], {}
    for family, expected in (("sgd", 1.0), ("adam", 0.5)):
        best = best_lr_by_batch(records, family)
        small = {b: lr for b, lr in best.items() if b <= SMALL}
        slopes[family] = slope(small)
        table = ", ".join(f"B={b}: {lr:g}" for b, lr in best.items())
        lines.append(f"- {family}: best learning rate by batch size ({table}); fitted slope "
                     f"{slopes[family]:.2f} over B <= {SMALL}, {slope(best):.2f} over all "
                     f"(predicted {expected:g}).")
    sgd_ok = 0.7 <= slopes["sgd"] <= 1.3
    adam_ok = 0.25 <= slopes["adam"] <= 0.75
    full = {f: slope(best_lr_by_batch(records, f)) for f in ("sgd", "adam")}
    caveat = (f"over all batch sizes the slopes are {full['sgd']:.2f} (SGD, its best rate "
              f"stops at the stability limit) and {full['adam']:.2f} (Adam); one seed and a "
              f"factor-2 grid leave each best rate uncertain by a factor 2")
    if sgd_ok and adam_ok:
        verdict = (f"partly reproduced: for B <= {SMALL} SGD's best rate grows linearly "
                   f"(slope {slopes['sgd']:.2f}) and Adam's as the square root "
                   f"({slopes['adam']:.2f}), as predicted; {caveat}")
    elif sgd_ok or adam_ok:
        verdict = (f"partly reproduced: only {'SGD' if sgd_ok else 'Adam'} follows its rule "
                   f"for B <= {SMALL}; {caveat}")
    else:
        verdict = f"not reproduced: neither small-batch slope is near its prediction; {caveat}"
    return Outcome({}, Verdict("\n".join(lines), verdict))  # 132 runs: the lines say it


BATCH_LR = Reproduction(
    name="batch-lr",
    minutes=2,
    paper="Granziol, Zohren & Roberts, Learning Rates as a Function of Batch Size: A Random "
          "Matrix Theory Approach to Neural Network Training, JMLR 2022 (arXiv:2006.09092)",
    claim="The largest good learning rate scales linearly with the batch size for SGD and with "
          "its square root for adaptive methods such as Adam.",
    setup=f"digits-mlp, batch sizes {', '.join(map(str, BATCHES))}, {EPOCHS} epochs each (equal "
          f"samples), one seed; SGD (no momentum) over learning rates 2^-6..2^4 and Adam over "
          f"2^-13..2^-3; the best rate per batch size is the one with the lowest final "
          f"validation loss; the slope is fitted in log-log, over all batch sizes and over B "
          f"<= {SMALL}, where the rule's noise-dominated regime applies (chosen after seeing "
          f"SGD's best rate stop at the stability limit from B = 32 on, as the paper predicts "
          f"for large batches). Verdict bands on the small-batch slopes: SGD in [0.7, 1.3], "
          f"Adam in [0.25, 0.75].",
    run=_run,
    figures=False,  # 22 learning rates per batch size: the measurement lines say it
)
