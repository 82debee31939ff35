"""Online convex optimization: domains with exact projections, online gradient descent and
optimistic online mirror descent (Euclidean and online-Newton-step regularizers) for the
stochastically extended adversarial (SEA) model of Chen et al., SEA environments with exact
comparators, and the protocol that measures regret."""

from __future__ import annotations

from stochopt.online.domains import Ball, Box, Domain, Simplex, minimize_quadratic_on_ball
from stochopt.online.omd import OnlineGradientDescent, OptimisticFTRL, OptimisticOMD
from stochopt.online.ons import OptimisticONS, exp_concave_beta
from stochopt.online.protocol import Environment, Learner, PlayRecord, loglog_slope, play
from stochopt.online.sea import SEALeastSquares, SEAQuadratic
from stochopt.online.steps import InverseSqrtStep, InverseTimeStep, StepRule, VariationStep

__all__ = [
    "Ball",
    "Box",
    "Domain",
    "Environment",
    "InverseSqrtStep",
    "InverseTimeStep",
    "Learner",
    "OnlineGradientDescent",
    "OptimisticFTRL",
    "OptimisticOMD",
    "OptimisticONS",
    "PlayRecord",
    "SEALeastSquares",
    "SEAQuadratic",
    "Simplex",
    "StepRule",
    "VariationStep",
    "exp_concave_beta",
    "loglog_slope",
    "minimize_quadratic_on_ball",
    "play",
]
