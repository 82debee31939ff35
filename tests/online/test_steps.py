"""Step-size rules: the closed forms, per run, and bad arguments refused."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.online import InverseSqrtStep, InverseTimeStep, VariationStep

F64 = torch.float64


def test_rules_are_their_closed_forms() -> None:
    v = torch.tensor([0.0, 3.0, 12.0], dtype=F64)  # one V_{t-1} per run
    torch.testing.assert_close(InverseSqrtStep(2.0, 4.0)(9, v),
                               torch.full((3,), 2.0 / (4.0 * 3.0), dtype=F64), rtol=0, atol=0)
    # D / sqrt(delta + 4 G^2 + V): 4 G^2 = 4, delta = 0.5
    expected = [3.0 / math.sqrt(4.5 + x) for x in (0.0, 3.0, 12.0)]
    torch.testing.assert_close(VariationStep(3.0, 1.0, delta=0.5)(7, v),
                               torch.tensor(expected, dtype=F64), rtol=1e-15, atol=0)
    torch.testing.assert_close(InverseTimeStep(0.5, scale=2.0)(8, v),
                               torch.full((3,), 2.0 / (0.5 * 8), dtype=F64), rtol=0, atol=0)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"InverseSqrtStep: diameter must be in \(0, inf\), got 0"):
        InverseSqrtStep(0.0, 1.0)
    with pytest.raises(ValueError, match=r"VariationStep: delta must be in \(0, inf\), got -1"):
        VariationStep(1.0, 1.0, delta=-1.0)
    with pytest.raises(TypeError, match=r"InverseTimeStep: strong_convexity must be a real"):
        InverseTimeStep(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"InverseTimeStep: scale must be in \(0, inf\), got inf"):
        InverseTimeStep(1.0, scale=math.inf)
