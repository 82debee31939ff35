"""Declarative hyperparameters of an optimizer: validation and the namespace the rule reads.

An optimizer lists its hyperparameters once, as specs. The engine uses the list to

* validate every parameter group at construction (``ValueError``/``TypeError`` naming the
  argument, the bad value and the valid range), and
* build, at each step, the namespace ``h`` that the update rule reads: real-valued
  hyperparameters become 0-d tensors (so that a changing learning rate never recompiles the
  fused path), flags and choices stay Python values (they select code, like a paper's variants).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from stochopt._checks import show

__all__ = ["Choice", "Flag", "Integer", "Pair", "Real", "Spec"]


def _interval(low: float, high: float, low_closed: bool, high_closed: bool) -> str:
    """Format an interval as in mathematics, e.g. ``[0, 1)`` or ``(0, inf)``."""

    def fmt(x: float) -> str:
        return f"{x:g}"  # inf and -inf format as themselves

    return f"{'[' if low_closed else '('}{fmt(low)}, {fmt(high)}{']' if high_closed else ')'}"


def _as_real(owner: str, arg: str, value: Any) -> float:
    """The float value of a real hyperparameter given as a number or a one-element tensor."""
    if isinstance(value, bool):
        raise TypeError(f"{owner}: {arg} must be a real number, got the bool {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise TypeError(
                f"{owner}: {arg} given as a tensor must be a floating-point tensor with one "
                f"element, got dtype={value.dtype}, shape={tuple(value.shape)}"
            )
        return float(value.detach().cpu().reshape(()))
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # beyond float64: outside every interval but an infinite one
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value
    kind = type(value).__module__ + "." + type(value).__qualname__
    hint = (f" (a {kind}; pass float(...): only Python numbers and tensors load back from "
            f"a state dict)" if isinstance(value, numbers.Real) else "")
    raise TypeError(f"{owner}: {arg} must be a real number or a 0-d tensor, got "
                    f"{show(value)}{hint}")


class _OneField:
    """A spec whose argument is one field of ``h``, under its own name."""

    name: str

    def fields(self) -> tuple[str, ...]:
        return (self.name,)

    def split(self, value: Any) -> tuple[Any, ...]:
        return (value,)


@dataclass(frozen=True)
class Real(_OneField):
    """A real hyperparameter in an interval; the rule sees it as a 0-d float64 tensor."""

    name: str
    low: float = 0.0
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = False
    static = False

    def check(self, owner: str, value: Any, arg: str | None = None) -> None:
        arg = arg or self.name
        x = _as_real(owner, arg, value)
        above = x >= self.low if self.low_closed else x > self.low
        below = x <= self.high if self.high_closed else x < self.high
        if not (above and below and not math.isnan(x)):
            valid = _interval(self.low, self.high, self.low_closed, self.high_closed)
            shown = repr(value) if isinstance(value, torch.Tensor) else show(value)
            raise ValueError(f"{owner}: {arg} must be in {valid}, got {shown}")


@dataclass(frozen=True)
class Pair:
    """A pair of reals given as one argument (e.g. ``betas``); the rule sees two fields."""

    name: str
    field_names: tuple[str, str]
    low: float = 0.0
    high: float = 1.0
    low_closed: bool = True
    high_closed: bool = False
    static = False

    def fields(self) -> tuple[str, ...]:
        return self.field_names

    def split(self, value: Any) -> tuple[Any, ...]:
        return tuple(value)

    def check(self, owner: str, value: Any) -> None:
        if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
            raise TypeError(f"{owner}: {self.name} must be a pair of reals, got {show(value)}")
        for i, v in enumerate(value):
            element = Real(self.name, self.low, self.high, self.low_closed, self.high_closed)
            element.check(owner, v, arg=f"{self.name}[{i}]")


@dataclass(frozen=True)
class Flag(_OneField):
    """A boolean switch between variants the paper or its official code define."""

    name: str
    static = True

    def check(self, owner: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{owner}: {self.name} must be True or False, got {show(value)}")


@dataclass(frozen=True)
class Integer(_OneField):
    """An integer setting in ``[low, high]`` (e.g. a period in steps; ``high=None``: no upper
    bound); a Python int in ``h``."""

    name: str
    low: int = 1
    high: int | None = None
    static = True

    def check(self, owner: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{owner}: {self.name} must be an integer, got {show(value)}")
        if value < self.low or (self.high is not None and value > self.high):
            upper = "inf)" if self.high is None else f"{self.high}]"
            raise ValueError(f"{owner}: {self.name} must be in [{self.low}, {upper}, got "
                             f"{show(value)}")


@dataclass(frozen=True)
class Choice(_OneField):
    """One of a fixed set of named variants (a string)."""

    name: str
    options: tuple[str, ...]
    static = True

    def check(self, owner: str, value: Any) -> None:
        allowed = ", ".join(repr(o) for o in self.options)
        if not isinstance(value, str):
            raise TypeError(f"{owner}: {self.name} must be one of {allowed}, got {show(value)}")
        if value not in self.options:
            raise ValueError(f"{owner}: {self.name} must be one of {allowed}, got {value!r}")


Spec = Real | Pair | Flag | Integer | Choice
