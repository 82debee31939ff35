"""Suites: tasks x methods x seeds, from a built-in name or a TOML/YAML file.

Schema (TOML shown; YAML has the same keys)::

    name = "my-suite"                  # required: names the results directory
    description = "..."                # optional
    seeds = [0, 1, 2]                  # optional, default [0]
    tasks = ["charlm", { name = "digits-cnn", steps = 200 }]

    [methods.adamw]                    # the table name is the method's label
    optimizer = "torch.AdamW"          # see `stochopt list`
    lr = { charlm = 3e-3, digits-cnn = 3e-3 }   # or one number for every task
    weight_decay = 0.01                # any other key is passed to the optimizer
    schedule = { kind = "cosine", warmup = 20 } # optional: constant, linear, cosine, step, refined

A task may also set ``batch_size`` (tasks with minibatches); its runs are then labelled
``name@batch``.

Every problem is reported before anything runs, naming the key and the allowed values.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stochopt.tasks import TASKS
from stochopt_bench.methods import OPTIMIZERS, SCHEDULES, Method

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["BUILTIN_SUITES", "Suite", "SuiteError", "TaskSpec", "load_suite", "parse_suite"]

SUITES_DIR = Path(__file__).parent / "suites"
BUILTIN_SUITES = {p.stem: p for p in sorted(SUITES_DIR.glob("*.toml"))}
_TOP_KEYS = ("name", "description", "seeds", "tasks", "methods")
_TASK_KEYS = ("name", "steps", "batch_size")


class SuiteError(ValueError):
    """A suite file or mapping that does not follow the schema."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    steps: int
    batch_size: int | None = None

    @property
    def label(self) -> str:
        """The task's name, with ``@batch`` when the suite sets a batch size."""
        return self.name if self.batch_size is None else f"{self.name}@{self.batch_size}"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    seeds: tuple[int, ...]
    tasks: tuple[TaskSpec, ...]
    methods: tuple[Method, ...]

    def runs(self) -> list[tuple[TaskSpec, Method, int]]:
        """Every (task, method, seed) of the suite, tasks outermost."""
        return [(t, m, s) for t in self.tasks for m in self.methods for s in self.seeds]

    def as_dict(self) -> dict[str, Any]:
        tasks = [{"name": t.name, "steps": t.steps}
                 | ({} if t.batch_size is None else {"batch_size": t.batch_size})
                 for t in self.tasks]
        return {"name": self.name, "description": self.description, "seeds": list(self.seeds),
                "tasks": tasks,
                "methods": {m.label: {"optimizer": m.optimizer, "lr": m.lr, **m.options}
                            | ({} if m.schedule is None else {"schedule": m.schedule})
                            for m in self.methods}}


def _fail(source: str, where: str, problem: str) -> SuiteError:
    return SuiteError(f"suite {source}: {where}: {problem}")


def _parse_tasks(raw: Any, source: str) -> tuple[TaskSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(source, "tasks", f"must be a non-empty list, got {raw!r}")
    specs = []
    for i, item in enumerate(raw):
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict):
            raise _fail(source, f"tasks[{i}]", f"must be a task name or a table, got {item!r}")
        for key in entry:
            if key not in _TASK_KEYS:
                raise _fail(source, f"tasks[{i}]", f"unknown key {key!r}; allowed: "
                                                   f"{', '.join(_TASK_KEYS)}")
        name = entry.get("name")
        if name not in TASKS:
            raise _fail(source, f"tasks[{i}].name", f"unknown task {name!r}; available: "
                                                    f"{', '.join(TASKS)}")
        steps = entry.get("steps", TASKS[name].default_steps)
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise _fail(source, f"tasks[{i}].steps", f"must be a positive integer, got {steps!r}")
        batch = entry.get("batch_size")
        if batch is not None and (TASKS[name].batch_size is None or not isinstance(batch, int)
                                  or isinstance(batch, bool) or batch < 1):
            raise _fail(source, f"tasks[{i}].batch_size", f"must be a positive integer for a task "
                                                          f"with minibatches, got {batch!r}")
        specs.append(TaskSpec(name, steps, batch))
    return tuple(specs)


