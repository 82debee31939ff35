"""The optimistic-OMD reproduction's verdict rule, on fabricated regret curves."""

from __future__ import annotations

from typing import Any

from stochopt_bench.reproductions.online import judge

HORIZONS = [1000, 4000, 16000]


def _curve(final: float, slope: float) -> dict[str, Any]:
    """Mean regret c T^slope ending at ``final``."""
    mean = [final * (h / HORIZONS[-1]) ** slope for h in HORIZONS]
    return {"horizons": HORIZONS, "mean": mean, "std": [0.0] * 3, "runs": 4,
            "sigma2": [1.0] * 3, "Sigma2": [0.0] * 3}


def _results(benign: tuple[float, float], stochastic: tuple[float, float],
             adversarial: tuple[float, float]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per regime: (OGD slope, OMD slope); OMD ends at half OGD's regret in the benign regime,
    at twice elsewhere."""
    out = {}
    for regime, (ogd, omd), ratio in (("stochastic", stochastic, 2.0),
                                      ("adversarial", adversarial, 2.0),
                                      ("benign", benign, 0.5)):
        out[regime] = {"OGD": _curve(100.0, ogd), "optimistic OMD": _curve(100 * ratio, omd)}
    return out


def test_adapting_and_keeping_the_rate_is_reproduced() -> None:
    verdict = judge(_results((0.45, 0.1), (0.5, 0.52), (0.5, 0.55)))
    assert verdict.verdict.startswith("reproduced")
    assert "2.0x and 2.0x OGD's final regret" in verdict.verdict
    assert verdict.measurement.count("\n| ") == 3  # one table row per regime
    assert "| benign | 1 | 0 |" in verdict.measurement


def test_a_faster_rate_than_ogd_in_one_regime_is_partly_reproduced() -> None:
    verdict = judge(_results((0.45, 0.1), (0.5, 0.52), (0.4, 0.55))).verdict
    assert verdict.startswith("partly reproduced") and "adversarial regime" in verdict


def test_no_adaptation_in_the_benign_regime_is_partly_reproduced() -> None:
    for benign in ((0.45, 0.3), (0.3, 0.1)):  # OMD not flat; or OGD not growing
        verdict = judge(_results(benign, (0.5, 0.5), (0.5, 0.5))).verdict
        assert verdict.startswith("partly reproduced") and "does not adapt" in verdict


def test_neither_is_not_reproduced() -> None:
    verdict = judge(_results((0.45, 0.4), (0.5, 0.7), (0.5, 0.5))).verdict
    assert verdict.startswith("not reproduced")
