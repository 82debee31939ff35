r"""Search spaces: named real (optionally log-scale), integer and categorical parameters,
mapped onto the unit cube the surrogate works in.

A point has two forms. Its *values* ``(d,)`` hold one number per parameter: the real or
integer value, or the index of the categorical choice; :class:`~stochopt.bayesopt.Study`
asks and records values, and :meth:`Space.params` turns them into ``{name: value}`` dicts.
Its *encoding* ``(D,)`` lies in :math:`[0, 1]^D`:

* ``Float(low, high)``: :math:`u = (x - \text{low}) / (\text{high} - \text{low})`; with
  ``log=True`` the same on :math:`\log x`.
* ``Int(low, high)``: the same on the widened interval :math:`[\text{low} - \tfrac12,
  \text{high} + \tfrac12]`, so every integer :math:`k` owns the interval
  :math:`[k - \tfrac12, k + \tfrac12]`, of equal width; with ``log=True`` the same on the
  logarithm (as Optuna's ``GPSampler``), so :math:`k` owns
  :math:`[\log(k - \tfrac12), \log(k + \tfrac12)]` and small integers own wider intervals
  than large ones; decoding rounds.
* ``Categorical(choices)``: one-hot, one coordinate per choice; decoding takes the argmax.

The surrogate sees every candidate only after :meth:`Space.round_unit` (decode, then encode
again), so its kernel is constant within each integer's interval and each choice's region;
the acquisition is then flat there and the optimizer cannot sit between two integers or
between two choices (Garrido-Merchán & Hernández-Lobato's transformation inside the kernel).
Gradients flow through the real coordinates only; the integer and categorical ones are
searched by the acquisition optimizer's raw samples.

References:
    Garrido-Merchán & Hernández-Lobato, "Dealing with Categorical and Integer-valued
    Variables in Bayesian Optimization with Gaussian Processes", Neurocomputing 380, 2020,
    arXiv:1805.03463.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from stochopt._checks import show

__all__ = ["Categorical", "Dimension", "Float", "Int", "Space"]


def _real(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(float(value)):
        raise TypeError(f"{owner}: {name} must be a finite real number, got {show(value)}") \
            if isinstance(value, bool) or not isinstance(value, numbers.Real) else \
            ValueError(f"{owner}: {name} must be a finite real number, got {show(value)}")
    return float(value)


def _flag(owner: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: log must be True or False, got {show(value)}")
    return value


@dataclass(frozen=True)
class Float:
    """A real parameter in ``[low, high]``; ``log=True`` searches it on a log scale (then
    ``low > 0``).

    Example:
        >>> Float(1e-5, 1e-1, log=True)
        Float(low=1e-05, high=0.1, log=True)
    """

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        low, high = _real("Float", "low", self.low), _real("Float", "high", self.high)
        log = _flag("Float", self.log)
        if not low < high:
            raise ValueError(f"Float: need low < high, got low={low!r}, high={high!r}")
        if log and low <= 0:
            raise ValueError(f"Float: log=True needs low > 0, got low={low!r}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)


@dataclass(frozen=True)
class Int:
    """An integer parameter in ``[low, high]`` (both included); ``log=True`` searches it on
    a log scale (then ``low >= 1``).

    Example:
        >>> Int(1, 8)
        Int(low=1, high=8, log=False)
    """

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"Int: {name} must be an integer, got {show(value)}")
            if abs(int(value)) > 2**53:
                raise ValueError(f"Int: {name} must be in [-2**53, 2**53] (exact in float64), "
                                 f"got {value!r}")
            object.__setattr__(self, name, int(value))
        if _flag("Int", self.log) and self.low < 1:
            raise ValueError(f"Int: log=True needs low >= 1, got low={self.low!r}")
        if self.low > self.high:
            raise ValueError(f"Int: need low <= high, got low={self.low!r}, high={self.high!r}")


_SCALARS = (str, int, float, type(None))


@dataclass(frozen=True)
class Categorical:
    """One of ``choices``: distinct strings, numbers, booleans or ``None`` (what JSON
    holds, so that a study saves them).

    Example:
        >>> Categorical(["relu", "tanh"]).choices
        ('relu', 'tanh')
    """

    choices: tuple

    def __post_init__(self) -> None:
        choices = self.choices
        if isinstance(choices, str | bytes) or not isinstance(choices, Sequence) or \
                not choices:
            raise TypeError(f"Categorical: choices must be a non-empty sequence (list or "
                            f"tuple), got {show(choices)}")
        for i, c in enumerate(choices):
            if not isinstance(c, _SCALARS) or (isinstance(c, float) and not math.isfinite(c)):
                raise TypeError(f"Categorical: choices[{i}] must be a string, a finite number, "
                                f"a boolean or None, got {show(c)}")
            if any(type(c) is type(o) and c == o for o in choices[:i]):
                raise ValueError(f"Categorical: choices must be distinct, got {show(c)} twice "
                                 f"in {show(list(choices))}")
        object.__setattr__(self, "choices", tuple(choices))

    def index(self, value: Any) -> int | None:
        """The position of ``value`` among the choices (the same type first), or ``None``."""
        for strict in (True, False):
            for i, c in enumerate(self.choices):
                if c == value and (type(c) is type(value) or not strict):
                    return i
        return None


Dimension = Float | Int | Categorical
_TYPES = {"float": Float, "int": Int, "categorical": Categorical}


def _width(dim: Dimension) -> int:
    return len(dim.choices) if isinstance(dim, Categorical) else 1


def _ends(dim: Float | Int) -> tuple[float, float]:
    """The encoded interval's ends on the (log) scale."""
    low, high = (dim.low - 0.5, dim.high + 0.5) if isinstance(dim, Int) else (dim.low, dim.high)
    return (math.log(low), math.log(high)) if dim.log else (low, high)


