"""The SSO reproduction's verdict reads the paired final losses right."""

from __future__ import annotations

from stochopt_bench.reproductions import sso


def _finals(m1: float, m5: float, m20: float, sgd: float) -> dict[str, list[float]]:
    jitter = [0.0, 0.001, -0.001, 0.002, -0.002]  # the same per-seed noise for every method
    return {"SSO m=1": [m1 + j for j in jitter], "SSO m=5": [m5 + j for j in jitter],
            "SSO m=20": [m20 + 1.5 * j for j in jitter], "SGD": [sgd + j for j in jitter],
            "Adam": [sgd + j for j in jitter]}


def test_verdict_needs_both_m_to_beat_m1_and_sgd_to_be_matched() -> None:
    assert sso.judge(_finals(0.05, 0.02, 0.01, 0.03)).startswith("reproduced")
    assert sso.judge(_finals(0.05, 0.02, 0.01, 0.001)).startswith("partly reproduced")
    assert sso.judge(_finals(0.05, 0.02, 0.05, 0.03)).startswith("not reproduced")
    assert sso.judge(_finals(0.05, 0.06, 0.04, 0.03)).startswith("not reproduced")
