"""The protocol: losses and regret at each horizon by hand on a tiny game; argument checks; the
log-log slope."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.online import InverseTimeStep, OnlineGradientDescent, SEAQuadratic, loglog_slope, play

F64 = torch.float64


def test_regret_by_hand_on_a_two_point_game() -> None:
    # 1-d, f_t(x) = (x - c_t)^2 / 2 with c_t = +1, -1, +1, -1 (square wave, v = 1), ball of
    # radius 2; OGD with eta_t = 1 / t from x_1 = 0:
    # x_1 = 0, g = -1 -> x_2 = 1; g = 2 -> x_3 = 1 - 1 = 0; g = -1 -> x_4 = 1/3
    env = SEAQuadratic(1, rounds=4, radius=2.0, amplitude=1.0)
    ogd = OnlineGradientDescent(env.domain, env.start(), lr=InverseTimeStep(1.0))
    record = play(ogd, env, horizons=(1, 2, 3, 4))
    losses = [0.5, 2.0, 0.5, 0.5 * (1 / 3 + 1) ** 2]
    torch.testing.assert_close(record.losses.squeeze(-1), torch.tensor(losses, dtype=F64),
                               rtol=0, atol=1e-15)
    # best fixed point: the mean centre, 1, 0, 1/3, 0; its cumulative losses 0, 1, 4/3, 2
    best = [0.0, 1.0, 0.5 * (4 / 9 + 16 / 9 + 4 / 9), 2.0]
    regret = [sum(losses[:k]) - best[k - 1] for k in (1, 2, 3, 4)]
    torch.testing.assert_close(record.regret.squeeze(-1), torch.tensor(regret, dtype=F64),
                               rtol=0, atol=1e-15)
    assert record.horizons == (1, 2, 3, 4)
    assert record.adversarial_variation == (0.0, 4.0, 8.0, 12.0)
    assert record.stochastic_variance == (0.0, 0.0, 0.0, 0.0)


def test_bad_horizons_and_rounds() -> None:
    env = SEAQuadratic(1, rounds=4)
    ogd = OnlineGradientDescent(env.domain, env.start(), lr=InverseTimeStep(1.0))
    with pytest.raises(ValueError, match=r"play: horizons must be increasing integers in "
                                         r"\[1, 4\], got \(3, 2\)"):
        play(ogd, env, horizons=(3, 2))
    with pytest.raises(ValueError, match=r"play: rounds must be an integer in \[1, 4\], got 5"):
        play(ogd, env, 5)


def test_loglog_slope() -> None:
    assert loglog_slope([10, 100, 1000], [3.0, 3.0, 3.0]) == 0.0
    assert loglog_slope([2, 4, 8], [1.0, 4.0, 16.0]) == pytest.approx(2.0, rel=1e-14)
    assert math.isnan(loglog_slope([2, 4], [1.0, -1.0]))
    with pytest.raises(ValueError, match=r"two distinct horizons"):
        loglog_slope([2, 2], [1.0, 1.0])