class Space:
    """Named parameters, in order.

    Args:
        dimensions: ``{name: Float | Int | Categorical}`` (a ``Space`` is returned as is by
            :meth:`of`).

    Example:
        >>> space = Space({"lr": Float(1e-4, 1e-1, log=True), "layers": Int(1, 4),
        ...                "act": Categorical(["relu", "tanh"])})
        >>> space.params(torch.tensor([[1e-2, 3.0, 1.0]], dtype=torch.float64))
        [{'lr': 0.01, 'layers': 3, 'act': 'tanh'}]
    """

    def __init__(self, dimensions: Mapping[str, Dimension]) -> None:
        if not isinstance(dimensions, Mapping) or not dimensions:
            raise TypeError(f"Space: dimensions must be a non-empty dict of name -> Float, Int "
                            f"or Categorical, got {show(dimensions)}")
        for name, dim in dimensions.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"Space: parameter names must be non-empty strings, got "
                                f"{show(name)}")
            if not isinstance(dim, Float | Int | Categorical):
                hint = " (a JSON spec: use Space.from_json)" if isinstance(dim, Mapping) \
                    else ""
                raise TypeError(f"Space: {name!r} must be a Float, Int or Categorical, got "
                                f"{show(dim)}{hint}")
        self.dimensions: dict[str, Dimension] = dict(dimensions)
        self.names = list(self.dimensions)
        self.width = sum(_width(dim) for dim in self.dimensions.values())
        if self.width > SobolEngine.MAXDIM:
            raise ValueError(f"Space: the encoding has {self.width} coordinates; at most "
                             f"{SobolEngine.MAXDIM} are supported")

    @classmethod
    def of(cls, value: Any) -> Space:
        """``value`` if it is a ``Space``; a ``Space`` of it if it is a dict of dimensions."""
        return value if isinstance(value, Space) else cls(value)

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Space) and list(self.dimensions.items()) == \
            list(other.dimensions.items())

    def __repr__(self) -> str:
        return f"Space({self.dimensions!r})"

    @property
    def bounds(self) -> Tensor:
        """The box of the values ``(d, 2)``: categorical values are indices in
        ``[0, len(choices) - 1]``."""
        rows = [(0.0, float(len(dim.choices) - 1)) if isinstance(dim, Categorical)
                else (float(dim.low), float(dim.high)) for dim in self.dimensions.values()]
        return torch.tensor(rows, dtype=torch.float64)

    # ----------------------------------------------------------------- encoding
    def to_unit(self, X: Tensor) -> Tensor:
        """Values ``(n, d)`` to their encoding ``(n, D)`` in the unit cube."""
        columns = []
        for j, dim in enumerate(self.dimensions.values()):
            x = X[:, j]
            if isinstance(dim, Categorical):
                columns.append(torch.nn.functional.one_hot(x.round().long(), len(dim.choices))
                               .to(torch.float64))
                continue
            a, b = _ends(dim)
            columns.append((((x.log() if dim.log else x) - a) / (b - a))[:, None])
        return torch.cat(columns, -1)

    def from_unit(self, U: Tensor) -> Tensor:
        """An encoding ``(..., D)`` (anywhere in the unit cube) to values ``(..., d)``: reals
        mapped back and clamped to their range, integers rounded, choices by argmax."""
        values, start = [], 0
        U = U.detach()
        for dim in self.dimensions.values():
            width = _width(dim)
            block = U[..., start:start + width]
            start += width
            if isinstance(dim, Categorical):
                values.append(block.argmax(-1).to(torch.float64))
                continue
            a, b = _ends(dim)
            t = a + block[..., 0] * (b - a)
            x = (t.exp() if dim.log else t).clamp(dim.low, dim.high)
            values.append(x.round().clamp(dim.low, dim.high) if isinstance(dim, Int) else x)
        return torch.stack(values, -1)

    def round_unit(self, U: Tensor) -> Tensor:
        """The encoding of the point ``U`` decodes to (``(..., D)``): real coordinates pass
        through (with their gradient), integer and categorical ones snap to their value."""
        snapped = self.to_unit(self.from_unit(U).reshape(-1, len(self))).reshape(U.shape)
        real = torch.zeros(U.shape[-1], dtype=torch.bool)
        start = 0
        for dim in self.dimensions.values():
            real[start] = isinstance(dim, Float)
            start += _width(dim)
        return torch.where(real, U, snapped.to(U.dtype))

    # ------------------------------------------------------------ values and params
    def check_values(self, owner: str, X: Tensor) -> None:
        """Integer and categorical columns of finite values ``(n, d)`` (inside :attr:`bounds`)
        must hold integers."""
        for j, (name, dim) in enumerate(self.dimensions.items()):
            if isinstance(dim, Float):
                continue
            bad = (X[:, j] != X[:, j].round()).nonzero()
            if len(bad):
                i = int(bad[0])
                what = "a choice index" if isinstance(dim, Categorical) else "an integer"
                raise ValueError(f"{owner}: X[{i}, {j}] = {X[i, j].item()!r} ({name!r}) must be "
                                 f"{what}")

    def params(self, X: Tensor) -> list[dict[str, Any]]:
        """Values ``(n, d)`` as ``{name: value}`` dicts: floats, ints and the choices."""
        rows = []
        for x in X.tolist():
            row: dict[str, Any] = {}
            for value, (name, dim) in zip(x, self.dimensions.items(), strict=True):
                row[name] = dim.choices[round(value)] if isinstance(dim, Categorical) else \
                    round(value) if isinstance(dim, Int) else float(value)
            rows.append(row)
        return rows

    def values(self, owner: str, params: Sequence[Mapping[str, Any]]) -> Tensor:
        """``{name: value}`` dicts as values ``(n, d)`` (the names must be exactly the
        space's; ranges are checked by the caller)."""
        rows = []
        for i, row in enumerate(params):
            if not isinstance(row, Mapping) or set(row) != set(self.names):
                got = list(row) if isinstance(row, Mapping) else show(row)
                raise ValueError(f"{owner}: X[{i}] must be a dict with the keys "
                                 f"{self.names}, got {got}")
            values = []
            for name, dim in self.dimensions.items():
                value = row[name]
                if isinstance(dim, Categorical):
                    index = dim.index(value)
                    if index is None:
                        raise ValueError(f"{owner}: X[{i}][{name!r}] must be one of "
                                         f"{list(dim.choices)}, got {show(value)}")
                    value = index
                elif isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise TypeError(f"{owner}: X[{i}][{name!r}] must be a real number, got "
                                    f"{show(value)}")
                values.append(float(value))
            rows.append(values)
        return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(self))

    # --------------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, dict[str, Any]]:
        """``{name: {"type": "float" | "int" | "categorical", ...}}`` (see :meth:`from_json`)."""
        out: dict[str, dict[str, Any]] = {}
        for name, dim in self.dimensions.items():
            if isinstance(dim, Categorical):
                out[name] = {"type": "categorical", "choices": list(dim.choices)}
            else:
                kind = "int" if isinstance(dim, Int) else "float"
                out[name] = {"type": kind, "low": dim.low, "high": dim.high, "log": dim.log}
        return out

    @classmethod
    def from_json(cls, data: Any, owner: str = "Space.from_json") -> Space:
        """The space ``data`` describes: ``{name: {"type": "float", "low": 1e-4, "high":
        0.1, "log": true}, ...}`` with types ``float``, ``int`` (``low``, ``high``, optional
        ``log``) and ``categorical`` (``choices``).

        Raises:
            ValueError, TypeError: naming the parameter and the entry that is wrong.
        """
        if not isinstance(data, Mapping) or not data:
            raise TypeError(f"{owner}: a search space must be a non-empty object of name -> "
                            f"{{\"type\": ...}}, got {show(data)}")
        dims = {}
        for name, spec in data.items():
            kind = spec.get("type") if isinstance(spec, Mapping) else None
            if not isinstance(kind, str) or kind not in _TYPES:
                raise ValueError(f"{owner}: parameter {name!r} needs \"type\" one of "
                                 f"{list(_TYPES)}, got {show(spec)}")
            allowed = {"type", "choices"} if kind == "categorical" else \
                {"type", "low", "high", "log"}
            required = allowed - {"log"}
            if not required <= set(spec) <= allowed:
                raise ValueError(f"{owner}: parameter {name!r} of type {kind!r} takes the "
                                 f"entries {sorted(allowed)} ({sorted(required)} required), "
                                 f"got {sorted(spec)}")
            try:
                dims[name] = _TYPES[kind](**{k: v for k, v in spec.items() if k != "type"})
            except (TypeError, ValueError) as error:
                raise type(error)(f"{owner}: parameter {name!r}: {error}") from None
        return cls(dims)
