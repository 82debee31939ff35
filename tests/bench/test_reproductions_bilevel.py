"""The BSVRB reproduction's parts: closed-form ridge oracles equal autograd's, the threshold and
floor metrics, the paired comparison and the verdict rule (on fabricated numbers)."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.bilevel import MultiBlockRidge
from stochopt_bench.reproductions import bilevel
from stochopt_bench.reproductions.bilevel import (
    _bsvrb_verdict,
    _floor,
    _iterations,
    _iterations_to,
    _paired,
    _RidgeOracles,
)


@pytest.mark.parametrize("size", [None, 4])
def test_closed_form_ridge_oracles_match_autograd(size: int | None) -> None:
    fast, slow = _RidgeOracles(m=4, d=5, n=20, seed=1), MultiBlockRidge(m=4, d=5, n=20, seed=1)
    gen = torch.Generator().manual_seed(0)
    x, y, v = (torch.randn(5, generator=gen, dtype=torch.float64) for _ in range(3))
    batch = slow.sample_block(2, "both", gen, size)
    pairs = [*zip(fast.grad_f(x, y, batch), slow.grad_f(x, y, batch)),
             (fast.grad_y_g(x, y, batch), slow.grad_y_g(x, y, batch)),
             *zip(fast.hvp_jvp_g(x, y, v, batch), slow.hvp_jvp_g(x, y, v, batch)),
             (fast.hessian_yy_g(x, y, batch), slow.hessian_yy_g(x, y, batch)),
             (fast.jacobian_xy_g(x, y, batch), slow.jacobian_xy_g(x, y, batch)),
             (fast.hypergradient(x), slow.hypergradient(x))]
    for ours, autograd in pairs:  # the same float64 sums in another order: 1e-12 is ample
        torch.testing.assert_close(ours, autograd, rtol=1e-12, atol=1e-12)
    assert fast.calls["hessian"] == 1 and fast.calls["grad_f"] == 1  # still counted


def test_iterations_to_uses_the_window_mean() -> None:
    curve = [5.0] * 10 + [1.0] * 20
    # after k ones the 10-iteration mean is (5 (10 - k) + k) / 10 <= 2 first at k = 8
    assert _iterations_to(curve, 2.0) == 18
    assert _iterations_to(curve, 0.5) is None
    assert _iterations_to([0.1] * 9, 1.0) is None  # shorter than the window
    steps = bilevel._BSVRB_STEPS
    record = {"curve": [5.0] * 10 + [1.0] * (steps - 10), "diverged": False}
    assert _iterations(record, 2.0) == 18.0
    assert _iterations(record, 0.5) == steps + 1  # never reached: censored
    assert _iterations({**record, "diverged": True}, 2.0) == steps + 1
    assert _floor(record) == 1.0 and _floor({**record, "diverged": True}) == math.inf


def test_paired_difference_reads_two_standard_errors() -> None:
    base = [10.0, 12.0, 11.0, 13.0]
    mean, margin, word = _paired([8.0, 9.0, 9.0, 10.0], base)  # diffs -2, -3, -2, -3
    assert mean == pytest.approx(-2.5)
    assert margin == pytest.approx(2 * (1 / 3) ** 0.5 / 2)  # stdev sqrt(1/3), 4 seeds
    assert word == "better"
    assert _paired([12.0, 15.0, 11.0, 17.0], base)[2] == "worse"  # diffs 2, 3, 0, 4
    assert _paired([11.0, 11.0, 12.0, 12.0], base)[2] == "tied"  # diffs 1, -1, 1, -1
    assert _paired([math.inf, 1.0, 1.0, 1.0], base)[2] == "worse"  # a divergence loses
    assert _paired(base, [1.0, math.inf, 1.0, 1.0])[2] == "better"


def test_verdict_rule() -> None:
    win, floor_only = {"floor": "better", "iterations": "better"}, {"floor": "better",
                                                                   "iterations": "tied"}
    tie, loss = {"floor": "tied", "iterations": "tied"}, {"floor": "better",
                                                         "iterations": "worse"}
    assert _bsvrb_verdict({"v1, B=4": win, "v2, B=4": floor_only}).startswith("reproduced")
    partly = _bsvrb_verdict({"v1, B=4": win, "v2, B=4": tie})
    assert partly.startswith("partly reproduced") and "v2, B=4: better on nothing" in partly
    worse = _bsvrb_verdict({"v1, B=4": win, "v2, B=4": loss})
    assert worse.startswith("partly reproduced") and "worse on iterations" in worse
    assert _bsvrb_verdict({"v1, B=4": tie, "v2, B=4": tie}).startswith("not reproduced")
    assert _bsvrb_verdict({"v1, B=4": tie, "v2, B=4": {"floor": "worse",
                                                       "iterations": "tied"}}
                          ).startswith("not reproduced")


def test_a_tuning_run_that_diverges_counts_as_infinite() -> None:
    """At a learning rate past the grid the penalty method's upper iterate blows up and the
    solver raises DivergenceError: the run is an infinite validation loss (so tuning skips that
    rate), not a crash of the whole reproduction."""
    record = bilevel._tuning_run("penalty", 1e4, 0, steps=50)
    assert record["val_loss"] == math.inf and record["test_loss"] == math.inf