def _parse_method(label: str, raw: Any, tasks: tuple[TaskSpec, ...], source: str) -> Method:
    where = f"methods.{label}"
    if not isinstance(raw, dict):
        raise _fail(source, where, f"must be a table, got {raw!r}")
    options = dict(raw)
    schedule = _parse_schedule(options.pop("schedule", None), f"{where}.schedule", source)
    name = options.pop("optimizer", None)
    if name not in OPTIMIZERS:
        raise _fail(source, f"{where}.optimizer", f"unknown optimizer {name!r}; available: "
                                                  f"{', '.join(OPTIMIZERS)}")
    if "lr" not in options:
        raise _fail(source, f"{where}.lr", "is required (a number, or a table by task name)")
    lr = options.pop("lr")
    if isinstance(lr, dict):
        missing = [t.name for t in tasks if t.name not in lr]
        if missing:
            raise _fail(source, f"{where}.lr", f"has no entry for task {missing[0]!r}; it "
                                               f"gives: {', '.join(lr) or 'nothing'}")
    method = Method(label, name, lr, options, schedule)
    allowed = [p for p in inspect.signature(OPTIMIZERS[name]).parameters if p not in
               ("self", "params", "lr")]
    for key in options:
        if key not in allowed:
            raise _fail(source, f"{where}.{key}", f"is not an option of {name}; allowed: "
                                                  f"{', '.join(allowed)}")
    for task in tasks:  # let the optimizer validate its own arguments, before anything runs
        try:
            method.build([torch.zeros(1, requires_grad=True)], task.name)
        except (TypeError, ValueError) as error:
            raise _fail(source, where, str(error)) from None
    return method


def _parse_schedule(raw: Any, where: str, source: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("kind") not in SCHEDULES:
        raise _fail(source, where, f"must be a table with kind one of {', '.join(SCHEDULES)}, "
                                   f"got {raw!r}")
    allowed = ("kind", "warmup", *SCHEDULES[raw["kind"]])
    for key in raw:
        if key not in allowed:
            raise _fail(source, f"{where}.{key}", f"unknown key; allowed: {', '.join(allowed)}")
    return dict(raw)


def parse_suite(data: Any, source: str = "<mapping>") -> Suite:
    """Validate a suite mapping (as read from TOML or YAML) and build the :class:`Suite`."""
    if not isinstance(data, dict):
        raise SuiteError(f"suite {source}: must be a table of keys, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            raise _fail(source, key, f"unknown key; allowed: {', '.join(_TOP_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise _fail(source, "name", f"must be a non-empty string without '/', got {name!r}")
    seeds = data.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise _fail(source, "seeds", f"must be a non-empty list of integers, got {seeds!r}")
    tasks = _parse_tasks(data.get("tasks"), source)
    methods = data.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise _fail(source, "methods", "must be a non-empty table of labelled methods")
    parsed = tuple(_parse_method(label, raw, tasks, source) for label, raw in methods.items())
    return Suite(name, str(data.get("description", "")), tuple(seeds), tasks, parsed)


def load_suite(spec: str) -> Suite:
    """A built-in suite by name, or a suite file (``.toml``, ``.yaml``, ``.yml``) by path."""
    path = BUILTIN_SUITES.get(spec, Path(spec))
    if not path.is_file():
        raise SuiteError(f"suite {spec!r}: not a built-in suite ({', '.join(BUILTIN_SUITES)}) "
                         f"and no such file")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise SuiteError(f"suite {path}: unknown file type {path.suffix!r}; use .toml, .yaml "
                         f"or .yml")
    kind = "TOML" if path.suffix == ".toml" else "YAML"
    try:
        data = tomllib.loads(path.read_text()) if kind == "TOML" else _load_yaml(path)
    except Exception as error:  # TOMLDecodeError, yaml.YAMLError
        raise SuiteError(f"suite {path}: not valid {kind}: {error}") from None
    return parse_suite(data, str(path))


def _load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())
