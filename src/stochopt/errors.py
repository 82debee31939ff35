"""Exceptions and warnings raised by stochopt.

Input mistakes raise the built-in ``ValueError`` / ``TypeError`` with a message that names the
argument, shows the bad value and gives the valid range. Failures of a method itself (a
numerical breakdown, an unsupported combination discovered at run time) raise a subclass of
:class:`StochoptError`; warnings use their own categories so they can be filtered precisely.
"""

from __future__ import annotations

__all__ = [
    "DivergenceError",
    "FusedFallbackWarning",
    "MissingCurvatureError",
    "StochoptError",
    "StochoptWarning",
    "UnsupportedError",
]


class StochoptError(Exception):
    """Base class of the errors stochopt raises for domain failures."""


class UnsupportedError(StochoptError, RuntimeError):
    """An input is valid in general but not supported by this method (e.g. sparse gradients)."""


class DivergenceError(StochoptError, ArithmeticError):
    """An iterative method's iterates stopped being finite."""


class MissingCurvatureError(StochoptError, RuntimeError):
    """A curvature step found neither an estimate nor the gradient graph to compute one."""


class StochoptWarning(UserWarning):
    """Base class of stochopt's warnings."""


class FusedFallbackWarning(StochoptWarning):
    """The fused (compiled) path could not be built; the reference path is used instead."""
