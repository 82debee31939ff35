"""What a task is: a seeded problem with a training loss, a validation split and a metric."""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from stochopt._checks import check_int, check_real, check_seed, show

__all__ = ["Metric", "Problem", "Task"]


@dataclass(frozen=True)
class Metric:
    """A task's headline validation metric and the value that counts as reaching the target."""

    name: str
    higher_is_better: bool
    target: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Metric: name must be a non-empty string, got {show(self.name)}")
        if not isinstance(self.higher_is_better, bool):
            raise TypeError(f"Metric: higher_is_better must be a bool, got "
                            f"{show(self.higher_is_better)}")
        check_real("Metric", "target", self.target, low=-math.inf)

    def reached(self, value: float) -> bool:
        """Whether ``value`` (a real number; NaN never reaches) meets the target."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"Metric.reached: value must be a real number, got {show(value)}")
        return value >= self.target if self.higher_is_better else value <= self.target


class Problem(ABC):
    """One seeded instance of a task: a model to train, its batches and its evaluation."""

    model: nn.Module

    @abstractmethod
    def train_outputs(self) -> tuple[Tensor, Tensor | None]:
        """Draw the next training batch; return its loss (a scalar with a graph) and, for
        classification and language models, the logits ``(..., V)`` it was computed from
        (curvature estimators such as Gauss-Newton-Bartlett need them), else ``None``."""

    def train_loss(self) -> Tensor:
        """Draw the next training batch and return its loss."""
        return self.train_outputs()[0]

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Validation figures, including ``val_loss`` and the task's metric."""


class Task(ABC):
    """A named, deterministic problem family; :meth:`build` makes a seeded instance.

    The same seed gives the same initial model, the same batches and the same losses. The
    train/validation split is fixed by the task, not by the seed.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    metric: ClassVar[Metric]
    default_steps: ClassVar[int]
    eval_every: ClassVar[int]
    #: the default minibatch size; ``None`` for tasks without minibatches
    batch_size: ClassVar[int | None] = None
    #: whether :meth:`Problem.train_outputs` returns logits (multi-class classification and
    #: language models), which curvature estimates that resample labels (Sophia-G's) need
    logits: ClassVar[bool] = False

    @abstractmethod
    def build(self, seed: int, batch_size: int | None = None) -> Problem:
        """A fresh problem whose model initialization and batch order depend on ``seed``;
        ``batch_size`` overrides the task's default where it has minibatches."""

    def check_build(self, seed: int, batch_size: int | None) -> tuple[int, int | None]:
        """:meth:`build`'s arguments, checked: ``seed`` an integer in ``[0, 2**63 - 1]``,
        ``batch_size`` None or an integer >= 1 (None only, for a task without minibatches);
        returns the seed and the batch size to use."""
        owner = f"{type(self).__name__}({self.name!r}).build"
        seed = check_seed(owner, "seed", seed)
        if batch_size is None:
            return seed, self.batch_size
        if self.batch_size is None:
            raise ValueError(f"{owner}: batch_size must be None (the task has no minibatches), "
                             f"got {show(batch_size)}")
        return seed, check_int(owner, "batch_size", batch_size)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator for the block (layer initializers draw from it) and
    restore the caller's generator state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def fixed_split(n: int, n_val: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Train and validation indices of a fixed random split of ``n`` examples."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:], order[:n_val]


class BatchStream:
    """Endless minibatches of indices: a new seeded permutation each epoch."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._batches: list[Tensor] = []

    def next(self) -> Tensor:
        if not self._batches:
            order = torch.randperm(self.n, generator=self.generator)
            self._batches = list(order.split(self.batch_size))[::-1]
        return self._batches.pop()
