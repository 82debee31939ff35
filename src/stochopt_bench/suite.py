"""Suites: tasks x methods x seeds, from a built-in name or a TOML/YAML file.

Schema (TOML shown; YAML has the same keys)::

    name = "my-suite"                  # required: names the results directory
    description = "..."                # optional
    seeds = [0, 1, 2]                  # optional, default [0]; integers in [0, 2**63 - 1]
    tasks = ["charlm", { name = "digits-cnn", steps = 200 }]

    [methods.adamw]                    # the table name is the method's label
    optimizer = "torch.AdamW"          # see `stochopt list`
    lr = { charlm = 3e-3, digits-cnn = 3e-3 }   # or one number for every task
    weight_decay = 0.01                # any other key is passed to the optimizer
    schedule = { kind = "cosine", warmup = 20 } # optional: constant, linear, cosine, step, refined

A task may also set ``batch_size`` (tasks with minibatches); its runs are then labelled
``name@batch``. A schedule's ``warmup`` is a number of steps shorter than every task's run;
``final`` (cosine) is a fraction of the peak in [0, 1]; ``milestones`` (step) are increasing
fractions of the run in (0, 1) and ``gamma`` > 0; ``shape`` (refined) is a list of values
>= 0.

Every problem is reported before anything runs, naming the key and the allowed values: the
types and ranges of every entry, unknown keys, and each method's optimizer options (each
optimizer is built, with each of its learning rates, on a dummy parameter; torch's take a
step too, since their constructors leave some flags unchecked; Sophia-G, whose estimate needs
logits, only on tasks that give them).
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from stochopt._checks import check_int, check_real, check_seed, show
from stochopt._io import damaged, read_json
from stochopt.errors import StochoptError
from stochopt.tasks import TASKS
from stochopt_bench.methods import OPTIMIZERS, SCHEDULES, Method, build_schedule
from stochopt_bench.overrides import Overrides

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["BUILTIN_SUITES", "SUITE_FILE", "Suite", "SuiteError", "TaskSpec", "apply_overrides",
           "load_suite", "parse_suite", "read_suite_file"]

SUITES_DIR = Path(__file__).parent / "suites"
BUILTIN_SUITES = {p.stem: p for p in sorted(SUITES_DIR.glob("*.toml"))}
#: the file a results directory keeps its suite in
SUITE_FILE = "suite.json"
_TOP_KEYS = ("name", "description", "seeds", "tasks", "methods")
_TASK_KEYS = ("name", "steps", "batch_size")


class SuiteError(ValueError):
    """A suite file or mapping that does not follow the schema."""


@dataclass(frozen=True)
class TaskSpec:
    """A task of a suite: its name, the steps of each run and an optional batch size."""

    name: str
    steps: int
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name not in TASKS:
            raise ValueError(f"TaskSpec: unknown task {show(self.name)}; available: "
                             f"{', '.join(TASKS)}")
        check_int("TaskSpec", "steps", self.steps)
        if self.batch_size is not None:
            if TASKS[self.name].batch_size is None:
                raise ValueError(f"TaskSpec: batch_size must be None for {self.name} (it has "
                                 f"no minibatches), got {show(self.batch_size)}")
            check_int("TaskSpec", "batch_size", self.batch_size)

    @property
    def label(self) -> str:
        """The task's name, with ``@batch`` when the suite sets a batch size."""
        return self.name if self.batch_size is None else f"{self.name}@{self.batch_size}"


