"""stochopt's harness: suites of runs, the results store, reports, paper reproductions and
the ``stochopt`` command line.

This package imports :mod:`stochopt`; the library never imports it (a test enforces this).
"""

from __future__ import annotations

__all__: list[str] = []
