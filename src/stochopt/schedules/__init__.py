"""Learning-rate schedules (closed-form functions of the step), schedule refinement from
gradient norms, and learning rate as a function of batch size."""

from __future__ import annotations

from stochopt.schedules.closed_form import (
    Constant,
    Cosine,
    InverseSqrt,
    InverseTime,
    LinearDecay,
    Schedule,
    ScheduleLR,
    StepDecay,
    Warmup,
)
from stochopt.schedules.refinement import GradNormRecorder, RefinedSchedule, refine
from stochopt.schedules.scaling import HeavyBall, SLQLearner, heavy_ball, scale_lr

__all__ = [
    "Constant",
    "Cosine",
    "GradNormRecorder",
    "HeavyBall",
    "InverseSqrt",
    "InverseTime",
    "LinearDecay",
    "RefinedSchedule",
    "SLQLearner",
    "Schedule",
    "ScheduleLR",
    "StepDecay",
    "Warmup",
    "heavy_ball",
    "refine",
    "scale_lr",
]