@dataclass(frozen=True)
class Suite:
    """Tasks x methods x seeds; ``overrides`` records what ``stochopt bench`` changed
    (:func:`apply_overrides`), which makes it another study than the suite as written."""

    name: str
    description: str
    seeds: tuple[int, ...]
    tasks: tuple[TaskSpec, ...]
    methods: tuple[Method, ...]
    overrides: Overrides = field(default_factory=Overrides)

    def __post_init__(self) -> None:
        """A suite built by hand is checked too (:func:`parse_suite` checks far more)."""
        if _bad_name(self.name):
            raise ValueError(f"Suite: name must be {_NAME_RULE}, got {show(self.name)}")
        for i, seed in enumerate(self.seeds):
            check_seed("Suite", f"seeds[{i}]", seed)
        kinds = (("tasks", self.tasks, TaskSpec), ("methods", self.methods, Method))
        for entry, values, kind in kinds:
            if not isinstance(values, tuple) or not values \
                    or not all(isinstance(v, kind) for v in values):
                raise TypeError(f"Suite: {entry} must be a non-empty tuple of "
                                f"{kind.__name__}, got {show(values)}")
        if not isinstance(self.overrides, Overrides):
            raise TypeError(f"Suite: overrides must be an Overrides, got {show(self.overrides)}")

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
                            for m in self.methods}} \
            | ({"overrides": self.overrides.as_dict()} if self.overrides else {})


def _fail(source: str, where: str, problem: str) -> SuiteError:
    return SuiteError(f"suite {source}: {where}: {problem}")


def _check(check: Callable[..., Any], source: str, where: str, value: Any, **bounds: Any) -> Any:
    """One of the :mod:`stochopt._checks` checks, failing with a :class:`SuiteError` that
    names the key (``suite <source>: <where>: must be ...``)."""
    try:
        return check(f"suite {source}", f"{where}:", value, **bounds)
    except (TypeError, ValueError) as error:
        raise SuiteError(str(error)) from None


#: what a name that becomes part of a path (the suite's, a method's label) may be
_NAME_RULE = "a non-empty string without '/' or '\\' (and not '.' or '..')"


def _bad_name(value: Any) -> bool:
    return (not isinstance(value, str) or not value.strip() or value in (".", "..")
            or any(c in value for c in "/\\\0"))


def _check_name(value: Any, source: str, where: str) -> str:
    """A name that becomes part of a path, checked (see ``_NAME_RULE``)."""
    if _bad_name(value):
        raise _fail(source, where, f"must be {_NAME_RULE}, got {show(value)}")
    return value


