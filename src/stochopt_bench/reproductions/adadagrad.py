"""AdAdaGrad (Lau, Liu & Kolar, 2024): AdaGrad whose batch grows by the norm test, against
fixed small, medium and full batches at an equal budget of samples, on digits-mlp."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from stochopt.batching import GrowingBatchSampler, flat_per_sample, norm_test, per_sample_gradients
from stochopt.optim import AdaGrad
from stochopt.tasks import TASKS
from stochopt_bench.reproductions._base import Execute, Outcome, Reproduction, Verdict, cached

__all__ = ["ADADAGRAD", "train"]

EPOCHS = 20
TRAIN = 1400
LR = 5e-2
SEEDS = (0, 1, 2)
#: name -> (initial batch, norm-test eta or None for a fixed batch)
CONFIGS: dict[str, tuple[int, float | None]] = {
    "fixed-2": (2, None), "fixed-16": (16, None), "full-batch": (TRAIN, None),
    "adaptive-0.1": (2, 0.1), "adaptive-0.25": (2, 0.25), "adaptive-0.5": (2, 0.5),
    # beyond the paper's values: at 0.1-0.5 the test asks for the full set within ~20 steps
    "adaptive-1": (2, 1.0), "adaptive-2": (2, 2.0), "adaptive-4": (2, 4.0),
}


def train(config: str, seed: int) -> dict[str, Any]:
    """AdaGrad on digits-mlp until ``EPOCHS * TRAIN`` samples are used; returns a record."""
    batch, eta = CONFIGS[config]
    problem = TASKS["digits-mlp"].build(seed)
    model, x, y = problem.model, problem.x, problem.y
    opt = AdaGrad(model.parameters(), lr=LR)
    sampler = GrowingBatchSampler(len(y), batch, TRAIN, torch.Generator().manual_seed(seed + 1))
    sizes, steps = [], 0
    for indices in sampler:
        if sampler.samples > EPOCHS * TRAIN:
            break
        opt.zero_grad()
        if eta is None:
            F.cross_entropy(model(x[indices]), y[indices]).backward()
        else:  # per-sample gradients give both the mean gradient and the test's variance
            grads = per_sample_gradients(model, F.cross_entropy, x[indices], y[indices])
            for name, p in model.named_parameters():
                p.grad = grads[name].mean(dim=0)
            sampler.grow(norm_test(flat_per_sample(grads), eta))
        opt.step()
        steps += 1
        sizes.append(len(indices))
    figures = problem.evaluate()
    return {"config": config, "seed": seed, "steps": steps, "samples": sum(sizes),
            "final_batch": sizes[-1], "batch_sizes": sizes[:: max(1, len(sizes) // 200)],
            "val_accuracy": figures["val_accuracy"], "val_loss": figures["val_loss"]}


def _mean(records: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in records)


def _run(execute: Execute, directory: Path) -> Outcome:
    results = {config: [cached(directory / "adadagrad" / f"{config}__seed{seed}.json",
                               lambda c=config, s=seed: train(c, s)) for seed in SEEDS]
               for config in CONFIGS}
    lines = []
    for config, records in results.items():
        lines.append(f"- {config}: {_mean(records, 'steps'):.0f} steps, final batch "
                     f"{_mean(records, 'final_batch'):.0f}, validation accuracy "
                     f"{_mean(records, 'val_accuracy'):.4f} ± "
                     f"{statistics.stdev(r['val_accuracy'] for r in records):.4f}.")
    small = _mean(results["fixed-2"], "val_accuracy")
    small_steps = _mean(results["fixed-2"], "steps")
    adaptive = [c for c in CONFIGS if c.startswith("adaptive")]
    good = [c for c in adaptive
            if _mean(results[c], "val_accuracy") >= small - 0.01
            and _mean(results[c], "steps") * 10 <= small_steps]
    if good:
        best = max(good, key=lambda c: small_steps / _mean(results[c], "steps"))
        verdict = (f"reproduced: {best} stays within 1 point of batch 2's accuracy with "
                   f"{small_steps / _mean(results[best], 'steps'):.0f}x fewer steps")
    else:
        fewer = [c for c in adaptive if _mean(results[c], "steps") * 10 <= small_steps]
        closest = max(fewer, key=lambda c: _mean(results[c], "val_accuracy"))
        verdict = (f"not reproduced: no adaptive run is within 1 point of batch 2's accuracy "
                   f"with at least 10x fewer steps (closest: {closest}, "
                   f"{small - _mean(results[closest], 'val_accuracy'):.4f} below with "
                   f"{small_steps / _mean(results[closest], 'steps'):.0f}x fewer steps)")
    full = _mean(results["full-batch"], "val_accuracy")
    verdict += f"; full batch at the same budget reaches {full:.4f}"
    return Outcome({}, Verdict("\n".join(lines), verdict))


ADADAGRAD = Reproduction(
    name="adadagrad",
    minutes=3,
    paper="Lau, Liu & Kolar, AdAdaGrad: Adaptive Batch Size Schemes for Adaptive Gradient "
          "Methods, 2024 (arXiv:2402.11215)",
    claim="Growing the batch by the norm test lets AdaGrad match the accuracy of small-batch "
          "training while taking far fewer steps, at the same number of samples.",
    setup=f"digits-mlp, AdaGrad (lr {LR}), {EPOCHS} epochs of samples ({EPOCHS * TRAIN}) for "
          f"every run, 3 seeds: fixed batches 2, 16 and {TRAIN} (full) against AdAdaGrad from "
          f"batch 2 with the norm test at the paper's eta 0.1, 0.25 and 0.5 and, since those "
          f"grow to the full set within a few dozen steps here, at 1, 2 and 4 (per-sample "
          f"gradients from torch.func, capped at the training set). Reproduced if some eta "
          f"stays within 1 point of batch 2's mean accuracy with at least 10x fewer steps.",
    run=_run,
)
