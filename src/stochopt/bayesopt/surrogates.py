"""The surrogate registry: a name to a factory taking the known noise variance (or ``None``)."""

from __future__ import annotations

from collections.abc import Callable

from stochopt.bayesopt.context import Surrogate
from stochopt.bayesopt.gp import GP
from stochopt.bayesopt.neural import DKL, HMCBNN, DeepEnsemble

__all__ = ["SURROGATES"]

SURROGATES: dict[str, Callable[[float | None], Surrogate]] = {
    "gp": lambda noise: GP(noise=noise),
    "ibnn": lambda noise: GP(kernel="nngp", noise=noise),
    "dkl": lambda noise: DKL(noise=noise),
    "ensemble": lambda noise: DeepEnsemble(noise=noise),
    "hmc": lambda noise: HMCBNN(noise=noise),
}
