"""Shards: a deterministic share of a suite's runs, for suites that outgrow one machine.

Shard ``i/n`` (1-based: ``1 <= i <= n``) holds the runs whose index is ``i - 1`` modulo ``n``
in the suite's runs sorted by (task label, method label, seed). The split depends only on the
suite's runs, not on the order of its file, the machine or the order shards run in; every run
is in exactly one of the ``n`` shards, and shard sizes differ by at most one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from stochopt._checks import show

__all__ = ["Shard", "parse_shard"]

_Run = TypeVar("_Run", bound=tuple)

_RULE = "i/n with integers 1 <= i <= n (shards are numbered from 1, e.g. 1/4 ... 4/4)"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Shard: {name} must be an integer, got {show(value)}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"Shard: must be {_RULE}, got {self.index}/{self.count}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, runs: list[_Run]) -> list[_Run]:
        """This shard's runs among a suite's ``(task, method, seed)`` runs, in the order given.

        Runs are ranked by (task label, method label, seed); this shard takes the ranks equal
        to ``index - 1`` modulo ``count``.
        """
        ranked = sorted(range(len(runs)), key=lambda i: _key(runs[i]))
        mine = {i for rank, i in enumerate(ranked) if rank % self.count == self.index - 1}
        return [run for i, run in enumerate(runs) if i in mine]


def _key(run: tuple) -> tuple[str, str, int]:
    spec, method, seed = run
    return spec.label, method.label, seed


def parse_shard(text: str) -> Shard:
    """``--shard i/n`` as a :class:`Shard`.

    Raises:
        ValueError: naming ``--shard``, the bad text and what is allowed.
    """
    index, sep, count = text.strip().partition("/")
    numbers = (index.strip(), count.strip())
    if not sep or not all(n.isascii() and n.isdigit() for n in numbers):
        raise ValueError(f"--shard {text!r}: must be {_RULE}")
    i, n = (int(x) for x in numbers)
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text!r}: must be {_RULE}; got shard {i} of {n}")
    return Shard(i, n)
