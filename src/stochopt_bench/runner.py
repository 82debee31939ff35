"""Run a suite: each (task, method, seed) trains once and leaves one JSON record.

A record holds the run's configuration, seed, library versions and machine, the validation
curve against step and training wall-clock time (with, at each evaluation, the optimizer's
diagnostics where it has them: the Sophias' ``win_rate``), the optimizer's step time and its
peak state memory. Records are written atomically when a run finishes; a suite started again
in the same directory skips every run whose record exists with the same configuration, so an
interrupted suite resumes where it stopped and never loses or redoes a finished run.

A record that cannot be read back (not JSON, truncated, missing or mistyped entries, another
run's) is reported, moved aside as ``<name>.json.damaged`` and its run repeated; a record made
with another configuration of the same run (the suite file was edited) is moved aside as
``<name>.json.outdated`` and its run repeated. Nothing is deleted, and neither stops the rest
of the suite. The directory's ``suite.json`` names the suite it holds: a damaged one, or one
naming another suite or the same suite with other overrides (``--steps``, ``--methods``,
``--threads``), stops the suite before anything runs, with a message saying how to go on
(``fresh=True``, ``--fresh`` on the command line, starts the directory over).

Before the first timed run of each (task, method), an untimed warm-up (:func:`warm_up`) pays
the process's one-time costs, so the first run of a suite is not slower on the wall-clock
axis than the others; it changes no record. A suite may be run in shards
(:class:`~stochopt_bench.shard.Shard`), each a deterministic share of its runs.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

import stochopt
from stochopt._checks import check_int, check_seed, show
from stochopt._io import damaged, read_json
from stochopt.errors import DamagedFileError, NonFiniteError
from stochopt.optim import CurvatureOptimizer
from stochopt.schedules import GradNormRecorder, ScheduleLR
from stochopt.tasks import Task, get_task
from stochopt_bench.methods import Method, build_schedule
from stochopt_bench.shard import Shard
from stochopt_bench.store import RECORD, check_record, run_path, set_aside, write_json_atomic
from stochopt_bench.suite import SUITE_FILE, Suite, TaskSpec, read_suite_file

__all__ = ["SCHEMA", "WARMUP_STEPS", "check_directory", "differences", "environment", "run_one",
           "run_suite", "warm_up"]

SCHEMA = 2  # 2: task labels with batch sizes, schedules, gradient norms
StepCallback = Callable[[int, int], None]
#: untimed training steps of :func:`warm_up`
WARMUP_STEPS = 3
_log = logging.getLogger(__name__)


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


def _diagnostics(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Optional per-evaluation values the optimizer offers, recorded in the curve points
    where it has them: ``win_rate`` (the Sophias' fraction of coordinates whose update is not
    clipped, :meth:`stochopt.optim.SophiaG.win_rate`), left out while it is undefined."""
    win_rate = getattr(optimizer, "win_rate", None)
    if not callable(win_rate):
        return {}
    value = float(win_rate())
    return {"win_rate": value} if math.isfinite(value) else {}


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
    """Train ``spec.name`` with ``method`` from ``seed`` and return the run record.

    Raises:
        TypeError, ValueError: ``spec``, ``method`` or ``seed`` is not valid (checked before
            anything is built).
    """
    _check_run(spec, method, seed)
    task = get_task(spec.name)
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
        try:
            optimizer.step()
            refused = False
        except NonFiniteError:  # e.g. nonfinite="raise": recorded as a diverged run
            refused = True
        end = time.perf_counter()
        if scheduler is not None:
            scheduler.step()
        train_time += end - start
        step_times.append(end - before_step)
        losses.append(loss.item())
        diverged = refused or not math.isfinite(losses[-1])
        if step % task.eval_every == 0 or step == spec.steps or diverged:
            peak_state = max(peak_state, _state_bytes(optimizer))
            curve.append({"step": step, "time": train_time,
                          "train_loss": sum(losses) / len(losses), **problem.evaluate(),
                          **_diagnostics(optimizer)})
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


