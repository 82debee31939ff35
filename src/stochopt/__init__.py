"""stochopt: stochastic optimization for machine learning, in PyTorch.

Subpackages follow the domain: :mod:`stochopt.optim` holds drop-in ``torch.optim`` optimizers,
all written once as their paper's update rule on one engine.
"""

from __future__ import annotations

from stochopt import batching, bayesopt, curvature, errors, nn, optim, quant, schedules

__all__ = [
    "__version__",
    "batching",
    "bayesopt",
    "curvature",
    "errors",
    "nn",
    "optim",
    "quant",
    "schedules",
]
__version__ = "0.1.0"
