"""Bilevel optimization: problems with stochastic oracles, and the methods of Hao et al.
(BO-REP), Kwon et al. (penalty / F2SA) and Hu et al. (BSVRB), with baselines."""

from __future__ import annotations

from stochopt.bilevel.bo_rep import BOREP
from stochopt.bilevel.bsvrb import BSVRB
from stochopt.bilevel.penalty import PenaltyBilevel
from stochopt.bilevel.problem import BilevelProblem, FlatParameters, MultiBlockProblem
from stochopt.bilevel.problems import (
    MultiBlockQuadratic,
    MultiBlockRidge,
    QuadraticBilevel,
    implicit_hypergradient,
)
from stochopt.bilevel.soba import SOBA
from stochopt.bilevel.stocbio import StocBiO

__all__ = [
    "BOREP",
    "BSVRB",
    "SOBA",
    "BilevelProblem",
    "FlatParameters",
    "MultiBlockProblem",
    "MultiBlockQuadratic",
    "MultiBlockRidge",
    "PenaltyBilevel",
    "QuadraticBilevel",
    "StocBiO",
    "implicit_hypergradient",
]