def warm_up(spec: TaskSpec, method: Method, seed: int, steps: int = WARMUP_STEPS) -> None:
    """Untimed: build the task's problem and the optimizer and take ``steps`` training steps
    (at most the run's), so that one-time costs of the process (lazy initialization, first
    kernel calls, caches, compilation) are paid before a timed run.

    It trains its own copy, built from ``seed`` like the run's, and restores the global
    random generators (torch's, numpy's, Python's) afterwards: the run that follows records
    the same losses as without it.

    Raises:
        TypeError, ValueError: as :func:`run_one`.
    """
    _check_run(spec, method, seed)
    check_int("warm_up", "steps", steps, low=0)
    state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            problem = get_task(spec.name).build(seed, batch_size=spec.batch_size)
            params = [p for p in problem.model.parameters() if p.requires_grad]
            optimizer = method.build(params, spec.name)
            for _ in range(min(steps, spec.steps)):
                optimizer.zero_grad(set_to_none=True)
                loss, logits = problem.train_outputs()
                _backward(optimizer, loss, logits)
                try:
                    optimizer.step()
                except NonFiniteError:  # the run records it; nothing to warm beyond
                    break
    finally:
        np.random.set_state(state[0])
        random.setstate(state[1])


def _check_run(spec: TaskSpec, method: Method, seed: int) -> None:
    """A run's arguments: a task spec, a method and a seed (``[0, 2**63 - 1]``)."""
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"run_one: spec must be a TaskSpec, got {show(spec)}")
    if not isinstance(method, Method):
        raise TypeError(f"run_one: method must be a Method, got {show(method)}")
    check_seed("run_one", "seed", seed)
    method.lr_for(spec.name)  # a ValueError if the method has no learning rate for the task


def check_directory(directory: Path, suite: Suite, fresh: bool = False) -> None:
    """Check, changing nothing, that ``directory`` can hold ``suite``'s results: it is a
    directory (or does not exist yet) and, unless ``fresh``, its ``suite.json`` (if any) reads
    back and names the same suite with the same overrides.

    Raises:
        NotADirectoryError: ``directory`` or its ``runs`` is a file.
        DamagedFileError: ``suite.json`` cannot be read back (and not ``fresh``).
        FileExistsError: ``directory`` holds another suite's results, or the suite's with other
            overrides (and not ``fresh``).
    """
    directory = Path(directory)
    for path in (directory, directory / "runs"):
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"results directory {directory}: {path} is a file, not a "
                                     f"directory; choose another output directory")
    marker = directory / SUITE_FILE
    if fresh or not marker.exists():
        return
    held = read_suite_file(marker, recover="delete it (the run records stay, and resume), or "
                                           "start the directory over with --fresh")
    if held.name != suite.name:
        raise FileExistsError(
            f"results directory {directory} holds the results of suite {held.name!r}, not "
            f"{suite.name!r}: choose another output directory (--out), or start this one over "
            f"with --fresh")
    if held.overrides != suite.overrides:
        raise FileExistsError(
            f"results directory {directory} holds suite {suite.name!r} run with "
            f"{held.overrides.describe()}, not with {suite.overrides.describe()} (another "
            f"study): choose another output directory (--out), run with the same overrides, "
            f"or start this one over with --fresh")


def _discard(directory: Path) -> None:
    """Delete what a suite left in ``directory``: its description and its run records (those
    set aside too); other files are kept."""
    (directory / SUITE_FILE).unlink(missing_ok=True)
    runs = directory / "runs"
    for pattern in ("*__seed*.json", "*__seed*.json.damaged*", "*__seed*.json.outdated*"):
        for path in runs.glob(pattern):
            if path.is_file():
                path.unlink()


def differences(record: dict[str, Any], spec: TaskSpec, method: Method) -> list[str]:
    """What differs between a (checked) record's configuration and the run's, as
    ``key: old -> new``; empty if the record is of this configuration."""
    now = {"steps": spec.steps, **{f"method.{k}": v for k, v in method.as_dict().items()}}
    then = {"steps": record["steps"],
            **{f"method.{k}": v for k, v in record["method"].items()}}
    return [f"{key}: {show(then.get(key), 40)} -> {show(now.get(key), 40)}"
            for key in sorted(set(now) | set(then)) if then.get(key) != now.get(key)]


