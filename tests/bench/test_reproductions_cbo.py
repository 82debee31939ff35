"""The CBO reproduction's verdict rule on fabricated numbers, and its two measuring tools
(the prox step and the many-sample hop) on a case with a known answer."""

from __future__ import annotations

from typing import Any

import torch

from stochopt_bench.reproductions import cbo


def _alignment(limit_cosine: float = 1.0, limit_errors: tuple[float, float] = (0.3, 1e-5),
               sampled_top: tuple[float, ...] = (0.97, 0.96, 0.99)) -> dict[str, Any]:
    out = {}
    for tau, top in zip(cbo.TAUS, sampled_top):
        limit = {}
        for alpha in cbo.ALPHAS:
            last = alpha == cbo.ALPHAS[-1]
            limit[f"{alpha:g}"] = {"cosine_median": limit_cosine if last else 0.99,
                                   "cosine_min": 0.5, "relative_median":
                                   limit_errors[1] if last else limit_errors[0],
                                   "relative_max": 1.0}
        sampled = {str(n): {f"{a:g}": (top if a == cbo.ALPHAS[-1] else 0.99)
                            for a in cbo.ALPHAS} for n in cbo.SAMPLES}
        out[f"{tau:g}"] = {"gd_cosine": 0.9, "limit": limit, "sampled": sampled}
    return out


def _rates(success: float) -> dict[str, float]:
    return {"success": success, "median_energy": 0.1 if success > 0.5 else 12.0}


def _cbo(method: float = 0.95, gd: float = 0.0, multistart: float = 0.02) -> dict[str, Any]:
    return {"cbo": _rates(method), "gd": _rates(gd), "multistart_gd": _rates(multistart)}


def _ch(d2: float = 0.9, gd: float = 0.0, d4: float = 0.85) -> dict[str, Any]:
    return {"d2": {"ch": _rates(d2), "gd": _rates(gd)}, "d4": {"ch": _rates(d4),
                                                              "gd": _rates(0.0)}}


def test_everything_holds() -> None:
    verdict = cbo.judge(_alignment(), _cbo(), _ch())
    assert verdict.verdict.startswith("reproduced: hops approach the proximal step")
    assert "d = 4" not in verdict.verdict  # CH in d = 4 reached 85%: no caveat
    assert "E(final point) < 0.8 in 95% of 100 runs" in verdict.measurement
    assert "best of gradient descents from all of a run's initial particles 2%" in (
        verdict.measurement)


def test_alignment_only_in_the_many_sample_limit() -> None:
    verdict = cbo.judge(_alignment(sampled_top=(0.97, 0.5, 0.99)), _cbo(), _ch()).verdict
    assert verdict.startswith("partly reproduced: CBO and CH reach the global minimum")
    assert "many-sample limit; with 10^4 samples, though" in verdict


def test_no_limit_alignment() -> None:
    for alignment in (_alignment(limit_cosine=0.99), _alignment(limit_errors=(0.3, 0.05)),
                      _alignment(limit_errors=(1e-6, 1e-5))):
        verdict = cbo.judge(alignment, _cbo(), _ch()).verdict
        assert verdict.startswith("partly reproduced") and "does not approach" in verdict


def test_global_success_fails() -> None:
    for study in (_cbo(method=0.7), _cbo(gd=0.3), _cbo(method=0.9, multistart=0.9)):
        verdict = cbo.judge(_alignment(), study, _ch()).verdict
        assert verdict.startswith("partly reproduced: the hop tends to the proximal step")
    verdict = cbo.judge(_alignment(), _cbo(), _ch(d2=0.79)).verdict
    assert "does not reach the global minimum" in verdict


def test_nothing_holds_and_the_d4_caveat() -> None:
    verdict = cbo.judge(_alignment(limit_cosine=0.5), _cbo(method=0.1), _ch(d4=0.0)).verdict
    assert verdict.startswith("not reproduced")
    assert verdict.endswith("CH with the same settings in d = 4 succeeds in only 0% of runs")


def test_the_measuring_tools_agree_on_a_known_case() -> None:
    # near 0 the prox objective is strongly convex for tau = 0.01 (1/tau + E'' > 0), and the
    # many-sample hop at alpha = 1e4 is within 1e-3 relative of it (Laplace principle)
    x = torch.tensor([0.2, -0.3], dtype=torch.float64)
    prox = cbo._prox(x, 0.01)
    residual = cbo._gradient(prox) + (prox - x) / 0.01
    assert residual.abs().max() < 1e-9
    hop = cbo._limit_hop(x, 0.01, 1e4)
    assert ((hop - prox).abs() / (prox - x).abs()).max() < 1e-3
