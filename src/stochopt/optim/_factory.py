"""Optimizers by name: :func:`create` and :func:`available`, for configuration files and CLIs.

The names are those of the optimizer classes :mod:`stochopt.optim` exports (``"AdamW"``,
``"AdamW8bit"``, ``"SophiaG"``, ...), derived from its ``__all__`` rather than kept in a list
of their own, and looked up without regard to case (``"adamw"`` and torch's spelling
``"Adagrad"`` name the same classes as ``"AdamW"`` and ``"AdaGrad"``).
"""

from __future__ import annotations

from typing import Any

import torch

from stochopt._checks import show

__all__ = ["available", "create"]


def _classes() -> dict[str, type[torch.optim.Optimizer]]:
    """The concrete optimizer classes :mod:`stochopt.optim` exports, by name."""
    import stochopt.optim as package
    from stochopt.optim._curvature import CurvatureOptimizer
    from stochopt.optim._engine import ElementwiseOptimizer

    bases = (ElementwiseOptimizer, CurvatureOptimizer)
    found = {}
    for name in package.__all__:
        cls = getattr(package, name)
        if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls not in bases:
            found[name] = cls
    return dict(sorted(found.items()))


def available() -> tuple[str, ...]:
    """The names :func:`create` accepts, sorted (one per optimizer class, 8-bit variants
    included).

    Example:
        >>> "AdamW8bit" in available()
        True
    """
    return tuple(_classes())


def create(name: str, params: Any, **kwargs: Any) -> torch.optim.Optimizer:
    """The optimizer called ``name`` (any case; see :func:`available`) over ``params``,
    built with ``kwargs``, which its constructor checks (a misspelled or unknown keyword is a
    ``TypeError``, as when calling the class).

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = create("adamw8bit", model.parameters(), lr=1e-3, weight_decay=0.1)
        >>> type(opt).__name__
        'AdamW8bit'

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: no optimizer has that name (the message lists those that do).
    """
    classes = _classes()
    if not isinstance(name, str):
        raise TypeError(f"create: name must be a string, one of {', '.join(classes)}; got "
                        f"{show(name)}")
    by_folded = {key.casefold(): cls for key, cls in classes.items()}
    cls = by_folded.get(name.casefold())
    if cls is None:
        raise ValueError(f"create: no optimizer is called {name!r} (names are matched without "
                         f"regard to case); available: {', '.join(classes)}")
    return cls(params, **kwargs)
