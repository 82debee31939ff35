"""Embedded problems: seeded, deterministic tasks built only from data that ships with the
project or its dependencies (scikit-learn's bundled sets, Python's ``pydoc_data``, synthetic).

``TASKS`` maps each task's name to an instance; ``get_task(name)`` looks one up, with a
``ValueError`` listing the available names for an unknown one. The classification tasks need
scikit-learn (the ``bench`` extra).
"""

from __future__ import annotations

from stochopt.tasks._base import Metric, Problem, Task
from stochopt.tasks.bo_functions import Ackley, Branin, Hartmann6, Levy, Michalewicz
from stochopt.tasks.charlm import CharLM, CharLMStable, unigram_entropy
from stochopt.tasks.classification import BreastCancerLogReg, DigitsCNN, DigitsMLP
from stochopt.tasks.functions import (
    Beale,
    FunctionTask,
    IllConditionedQuadratic,
    Rastrigin,
    Rosenbrock,
    TestFunction,
)

__all__ = [
    "TASKS",
    "Ackley",
    "Beale",
    "Branin",
    "BreastCancerLogReg",
    "CharLM",
    "CharLMStable",
    "DigitsCNN",
    "DigitsMLP",
    "FunctionTask",
    "Hartmann6",
    "IllConditionedQuadratic",
    "Levy",
    "Metric",
    "Michalewicz",
    "Problem",
    "Rastrigin",
    "Rosenbrock",
    "Task",
    "TestFunction",
    "get_task",
    "unigram_entropy",
]

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        DigitsMLP(),
        DigitsCNN(),
        BreastCancerLogReg(),
        CharLM(),
        CharLMStable(),
        FunctionTask("rosenbrock", Rosenbrock(), start=[-1.5, 2.0]),
        FunctionTask("beale", Beale(), start=[1.0, 1.0]),
        FunctionTask("rastrigin", Rastrigin(dim=4), start=[2.2, -1.7, 3.1, 0.6]),
        FunctionTask("quadratic", IllConditionedQuadratic(dim=20, condition=1e3),
                     start=[0.0] * 20, noise=0.0),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: no task has that name (the message lists the available ones).
    """
    if not isinstance(name, str):
        raise TypeError(f"get_task: name must be a string, got {name!r}")
    if name not in TASKS:
        raise ValueError(f"get_task: unknown task {name!r}; available: {', '.join(TASKS)}")
    return TASKS[name]
