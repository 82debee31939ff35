"""Drop-in ``torch.optim`` optimizers, each written once as its paper's update rule.

All of them run on one engine (:class:`ElementwiseOptimizer`): a reference path that runs the
rule eagerly and a fused path (``fused=True``) that compiles the same rule with
``torch.compile``. :class:`CurvatureOptimizer` adds a diagonal curvature estimate refreshed
every ``update_period`` steps (AdaHessian, SophiaG, SophiaH).

A new optimizer declares its hyperparameters with the specs :class:`Real`, :class:`Pair`,
:class:`Flag`, :class:`Integer` and :class:`Choice`. :func:`create` builds an optimizer by name
(:func:`available` lists them); :func:`to_torch_state_dict` hands AdamW's and AdaGrad's state
to their ``torch.optim`` twins, whose state dicts load here as they are.
"""

from __future__ import annotations

from stochopt.optim._curvature import CurvatureOptimizer
from stochopt.optim._engine import ElementwiseOptimizer, Reduction
from stochopt.optim._factory import available, create
from stochopt.optim._hyper import Choice, Flag, Integer, Pair, Real, Spec
from stochopt.optim._storage import override_state_precision
from stochopt.optim._torch_compat import to_torch_state_dict
from stochopt.optim.adabelief import AdaBelief
from stochopt.optim.adagrad import AdaGrad
from stochopt.optim.adagrad_norm import AdaGradNorm
from stochopt.optim.adahessian import AdaHessian
from stochopt.optim.adamw import AdamW
from stochopt.optim.diffgrad import DiffGrad
from stochopt.optim.eightbit import (
    AdaBelief8bit,
    AdaGrad8bit,
    AdamW8bit,
    DiffGrad8bit,
    SophiaG8bit,
    percentile_clip,
)
from stochopt.optim.prox_sgd import ProxSGD
from stochopt.optim.sophia import SophiaG, SophiaH

__all__ = [
    "AdaBelief",
    "AdaBelief8bit",
    "AdaGrad",
    "AdaGrad8bit",
    "AdaGradNorm",
    "AdaHessian",
    "AdamW",
    "AdamW8bit",
    "Choice",
    "CurvatureOptimizer",
    "DiffGrad",
    "DiffGrad8bit",
    "ElementwiseOptimizer",
    "Flag",
    "Integer",
    "Pair",
    "ProxSGD",
    "Real",
    "Reduction",
    "SophiaG",
    "SophiaG8bit",
    "SophiaH",
    "Spec",
    "available",
    "create",
    "override_state_precision",
    "percentile_clip",
    "to_torch_state_dict",
]
