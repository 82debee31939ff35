"""Alpha schedules: the constant, the multiplicative rule against CBXpy's recursion written
out by hand, and the effective-sample-size rule against its defining equation."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.cbo import (
    ConstantAlpha,
    EffectiveSampleSizeAlpha,
    MultiplicativeAlpha,
    effective_sample_size,
)

ENERGY = torch.tensor([[0.0, 0.3, 1.0, 2.5, 4.0, 7.0], [5.0, 5.1, 5.2, 9.0, 9.5, 12.0]],
                      dtype=torch.float64)  # (M, N) = (2, 6)


def test_constant() -> None:
    alpha = ConstantAlpha(30.0)(17, ENERGY)
    assert alpha.shape == (2,) and alpha.dtype == torch.float64
    assert alpha.tolist() == [30.0, 30.0]


def test_multiplicative_is_cbx_recursion_in_closed_form() -> None:
    schedule = MultiplicativeAlpha(2.0, factor=1.05, maximum=50.0)
    value = 2.0  # CBXpy: iteration k uses alpha, then alpha = min(1.05 alpha, maximum)
    for k in range(120):
        got = schedule(k, ENERGY)
        assert got.tolist() == pytest.approx([value, value], rel=1e-13)  # k roundings of pow
        value = min(1.05 * value, 50.0)
    assert schedule(10**6, ENERGY).tolist() == [50.0, 50.0]  # no overflow far out


@pytest.mark.parametrize("eta", [0.2, 0.5, 0.9])
def test_effective_sample_size_rule_solves_its_equation(eta: float) -> None:
    alpha = EffectiveSampleSizeAlpha(eta=eta)(0, ENERGY)
    ess = effective_sample_size(ENERGY, alpha)
    # alpha is bisected to a relative 1e-8; J_eff's log-derivative is O(f spread) = O(10)
    torch.testing.assert_close(ess, torch.full((2,), eta * 6, dtype=torch.float64),
                               rtol=1e-6, atol=0.0)
    assert (alpha > 0).all()


def test_effective_sample_size_rule_by_hand_on_two_particles() -> None:
    # energies (0, 1): J = (1 + e^-a)^2 / (1 + e^-2a) = 1.5 <=> e^-a = 2 - sqrt(3)
    alpha = EffectiveSampleSizeAlpha(eta=0.75)(0, torch.tensor([[0.0, 1.0]],
                                                               dtype=torch.float64))
    assert float(alpha) == pytest.approx(-math.log(2 - math.sqrt(3)), rel=1e-7)


def test_effective_sample_size_rule_clips_to_its_range() -> None:
    equal = torch.full((1, 4), 3.0, dtype=torch.float64)  # J_eff = N for every alpha
    assert float(EffectiveSampleSizeAlpha(maximum=1e3)(0, equal)) == pytest.approx(1e3,
                                                                                  rel=1e-7)
    spread = torch.tensor([[0.0, 1e9, 2e9, 3e9]], dtype=torch.float64)  # J_eff ~ 1 at 1e-5
    assert float(EffectiveSampleSizeAlpha(minimum=1e-5)(0, spread)) == pytest.approx(
        1e-5, rel=1e-7)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"ConstantAlpha: alpha must be in \[0, inf\), got -1"):
        ConstantAlpha(-1.0)
    with pytest.raises(TypeError, match=r"ConstantAlpha: alpha must be a real number, got '1'"):
        ConstantAlpha("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"MultiplicativeAlpha: factor must be in \(0, inf\)"):
        MultiplicativeAlpha(1.0, factor=0.0)
    with pytest.raises(ValueError, match=r"maximum must be >= alpha, got maximum=5.0 and"):
        MultiplicativeAlpha(10.0, maximum=5.0)
    with pytest.raises(ValueError, match=r"eta must be in \(0, 1\], got 1.5"):
        EffectiveSampleSizeAlpha(eta=1.5)
    with pytest.raises(ValueError, match=r"maximum must be > minimum, got maximum=1.0"):
        EffectiveSampleSizeAlpha(minimum=1.0, maximum=1.0)