def _parse_seeds(raw: Any, source: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(source, "seeds", f"must be a non-empty list of integers, got {show(raw)}")
    seeds = tuple(_check(check_seed, source, f"seeds[{i}]", s) for i, s in enumerate(raw))
    for i, seed in enumerate(seeds):
        if seed in seeds[:i]:
            raise _fail(source, f"seeds[{i}]", f"repeats seed {seed}")
    return seeds


def _parse_task(i: int, item: Any, source: str) -> TaskSpec:
    entry = {"name": item} if isinstance(item, str) else item
    if not isinstance(entry, dict):
        raise _fail(source, f"tasks[{i}]", f"must be a task name or a table, got {show(item)}")
    for key in entry:
        if key not in _TASK_KEYS:
            raise _fail(source, f"tasks[{i}]", f"unknown key {key!r}; allowed: "
                                               f"{', '.join(_TASK_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or name not in TASKS:
        raise _fail(source, f"tasks[{i}].name", f"unknown task {show(name)}; available: "
                                                f"{', '.join(TASKS)}")
    steps = _check(check_int, source, f"tasks[{i}].steps",
                   entry.get("steps", TASKS[name].default_steps))
    batch = entry.get("batch_size")
    if batch is not None and TASKS[name].batch_size is None:
        raise _fail(source, f"tasks[{i}].batch_size", f"must be a positive integer for a task "
                                                      f"with minibatches, got {show(batch)} "
                                                      f"(task {name} has none)")
    if batch is not None:
        batch = _check(check_int, source, f"tasks[{i}].batch_size", batch)
    return TaskSpec(name, steps, batch)


def _parse_tasks(raw: Any, source: str) -> tuple[TaskSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail(source, "tasks", f"must be a non-empty list, got {show(raw)}")
    specs = tuple(_parse_task(i, item, source) for i, item in enumerate(raw))
    labels = [spec.label for spec in specs]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise _fail(source, f"tasks[{i}]", f"repeats task {label!r} (tasks"
                                               f"[{labels.index(label)}]); give each task once")
    return specs


def _parse_lr(raw: Any, where: str, tasks: tuple[TaskSpec, ...],
              source: str) -> float | dict[str, float]:
    """A learning rate: a number, or a table by task name covering the suite's tasks."""
    if not isinstance(raw, dict):
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise _fail(source, where, f"must be a number, or a table by task name, got "
                                       f"{show(raw)}")
        return raw
    for key, value in raw.items():
        if key not in TASKS:
            raise _fail(source, f"{where}.{key}", f"unknown task; available: {', '.join(TASKS)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(source, f"{where}.{key}", f"must be a number, got {show(value)}")
    missing = [t.name for t in tasks if t.name not in raw]
    if missing:
        raise _fail(source, where, f"has no entry for task {missing[0]!r}; it gives: "
                                   f"{', '.join(raw) or 'nothing'}")
    return dict(raw)


def _parse_options(options: dict[str, Any], name: str, where: str,
                   source: str) -> dict[str, Any]:
    """The optimizer's keyword arguments: known to it, and values a record can hold (JSON;
    tuples become lists, as they do in a record read back)."""
    allowed = [p for p in _signature(name) if p not in ("self", "params", "lr")]
    parsed = {}
    for key, value in options.items():
        if key not in allowed:
            raise _fail(source, f"{where}.{key}", f"is not an option of {name}; allowed: "
                                                  f"{', '.join(allowed)}")
        try:
            parsed[key] = json.loads(json.dumps(value))
        except (TypeError, ValueError, RecursionError):
            raise _fail(source, f"{where}.{key}", f"must be a number, string, boolean or a list "
                                                  f"of them, got {show(value)}") from None
        if _has_nan(parsed[key]):  # a record could never be matched to its run again
            raise _fail(source, f"{where}.{key}", f"must not be NaN, got {show(value)}")
    return parsed


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value
    if isinstance(value, list | dict):
        return any(_has_nan(v) for v in (value.values() if isinstance(value, dict) else value))
    return False


def _signature(name: str) -> list[str]:
    return list(inspect.signature(OPTIMIZERS[name]).parameters)


def _parse_method(label: Any, raw: Any, tasks: tuple[TaskSpec, ...], source: str) -> Method:
    where = f"methods.{label}" if isinstance(label, str) and label else f"methods.{show(label)}"
    _check_name(label, source, where)
    if not isinstance(raw, dict):
        raise _fail(source, where, f"must be a table, got {show(raw)}")
    options = dict(raw)
    name = options.pop("optimizer", None)
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise _fail(source, f"{where}.optimizer", f"unknown optimizer {show(name)}; available: "
                                                  f"{', '.join(OPTIMIZERS)}")
    if "lr" not in options:
        raise _fail(source, f"{where}.lr", "is required (a number, or a table by task name)")
    lr = _parse_lr(options.pop("lr"), f"{where}.lr", tasks, source)
    schedule = _parse_schedule(options.pop("schedule", None), f"{where}.schedule", tasks,
                               source)
    method = Method(label, name, lr, _parse_options(options, name, where, source), schedule)
    _try_method(method, tasks, where, source)
    return method


def _try_method(method: Method, tasks: tuple[TaskSpec, ...], where: str, source: str) -> None:
    """Let the optimizer and the schedule check their own arguments, before anything runs:
    build each with each learning rate, the optimizer on a dummy parameter (torch's take a step
    too: their constructors leave flags such as ``capturable`` unchecked), and an optimizer
    whose curvature estimate resamples labels from the logits (Sophia-G's Gauss-Newton-Bartlett)
    only on tasks that give logits."""
    if getattr(OPTIMIZERS[method.optimizer], "estimator", None) == "gnb":
        without = [t.label for t in tasks if not TASKS[t.name].logits]
        if without:
            able = ", ".join(n for n, task in TASKS.items() if task.logits)
            raise _fail(source, where, f"{method.optimizer} needs the logits of a classification "
                                       f"or language model (its Gauss-Newton-Bartlett estimate "
                                       f"resamples labels from them), but task {without[0]} "
                                       f"gives none; use it on tasks with logits ({able}) or "
                                       f"choose SophiaH")
    lrs = method.lr if isinstance(method.lr, dict) else {t.name: method.lr for t in tasks}
    for lr in lrs.values():
        param = torch.zeros(2, requires_grad=True)
        try:
            optimizer = OPTIMIZERS[method.optimizer]([param], lr=lr, **method.options)
            if method.optimizer.startswith("torch."):
                param.grad = torch.zeros_like(param)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    optimizer.step()
        except (TypeError, ValueError, RuntimeError, AssertionError, StochoptError) as error:
            raise _fail(source, where, str(error) or type(error).__name__) from None
    for spec in tasks if method.schedule is not None else ():
        try:
            build_schedule(method.schedule, method.lr_for(spec.name), spec.steps)
        except (TypeError, ValueError) as error:
            raise _fail(source, f"{where}.schedule", f"{error} (task {spec.label}, "
                                                     f"{spec.steps} steps)") from None


def _parse_schedule(raw: Any, where: str, tasks: tuple[TaskSpec, ...],
                    source: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str) \
            or raw["kind"] not in SCHEDULES:
        raise _fail(source, where, f"must be a table with kind one of {', '.join(SCHEDULES)}, "
                                   f"got {show(raw)}")
    allowed = ("kind", "warmup", *SCHEDULES[raw["kind"]])
    for key in raw:
        if key not in allowed:
            raise _fail(source, f"{where}.{key}", f"unknown key; allowed: {', '.join(allowed)}")
    warmup = _check(check_int, source, f"{where}.warmup", raw.get("warmup", 0), low=0)
    shortest = min(tasks, key=lambda t: t.steps)
    if warmup >= shortest.steps:
        raise _fail(source, f"{where}.warmup", f"must be less than the steps of every task, got "
                                               f"{warmup} (task {shortest.label} has "
                                               f"{shortest.steps} steps)")
    if "final" in raw:
        _check(check_real, source, f"{where}.final", raw["final"], low=0.0, low_open=False,
               high=1.0, high_open=False)
    if "gamma" in raw:
        _check(check_real, source, f"{where}.gamma", raw["gamma"])
    if "milestones" in raw:
        _fractions(raw["milestones"], f"{where}.milestones", source)
    if raw["kind"] == "refined":
        shape = raw.get("shape")
        if not isinstance(shape, list) or not shape:
            raise _fail(source, f"{where}.shape", f"is required: a non-empty list of values "
                                                  f">= 0, got {show(shape)}")
        for i, value in enumerate(shape):
            _check(check_real, source, f"{where}.shape[{i}]", value, low=0.0, low_open=False)
    return json.loads(json.dumps(raw))


def _fractions(raw: Any, where: str, source: str) -> None:
    """Increasing fractions of the run, each in (0, 1)."""
    if not isinstance(raw, list) or not raw:
        raise _fail(source, where, f"must be a non-empty list of fractions of the run, got "
                                   f"{show(raw)}")
    for i, value in enumerate(raw):
        _check(check_real, source, f"{where}[{i}]", value, high=1.0)
        if i and value <= raw[i - 1]:
            raise _fail(source, f"{where}[{i}]", f"must be greater than {where}[{i - 1}] "
                                                 f"(increasing), got {value!r}")


def parse_suite(data: Any, source: str = "<mapping>") -> Suite:
    """Validate a suite mapping (as read from TOML or YAML) and build the :class:`Suite`.

    Raises:
        SuiteError: naming ``source``, the key at fault, the bad value and what is allowed.
    """
    if not isinstance(data, dict):
        raise SuiteError(f"suite {source}: must be a table of keys, got {type(data).__name__}")
    for key in data:
        if key not in _TOP_KEYS:
            shown = key if isinstance(key, str) and key.isprintable() else show(key)
            raise _fail(source, shown, f"unknown key; allowed: {', '.join(_TOP_KEYS)}")
    name = _check_name(data.get("name"), source, "name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, "description", f"must be a string, got {show(description)}")
    seeds = _parse_seeds(data.get("seeds", [0]), source)
    tasks = _parse_tasks(data.get("tasks"), source)
    methods = data.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise _fail(source, "methods", f"must be a non-empty table of labelled methods, got "
                                       f"{show(methods)}")
    parsed = tuple(_parse_method(label, raw, tasks, source) for label, raw in methods.items())
    return Suite(name, description, seeds, tasks, parsed)


def apply_overrides(suite: Suite, overrides: Overrides) -> Suite:
    """``suite`` with ``overrides`` applied and recorded, checked again as a whole (a
    schedule's warm-up against the new steps, each optimizer with its learning rates).

    Raises:
        TypeError: ``suite`` is not a :class:`Suite` or ``overrides`` not an
            :class:`~stochopt_bench.overrides.Overrides`.
        SuiteError: ``suite`` has overrides already, ``overrides.methods`` names a method the
            suite does not have (the message lists its methods), or the suite is not valid
            with the overrides (naming the flag and the key at fault).
    """
    if not isinstance(suite, Suite):
        raise TypeError(f"apply_overrides: suite must be a Suite, got {show(suite)}")
    if not isinstance(overrides, Overrides):
        raise TypeError(f"apply_overrides: overrides must be an Overrides, got "
                        f"{show(overrides)}")
    if suite.overrides:
        raise SuiteError(f"suite {suite.name}: has overrides already ("
                         f"{suite.overrides.describe()}); apply overrides to the suite as "
                         f"loaded")
    labels = [m.label for m in suite.methods]
    for label in overrides.methods or ():
        if label not in labels:
            raise SuiteError(f"--methods: suite {suite.name} has no method {label!r}; its "
                             f"methods: {', '.join(labels)}")
    data = suite.as_dict()
    if overrides.steps is not None:
        data["tasks"] = [task | {"steps": overrides.steps} for task in data["tasks"]]
    if overrides.methods is not None:
        data["methods"] = {k: v for k, v in data["methods"].items() if k in overrides.methods}
    changed = parse_suite(data, f"{suite.name} with {overrides.describe()}")
    return replace(changed, overrides=overrides)


def load_suite(spec: str) -> Suite:
    """A built-in suite by name, or a suite file (``.toml``, ``.yaml``, ``.yml``) by path.

    Raises:
        SuiteError: ``spec`` names no built-in suite and no readable suite file, the file is
            not valid TOML/YAML, or the suite does not follow the schema (see
            :func:`parse_suite`).
    """
    if not isinstance(spec, str | Path):
        raise TypeError(f"load_suite: spec must be a suite name or a path, got {show(spec)}")
    path = BUILTIN_SUITES.get(str(spec), Path(spec))
    if path.is_dir():
        raise SuiteError(f"suite {path}: is a directory, not a suite file")
    if not path.is_file():
        raise SuiteError(f"suite {str(spec)!r}: not a built-in suite "
                         f"({', '.join(BUILTIN_SUITES)}) and no such file")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise SuiteError(f"suite {path}: unknown file type {path.suffix!r}; use .toml, .yaml "
                         f"or .yml")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise SuiteError(f"suite {path}: cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise SuiteError(f"suite {path}: is not UTF-8 text ({error.reason})") from None
    return parse_suite(_parse_text(text, path), str(path))


def _parse_text(text: str, path: Path) -> Any:
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise SuiteError(f"suite {path}: not valid TOML: {error}") from None
    try:
        import yaml
    except ImportError:
        raise SuiteError(f"suite {path}: reading YAML needs PyYAML (pip install pyyaml); or "
                         f"write the suite in TOML") from None
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SuiteError(f"suite {path}: not valid YAML: {problem}{where}") from None


def read_suite_file(path: Path, recover: str) -> Suite:
    """The suite a results directory's ``suite.json`` describes.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DamagedFileError: the file is not JSON, truncated, or not a valid suite; the message
            names the file, what is wrong and ``recover``.
    """
    data = read_json(path, what="suite description", recover=recover)
    try:
        overrides = Overrides.from_dict(data.pop("overrides", {}))
    except (TypeError, ValueError) as error:
        raise damaged(path, "suite description", f"its 'overrides' entry is not valid ("
                      f"{error})", recover) from None
    try:
        return replace(parse_suite(data, str(path)), overrides=overrides)
    except SuiteError as error:
        problem = str(error).removeprefix(f"suite {path}: ")
        raise damaged(path, "suite description", problem, recover) from None
