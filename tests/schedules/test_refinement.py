"""Schedule refinement pinned to the paper's formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stochopt.schedules import GradNormRecorder, refine


def test_constant_norms_refine_to_exactly_linear_decay() -> None:
    schedule = refine([3.0] * 101)
    expected = 1 - np.arange(101) / 100
    np.testing.assert_allclose(schedule.shape, expected, atol=1e-12)
    assert schedule(101) == 0.0 and refine([3.0] * 101, peak=0.5)(0) == 0.5


def test_decreasing_norms_give_warmup_then_annealing() -> None:
    shape = np.array(refine(np.linspace(1.0, 0.2, 1000)).shape)
    peak = int(shape.argmax())
    assert 0.8 * 1000 < peak < 0.95 * 1000
    assert np.all(np.diff(shape[: peak - 10]) > 0)  # warm-up
    assert np.all(np.diff(shape[peak + 10:]) < 0) and shape[-1] == 0.0  # annealing to 0
    assert shape[0] < 0.3  # starts far below its peak: an automatic warm-up


def test_adam_uses_inverse_l1_norms() -> None:
    norms = np.linspace(2.0, 1.0, 200)
    sgd, adam = np.array(refine(norms).shape), np.array(refine(norms, method="adam").shape)
    assert not np.allclose(sgd, adam)
    assert sgd[0] < adam[0]  # G^-2 weighs the late small norms more than G^-1 does
    with pytest.raises(ValueError, match="method must be 'sgd' or 'adam'"):
        refine(norms, method="lion")
    with pytest.raises(ValueError, match="at least two positive finite values"):
        refine([1.0, 0.0])


def test_recorder_logs_l2_and_l1() -> None:
    w = torch.nn.Parameter(torch.tensor([3.0, -4.0]))
    recorder = GradNormRecorder([w])
    (w * torch.tensor([1.0, 1.0])).sum().backward()
    w.grad = torch.tensor([3.0, -4.0])
    recorder.record()
    assert recorder.l2 == [5.0] and recorder.l1 == [7.0]
