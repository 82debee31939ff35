"""The optimizer registry that drives the generic contract tests (after torch's ``optim_db``).

Each entry says how to build the optimizer, which independent transcription it must match,
which settings to sweep, which bad inputs must be refused, and how it converges on the
smoke problems. Capabilities (sparse support, distribution contract) are declared on the
optimizer classes themselves and read from there, never listed in tests.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stochopt.optim import (
    AdaBelief,
    AdaGrad,
    AdaGradNorm,
    AdaHessian,
    AdamW,
    DiffGrad,
    ProxSGD,
    SophiaG,
    SophiaH,
)
from tests.optim.references import (
    AdaBeliefRef,
    AdaGradNormRef,
    AdaGradRef,
    AdaHessianRef,
    AdamWRef,
    DiffGradRef,
    ProxSGDRef,
    Reference,
    SophiaGRef,
    SophiaHRef,
)


@dataclass(frozen=True)
class ErrorInput:
    """Constructor kwargs that must be refused with ``error`` matching ``match``."""

    kwargs: dict[str, Any]
    error: type[Exception]
    match: str


@dataclass(frozen=True)
class OptimizerInfo:
    cls: type
    reference: type[Reference]
    #: settings swept by the transcription test: every flag combination the optimizer offers
    configs: tuple[dict[str, Any], ...]
    #: a few settings also run through the fused path
    fused_configs: tuple[dict[str, Any], ...]
    errors: tuple[ErrorInput, ...]
    #: Rosenbrock smoke test: kwargs and number of steps (None: not applicable)
    rosenbrock: tuple[dict[str, Any], int] | None
    #: digits classifier smoke test kwargs
    digits: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cls.__name__


def _product(**axes: tuple[Any, ...]) -> tuple[dict[str, Any], ...]:
    keys = list(axes)
    return tuple(dict(zip(keys, values)) for values in itertools.product(*axes.values()))


_CURVATURE_ERRORS = (
    ErrorInput({"update_period": 0}, ValueError, r"update_period must be in \[1, inf\), got 0"),
    ErrorInput({"update_period": 2.5}, TypeError, r"update_period must be an integer, got 2\.5"),
    ErrorInput({"seed": "x"}, TypeError, r"seed must be an integer, got 'x'"),
    ErrorInput({"seed": 1.5}, TypeError, r"seed must be an integer, got 1\.5"),
)
_COMMON_ERRORS = (
    ErrorInput({"lr": -1.0}, ValueError, r"lr must be in \[0, inf\), got -1\.0"),
    ErrorInput({"lr": "fast"}, TypeError, r"lr must be a real number"),
    ErrorInput({"maximize": 1}, TypeError, r"maximize must be True or False, got 1"),
    ErrorInput({"fused": "yes"}, TypeError, r"fused must be None, True or False"),
    ErrorInput({"fused": 1}, TypeError, r"fused must be None, True or False, got 1"),
    ErrorInput({"lr": math.inf}, ValueError, r"lr must be in \[0, inf\), got inf"),
    ErrorInput({"lr": math.nan}, ValueError, r"lr must be in \[0, inf\), got nan"),
    ErrorInput({"lr": 10**400}, ValueError, r"lr must be in \[0, inf\), got 1000"),
    ErrorInput({"lr": torch.tensor(1)}, TypeError, r"lr given as a tensor must be a floating"),
    ErrorInput({"lr": np.float32(0.1)}, TypeError, r"lr must be a real number .*numpy\.float32"),
    ErrorInput({"maximize": None}, TypeError, r"maximize must be True or False, got None"),
    ErrorInput({"state_precision": "4bit"}, ValueError,
               r"state_precision must be one of 'native', 'fp32', 'bf16', '8bit', got '4bit'"),
    ErrorInput({"state_precision": 8}, TypeError, r"state_precision must be one of .*got 8"),
)
_BETA_ERRORS = (
    ErrorInput({"betas": (1.0, 0.999)}, ValueError, r"betas\[0\] must be in \[0, 1\), got 1\.0"),
    ErrorInput({"betas": (0.9, -0.1)}, ValueError, r"betas\[1\] must be in \[0, 1\), got -0\.1"),
    ErrorInput({"betas": 0.9}, TypeError, r"betas must be a pair of reals"),
    ErrorInput({"eps": -1e-8}, ValueError, r"eps must be in \[0, inf\), got -1e-08"),
    ErrorInput({"weight_decay": float("nan")}, ValueError, r"weight_decay must be in"),
)
_PAIR_ERRORS = (
    ErrorInput({"betas": (math.nan, 0.999)}, ValueError, r"betas\[0\] must be in .*got nan"),
    ErrorInput({"betas": "ab"}, TypeError, r"betas must be a pair of reals, got 'ab'"),
    ErrorInput({"betas": (0.9, "x")}, TypeError, r"betas\[1\] must be a real number"),
    ErrorInput({"betas": (0.9, 0.99, 0.999)}, TypeError, r"betas must be a pair of reals"),
    ErrorInput({"weight_decay": "0.1"}, TypeError, r"weight_decay must be a real number"),
)

OPTIM_DB: tuple[OptimizerInfo, ...] = (
    OptimizerInfo(
        AdamW,
        AdamWRef,
        configs=_product(lr=(1e-2,), eps=(1e-8, 1e-3), weight_decay=(0.1,), amsgrad=(False, True),
                         maximize=(False, True)),
        fused_configs=({"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1},),
        errors=_COMMON_ERRORS + _BETA_ERRORS + _PAIR_ERRORS + (
            ErrorInput({"amsgrad": 1}, TypeError, r"amsgrad must be True or False, got 1"),
        ),
        rosenbrock=({"lr": 5e-2, "weight_decay": 0.0}, 2000),
        digits={"lr": 3e-3},
    ),
    OptimizerInfo(
        AdaBelief,
        AdaBeliefRef,
        configs=_product(lr=(1e-2,), eps=(1e-3,), weight_decay=(0.05,), amsgrad=(False, True),
                         weight_decouple=(False, True), fixed_decay=(False, True),
                         rectify=(False, True), degenerated_to_sgd=(False, True))
        + ({"lr": 1e-2, "maximize": True, "eps": 1e-16},),
        fused_configs=({"lr": 1e-2, "eps": 1e-8, "weight_decay": 0.05, "amsgrad": True},
                       {"lr": 1e-2, "eps": 1e-8, "rectify": False, "weight_decouple": False,
                        "weight_decay": 0.05}),
        errors=_COMMON_ERRORS + _BETA_ERRORS + _PAIR_ERRORS + (
            ErrorInput({"rectify": "yes"}, TypeError, r"rectify must be True or False"),
        ),
        rosenbrock=({"lr": 5e-2, "rectify": False}, 2000),
        digits={"lr": 3e-3, "eps": 1e-8, "rectify": False},
    ),
    OptimizerInfo(
        DiffGrad,
        DiffGradRef,
        configs=_product(lr=(1e-2,), eps=(1e-8, 1e-3), weight_decay=(0.0, 0.05),
                         maximize=(False, True)),
        fused_configs=({"lr": 1e-2, "weight_decay": 0.05},),
        errors=_COMMON_ERRORS + _BETA_ERRORS + _PAIR_ERRORS,
        rosenbrock=({"lr": 2e-2}, 4000),
        digits={"lr": 1e-2},
    ),
    OptimizerInfo(
        AdaGrad,
        AdaGradRef,
        configs=_product(lr=(5e-2,), lr_decay=(0.0, 0.01), weight_decay=(0.0, 0.05),
                         initial_accumulator_value=(0.0, 0.1), eps=(1e-10, 1e-3),
                         maximize=(False, True)),
        fused_configs=({"lr": 5e-2, "lr_decay": 0.01, "weight_decay": 0.05,
                        "initial_accumulator_value": 0.1},),
        errors=_COMMON_ERRORS + (
            ErrorInput({"lr_decay": -0.5}, ValueError,
                       r"lr_decay must be in \[0, inf\), got -0\.5"),
            ErrorInput({"initial_accumulator_value": -1.0}, ValueError,
                       r"initial_accumulator_value must be in \[0, inf\)"),
            ErrorInput({"lr_decay": "0.1"}, TypeError, r"lr_decay must be a real number"),
            ErrorInput({"eps": math.inf}, ValueError, r"eps must be in \[0, inf\), got inf"),
        ),
        rosenbrock=({"lr": 1.0}, 8000),
        digits={"lr": 5e-2},
    ),
    OptimizerInfo(
        AdaGradNorm,
        AdaGradNormRef,
        configs=_product(lr=(0.5,), mode=("global", "tensor", "row"),
                         initial_accumulator_value=(1e-2, 1.0), weight_decay=(0.0, 0.05),
                         maximize=(False, True)),
        fused_configs=({"lr": 0.5, "mode": "global", "weight_decay": 0.05},
                       {"lr": 0.5, "mode": "row"}),
        errors=_COMMON_ERRORS + (
            ErrorInput({"mode": "layer"}, ValueError,
                       r"mode must be one of 'global', 'tensor', 'row', got 'layer'"),
            ErrorInput({"mode": None}, TypeError, r"mode must be one of 'global', 'tensor'"),
            ErrorInput({"initial_accumulator_value": 0.0}, ValueError,
                       r"initial_accumulator_value must be in \(0, inf\), got 0\.0"),
            ErrorInput({"shard_group": "wrld"}, TypeError,
                       r"shard_group must be None, 'world' or a torch.distributed process"),
            ErrorInput({"nonfinite": "ignore"}, ValueError,
                       r"nonfinite must be one of 'propagate', 'raise', 'skip', got 'ignore'"),
            ErrorInput({"weight_decay": "0.1"}, TypeError, r"weight_decay must be a real number"),
        ),
        rosenbrock=({"lr": 1.0, "mode": "tensor"}, 10000),
        digits={"lr": 0.5, "mode": "row"},
    ),
    OptimizerInfo(
        AdaHessian,
        AdaHessianRef,
        configs=_product(lr=(5e-2,), hessian_power=(1.0, 0.5), update_period=(1, 3),
                         weight_decay=(0.0, 0.05), maximize=(False, True)),
        fused_configs=({"lr": 5e-2, "update_period": 2, "weight_decay": 0.05},),
        errors=_COMMON_ERRORS + _BETA_ERRORS + _PAIR_ERRORS + _CURVATURE_ERRORS + (
            ErrorInput({"hessian_power": 1.5}, ValueError,
                       r"hessian_power must be in \[0, 1\], got 1\.5"),
            ErrorInput({"distribution": "uniform"}, ValueError,
                       r"distribution must be one of 'rademacher', 'gaussian'"),
        ),
        rosenbrock=({"lr": 0.1, "hessian_power": 0.5}, 3000),
        digits={"lr": 0.15},
    ),
    OptimizerInfo(
        SophiaG,
        SophiaGRef,
        configs=_product(lr=(1e-2,), rho=(0.04, 1.0), update_period=(1, 3, 10),
                         weight_decay=(0.0, 0.1), maximize=(False, True)),
        fused_configs=({"lr": 1e-2, "update_period": 2, "rho": 1.0},),
        errors=_COMMON_ERRORS + _BETA_ERRORS[:3] + _PAIR_ERRORS + _CURVATURE_ERRORS + (
            ErrorInput({"rho": -0.1}, ValueError, r"rho must be in \[0, inf\), got -0\.1"),
        ),
        rosenbrock=None,  # Gauss-Newton-Bartlett needs a cross-entropy loss
        digits={"lr": 1e-2, "weight_decay": 0.0},
    ),
    OptimizerInfo(
        SophiaH,
        SophiaHRef,
        configs=_product(lr=(1e-2,), rho=(0.01, 1.0), update_period=(1, 3),
                         weight_decay=(0.0, 0.1), eps=(1e-12, 0.5), maximize=(False, True)),
        fused_configs=({"lr": 1e-2, "update_period": 2, "rho": 1.0},),
        errors=_COMMON_ERRORS + _BETA_ERRORS[:3] + _PAIR_ERRORS + _CURVATURE_ERRORS + (
            ErrorInput({"distribution": "rademacher "}, ValueError,
                       r"distribution must be one of 'gaussian', 'rademacher'"),
        ),
        rosenbrock=({"lr": 3e-2, "weight_decay": 0.0}, 1000),
        digits={"lr": 1e-2, "weight_decay": 0.0},
    ),
    OptimizerInfo(
        ProxSGD,
        ProxSGDRef,
        configs=_product(lr=(1e-2,), prox=("none", "l1", "elastic_net", "box"), l1=(0.5,),
                         l2=(0.3,), lower=(-0.5,), upper=(0.7,), suffix_start=(0, 40),
                         maximize=(False, True)),
        fused_configs=({"lr": 1e-2, "prox": "elastic_net", "l1": 0.5, "l2": 0.3,
                        "suffix_start": 5},),
        errors=_COMMON_ERRORS + (
            ErrorInput({"prox": "l0"}, ValueError, r"prox must be one of 'none', 'l1'"),
            ErrorInput({"l1": -1.0}, ValueError, r"l1 must be in \[0, inf\), got -1\.0"),
            ErrorInput({"lower": 1.0, "upper": 0.0}, ValueError,
                       r"lower must be <= upper, got 1\.0 > 0\.0"),
            ErrorInput({"suffix_start": -1}, ValueError, r"suffix_start must be in \[0, inf\)"),
            ErrorInput({"suffix_start": 1.5}, TypeError, r"suffix_start must be an integer"),
            ErrorInput({"lower": math.nan}, ValueError, r"lower must be in"),
        ),
        rosenbrock=None,  # plain SGD on Rosenbrock needs tens of thousands of steps
        digits={"lr": 0.5},
    ),
)
