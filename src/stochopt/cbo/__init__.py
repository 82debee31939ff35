"""Consensus-based optimization: CBO and consensus hopping (Riedl, Klock, Geldhauser &
Fornasier, "Gradient is All You Need?", arXiv:2306.09778), batched over independent runs.

Particles are tensors of shape ``(M, N, d)``: ``M`` independent runs of ``N`` particles in
``d`` dimensions; objectives map ``(..., d)`` to ``(...)`` (as :mod:`stochopt.tasks`'
test functions do). :func:`minimize` runs a :class:`CBO` or :class:`ConsensusHopping` and
returns a :class:`ConsensusResult`.
"""

from __future__ import annotations

from stochopt.cbo._base import ConsensusMethod, StepInfo
from stochopt.cbo.cbo import CBO, cbo_update
from stochopt.cbo.consensus import consensus_point, consensus_weights, effective_sample_size
from stochopt.cbo.hopping import ConsensusHopping
from stochopt.cbo.minimize import ConsensusResult, gaussian_particles, minimize
from stochopt.cbo.schedules import (
    AlphaSchedule,
    ConstantAlpha,
    EffectiveSampleSizeAlpha,
    MultiplicativeAlpha,
)

__all__ = [
    "CBO",
    "AlphaSchedule",
    "ConsensusHopping",
    "ConsensusMethod",
    "ConsensusResult",
    "ConstantAlpha",
    "EffectiveSampleSizeAlpha",
    "MultiplicativeAlpha",
    "StepInfo",
    "cbo_update",
    "consensus_point",
    "consensus_weights",
    "effective_sample_size",
    "gaussian_particles",
    "minimize",
]
