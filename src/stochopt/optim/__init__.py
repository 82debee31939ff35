"""Drop-in ``torch.optim`` optimizers, each written once as its paper's update rule.

All of them run on one engine (:class:`ElementwiseOptimizer`): a reference path that runs the
rule eagerly and a fused path (``fused=True``) that compiles the same rule with
``torch.compile``.
"""

from __future__ import annotations

from stochopt.optim._engine import ElementwiseOptimizer, Reduction
from stochopt.optim.adabelief import AdaBelief
from stochopt.optim.adagrad import AdaGrad
from stochopt.optim.adagrad_norm import AdaGradNorm
from stochopt.optim.adamw import AdamW
from stochopt.optim.diffgrad import DiffGrad

__all__ = [
    "AdaBelief",
    "AdaGrad",
    "AdaGradNorm",
    "AdamW",
    "DiffGrad",
    "ElementwiseOptimizer",
    "Reduction",
]
