"""stochopt's harness: the ``stochopt`` command line, demos and benchmarks.

This package may import :mod:`stochopt`; the library never imports it.
"""

from __future__ import annotations

__all__: list[str] = []
