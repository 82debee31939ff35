"""What ``stochopt bench`` may change in a suite for one study: ``--steps``, ``--methods``,
``--threads``.

A suite run with overrides is another study than the suite as written: the overrides are kept
in the results directory's ``suite.json``, a directory made with other overrides is refused
(like a directory of another suite), and reports refuse to merge directories whose overrides
differ. :func:`stochopt_bench.suite.apply_overrides` applies them to a suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stochopt._checks import check_int, show

__all__ = ["Overrides", "parse_methods", "parse_positive"]


@dataclass(frozen=True)
class Overrides:
    """Changes to a suite for one study; ``None`` leaves the suite's own setting.

    Attributes:
        steps: the steps of every task's runs (an integer >= 1).
        methods: the labels of the suite's methods to run (a non-empty tuple, no repeats),
            kept in the suite's order.
        threads: torch's intra-op threads during the runs (an integer >= 1;
            :func:`torch.set_num_threads`); by default torch's own choice.
    """

    steps: int | None = None
    methods: tuple[str, ...] | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "threads"):
            value = getattr(self, name)
            if value is not None:
                check_int("Overrides", f"{name} (--{name})", value)
        if self.methods is not None:
            if not isinstance(self.methods, tuple) or not self.methods \
                    or not all(isinstance(m, str) and m for m in self.methods):
                raise TypeError(f"Overrides: methods (--methods) must be a non-empty tuple of "
                                f"method labels, got {show(self.methods)}")
            for i, label in enumerate(self.methods):
                if label in self.methods[:i]:
                    raise ValueError(f"Overrides: methods (--methods) repeats {label!r}; give "
                                     f"each method once")

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.steps, self.methods, self.threads))

    def as_dict(self) -> dict[str, Any]:
        """The overrides that are set, as ``suite.json`` keeps them."""
        out: dict[str, Any] = {}
        if self.steps is not None:
            out["steps"] = self.steps
        if self.methods is not None:
            out["methods"] = list(self.methods)
        if self.threads is not None:
            out["threads"] = self.threads
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Overrides:
        """The overrides :meth:`as_dict` gave.

        Raises:
            TypeError, ValueError: ``data`` is not such a table (naming the entry at fault).
        """
        if not isinstance(data, dict):
            raise TypeError(f"overrides must be a table, got {show(data)}")
        unknown = [key for key in data if key not in ("steps", "methods", "threads")]
        if unknown:
            raise ValueError(f"overrides: unknown entry {show(unknown[0])}; allowed: steps, "
                             f"methods, threads")
        methods = data.get("methods")
        if methods is not None and not isinstance(methods, list):
            raise TypeError(f"overrides: methods must be a list, got {show(methods)}")
        return cls(data.get("steps"), None if methods is None else tuple(methods),
                   data.get("threads"))

    def describe(self) -> str:
        """The overrides as command-line flags (``--steps 50 --methods a,b``), or
        ``no overrides``."""
        flags = []
        if self.steps is not None:
            flags.append(f"--steps {self.steps}")
        if self.methods is not None:
            flags.append(f"--methods {','.join(self.methods)}")
        if self.threads is not None:
            flags.append(f"--threads {self.threads}")
        return " ".join(flags) or "no overrides"


def parse_positive(flag: str, text: str | None) -> int | None:
    """A command-line integer >= 1 (``--steps``, ``--threads``), or ``None`` if not given.

    Raises:
        ValueError: naming ``flag``, the bad text and what is allowed.
    """
    if text is None:
        return None
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise ValueError(f"{flag} {text!r}: must be an integer >= 1")
    return int(digits)


def parse_methods(text: str | None) -> tuple[str, ...] | None:
    """``--methods a,b``: method labels separated by commas, or ``None`` if not given.

    Raises:
        ValueError: an empty label or a repeated one (naming ``--methods`` and the text).
    """
    if text is None:
        return None
    labels = tuple(label.strip() for label in text.split(","))
    if not all(labels):
        raise ValueError(f"--methods {text!r}: must be method labels of the suite separated "
                         f"by commas (see the suite file's [methods.<label>] tables), with no "
                         f"empty label")
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise ValueError(f"--methods {text!r}: repeats {label!r}; give each method once")
    return labels
