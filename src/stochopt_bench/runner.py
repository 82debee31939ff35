"""Run a suite: each (task, method, seed) trains once and leaves one JSON record.

A record holds the run's configuration, seed, library versions and machine, the validation
curve against step and training wall-clock time, the optimizer's step time and its peak state
memory. Records are written atomically when a run finishes; a suite started again in the same
directory skips every run whose record exists with the same configuration, so an interrupted
suite resumes where it stopped and never loses or redoes a finished run.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import stochopt
from stochopt.optim import CurvatureOptimizer
from stochopt.schedules import GradNormRecorder, ScheduleLR
from stochopt.tasks import TASKS, Task
from stochopt_bench.methods import Method, build_schedule
from stochopt_bench.store import read_json, run_path, write_json_atomic
from stochopt_bench.suite import Suite, TaskSpec

__all__ = ["environment", "run_one", "run_suite"]

SCHEMA = 2  # 2: task labels with batch sizes, schedules, gradient norms
StepCallback = Callable[[int, int], None]


def environment() -> dict[str, Any]:
    """Library versions and the machine, recorded with every run."""
    return {
        "versions": {"stochopt": stochopt.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": _cpu_name(),
                    "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _backward(optimizer: torch.optim.Optimizer, loss: torch.Tensor,
              logits: torch.Tensor | None) -> None:
    """``loss.backward()``, or the curvature optimizers' ``backward`` (which may need logits)."""
    if isinstance(optimizer, CurvatureOptimizer):
        optimizer.backward(loss, logits=logits)
    else:
        loss.backward()


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for state in optimizer.state.values()
               for v in state.values() if isinstance(v, torch.Tensor))


def _summary(task: Task, curve: list[dict[str, Any]]) -> dict[str, Any]:
    metric = task.metric
    values = [point[metric.name] for point in curve]
    best = max(values) if metric.higher_is_better else min(values)
    reached = next((p for p in curve if metric.reached(p[metric.name])), None)
    return {"metric": metric.name, "higher_is_better": metric.higher_is_better,
            "target": metric.target, "final": values[-1], "best": best,
            "steps_to_target": reached["step"] if reached else None,
            "time_to_target": reached["time"] if reached else None}


def run_one(spec: TaskSpec, method: Method, seed: int,
            on_step: StepCallback | None = None) -> dict[str, Any]:
    """Train ``spec.name`` with ``method`` from ``seed`` and return the run record."""
    task = TASKS[spec.name]
    problem = task.build(seed, batch_size=spec.batch_size)
    params = [p for p in problem.model.parameters() if p.requires_grad]
    optimizer = method.build(params, spec.name)
    scheduler = None
    if method.schedule is not None:
        schedule = build_schedule(method.schedule, method.lr_for(spec.name), spec.steps)
        scheduler = ScheduleLR(optimizer, schedule)
    norms = GradNormRecorder(params)
    curve = [{"step": 0, "time": 0.0, "train_loss": None, **problem.evaluate()}]
    train_time, step_times, losses, peak_state, diverged = 0.0, [], [], 0, False
    for step in range(1, spec.steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, logits = problem.train_outputs()
        _backward(optimizer, loss, logits)
        norms.record()
        before_step = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        if scheduler is not None:
            scheduler.step()
        train_time += end - start
        step_times.append(end - before_step)
        losses.append(loss.item())
        diverged = not math.isfinite(losses[-1])
        if step % task.eval_every == 0 or step == spec.steps or diverged:
            peak_state = max(peak_state, _state_bytes(optimizer))
            curve.append({"step": step, "time": train_time,
                          "train_loss": sum(losses) / len(losses), **problem.evaluate()})
            losses = []
        if on_step:
            on_step(step, spec.steps)
        if diverged:
            break
    n_params = sum(p.numel() for p in params)
    timed = step_times[3:] or step_times  # the first steps build state (and compile)
    return {
        "schema": SCHEMA, "complete": True, "task": spec.label, "task_name": spec.name,
        "batch_size": spec.batch_size or task.batch_size, "steps": spec.steps,
        "grad_norm_l2": norms.l2, "grad_norm_l1": norms.l1,
        "method": method.as_dict(), "seed": seed, **environment(),
        "curve": curve, "diverged": diverged, "summary": _summary(task, curve),
        "step_time": {"median": statistics.median(timed), "mean": statistics.fmean(timed),
                      "first": step_times[0]},
        "train_time": train_time, "params": n_params, "state_bytes": peak_state,
        "state_bytes_per_param": peak_state / n_params,
    }


def _same_run(record: dict[str, Any], spec: TaskSpec, method: Method, seed: int) -> bool:
    return (record.get("complete") is True and record.get("schema") == SCHEMA
            and record.get("task") == spec.label and record.get("steps") == spec.steps
            and record.get("seed") == seed and record.get("method") == method.as_dict())


def run_suite(suite: Suite, directory: Path, on_run: Callable[[int, int, str], None] | None = None,
              on_step: StepCallback | None = None) -> list[dict[str, Any]]:
    """Run every (task, method, seed) of ``suite`` not already finished in ``directory``.

    ``on_run(done, total, name)`` is called before each run (and once at the end);
    ``on_step(step, steps)`` after each training step. Returns every record of the suite.
    """
    write_json_atomic(directory / "suite.json", suite.as_dict())
    runs = suite.runs()
    records = []
    for index, (spec, method, seed) in enumerate(runs):
        path = run_path(directory, spec.label, method.label, seed)
        name = f"{spec.label} / {method.label} / seed {seed}"
        if on_run:
            on_run(index, len(runs), name)
        if path.is_file():
            record = read_json(path)
            if _same_run(record, spec, method, seed):
                records.append(record)
                continue
        record = run_one(spec, method, seed, on_step)
        write_json_atomic(path, record)
        records.append(record)
    if on_run:
        on_run(len(runs), len(runs), "done")
    return records
