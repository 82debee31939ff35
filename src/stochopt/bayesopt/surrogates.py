"""The surrogate registry: a name to a factory taking the known noise variance (or ``None``)."""

from __future__ import annotations

from collections.abc import Callable

from stochopt.bayesopt.context import Surrogate
from stochopt.bayesopt.gp import GP

__all__ = ["SURROGATES"]

SURROGATES: dict[str, Callable[[float | None], Surrogate]] = {
    "gp": lambda noise: GP(noise=noise),
}
