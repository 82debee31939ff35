"""Exceptions and warnings raised by stochopt.

Input mistakes raise the built-in ``ValueError`` / ``TypeError`` with a message that names the
argument, shows the bad value and gives the valid range. Failures of a method itself (a
numerical breakdown, an unsupported combination discovered at run time) raise a subclass of
:class:`StochoptError`; warnings use their own categories so they can be filtered precisely.

A file that stochopt reads back (a checkpoint, an offload manifest, a run record, a suite) and
finds truncated, corrupt or written by something else raises :class:`DamagedFileError`, which
names the file, says what is wrong with it and how to recover. A missing file raises the
built-in ``FileNotFoundError``, whose message names it too.

These, and nothing else, are what bad input may raise: ``ValueError``, ``TypeError``, ``OSError``
(files) and :class:`StochoptError`. A public function that lets a ``KeyError``,
``IndexError``, ``AttributeError``, ``ZeroDivisionError`` or a JSON decode error escape for bad
input has a bug. Every public method that changes state checks its whole input first: when it
raises, the object is as it was (see ``CONTRIBUTING.md``).
"""

from __future__ import annotations

__all__ = [
    "DamagedFileError",
    "DivergenceError",
    "FusedFallbackWarning",
    "MissingCurvatureError",
    "NonFiniteError",
    "NonFiniteWarning",
    "NotReadyError",
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


class NotReadyError(StochoptError, RuntimeError):
    """A result was asked for before there is one (a model's posterior before it was fitted,
    a study's result before any evaluation was told)."""


class NonFiniteError(StochoptError, FloatingPointError):
    """A non-finite value (NaN or infinity) was met where the caller asked to be told
    (e.g. ``nonfinite="raise"`` on an optimizer with a group-global statistic)."""


class DamagedFileError(StochoptError, ValueError):
    """A file stochopt reads back is truncated, corrupt or not the kind expected.

    Attributes:
        path: the file.
    """

    def __init__(self, path: object, message: str) -> None:
        super().__init__(message)
        self.path = path


class StochoptWarning(UserWarning):
    """Base class of stochopt's warnings."""


class FusedFallbackWarning(StochoptWarning):
    """The fused (compiled) path could not be built; the reference path is used instead."""


class NonFiniteWarning(StochoptWarning):
    """A non-finite value was met and handled as asked (e.g. a step skipped)."""