def _resume(path: Path, spec: TaskSpec, method: Method, seed: int) -> dict[str, Any] | None:
    """The finished record of this run at ``path``, or ``None`` if the run must be made: there
    is no record, or it is damaged or outdated (then it is reported and moved aside)."""
    if not path.exists():
        return None
    recover = "moved aside"
    try:
        record = read_json(path, what=RECORD, recover=recover)
        schema = record.get("schema")
        if isinstance(schema, int) and not isinstance(schema, bool) and schema != SCHEMA:
            return _outdated(path, [f"schema: {schema} -> {SCHEMA}"])
        check_record(record, path, recover)
        _check_identity(record, path, spec, method, seed, recover)
        if record["complete"] is not True:
            raise damaged(path, RECORD, "it is not marked complete", recover)
    except DamagedFileError as error:
        target = set_aside(path, "damaged")
        _log.warning("%s as %s; running it again", error, target.name)
        return None
    changed = differences(record, spec, method)
    return _outdated(path, changed) if changed else record


def _check_identity(record: dict[str, Any], path: Path, spec: TaskSpec, method: Method,
                    seed: int, recover: str) -> None:
    """The record is of the run its file is named for."""
    held = (record["task"], record["method"]["label"], record["seed"])
    if held != (spec.label, method.label, seed):
        raise damaged(path, RECORD, f"it holds the run {held[0]} / {held[1]} / seed {held[2]}, "
                      f"not {spec.label} / {method.label} / seed {seed} as its name says",
                      recover)


def _outdated(path: Path, differences: list[str]) -> None:
    target = set_aside(path, "outdated")
    _log.warning("run record %s was made with another configuration (%s); moved aside as %s; "
                 "running it again", path, "; ".join(differences), target.name)
    return None


def run_suite(suite: Suite, directory: Path, on_run: Callable[[int, int, str], None] | None = None,
              on_step: StepCallback | None = None, *, fresh: bool = False,
              shard: Shard | None = None) -> list[dict[str, Any]]:
    """Run every (task, method, seed) of ``suite`` (of its ``shard``, if given) not already
    finished in ``directory``.

    ``on_run(done, total, name)`` is called before each run (and once at the end, with
    ``done == total`` and name ``"done"``); ``on_step(step, steps)`` after each training step.
    A damaged or outdated record is reported (a logged warning), moved aside and its run
    repeated. ``fresh`` deletes the records already in ``directory`` first (every shard's).
    Runs use ``suite.overrides.threads`` torch threads where set. Returns the records of the
    suite's runs (of the shard's).

    Raises:
        TypeError: ``suite`` is not a :class:`Suite` or ``shard`` not a :class:`Shard`.
        NotADirectoryError, DamagedFileError, FileExistsError: see :func:`check_directory`
            (before anything is written).
    """
    if not isinstance(suite, Suite):
        raise TypeError(f"run_suite: suite must be a Suite, got {show(suite)}")
    if shard is not None and not isinstance(shard, Shard):
        raise TypeError(f"run_suite: shard must be a Shard or None, got {show(shard)}")
    directory = Path(directory)
    check_directory(directory, suite, fresh)
    if fresh:
        _discard(directory)
    write_json_atomic(directory / SUITE_FILE, suite.as_dict())
    runs = suite.runs() if shard is None else shard.select(suite.runs())
    records, warm = [], set()
    with _threads(suite.overrides.threads):
        for index, (spec, method, seed) in enumerate(runs):
            path = run_path(directory, spec.label, method.label, seed)
            if on_run:
                on_run(index, len(runs), f"{spec.label} / {method.label} / seed {seed}")
            record = _resume(path, spec, method, seed)
            if record is None:
                if (spec.label, method.label) not in warm:
                    warm_up(spec, method, seed)
                    warm.add((spec.label, method.label))
                record = run_one(spec, method, seed, on_step)
                write_json_atomic(path, record)
            records.append(record)
    if on_run:
        on_run(len(runs), len(runs), "done")
    return records


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block (unchanged if ``None``)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
