"""Every optimizer under torch.distributed, on two gloo ranks of this machine: DDP, ZeRO and
FSDP2 parity with single-process training, DTensor Shard(0) parity of a step (curvature
optimizers with estimates given), 8-bit blocks inside
local shards, a distributed-checkpoint round trip (saved by two ranks, loaded by one), and the
refusals, and the two-rank Gauss-Newton-Bartlett estimate against the exact Gauss-Newton
diagonal. The ranks run tests/optim/distributed_worker.py once for the whole module.

Tolerances: float64 models; DDP, ZeRO and FSDP2 sum gradients in another order than one process, so
parameters agree to 1e-11 after 6 steps (measured: <= 1.1e-13, AdaHessian's Hessian-vector
products the largest); a DTensor step does the same arithmetic shard by shard: 1e-14.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from stochopt.optim import AdamW, CurvatureOptimizer
from tests.optim.distributed_worker import (
    CASES,
    GNB_DRAWS,
    WORLD,
    dcp_problem,
    gnb_problem,
    run,
)
from tests.optim.references import gauss_newton_diagonal_ref


@pytest.fixture(scope="module")
def ranks() -> tuple[list[dict[str, Any]], Path]:
    out = Path(tempfile.mkdtemp(prefix="stochopt-dist-"))
    init = out / "rendezvous"
    mp.start_processes(run, args=(str(init), str(out)), nprocs=WORLD, start_method="spawn")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)], out


def _values(ranks: tuple[list[dict[str, Any]], Path], kind: str, name: str) -> list[Any]:
    values = [result[kind][name] for result in ranks[0]]
    for value in values:
        assert isinstance(value, float | str)
        assert not (isinstance(value, str) and "Traceback" in value), value
    return values


@pytest.mark.parametrize("name", list(CASES))
def test_ddp_matches_single_process_training(ranks: Any, name: str) -> None:
    assert max(_values(ranks, "ddp", name)) < 1e-11


@pytest.mark.parametrize("name", list(CASES))
def test_zero_matches_single_process_training_or_refuses(ranks: Any, name: str) -> None:
    values = _values(ranks, "zero", name)
    if issubclass(CASES[name][0], CurvatureOptimizer):
        for value in values:
            assert value.startswith(f"refused: UnsupportedError: {name} cannot run under "
                                    f"ZeroRedundancyOptimizer: its curvature probes span")
    else:
        assert max(values) < 1e-11


def test_zero_refuses_a_global_statistic_without_shard_group(ranks: Any) -> None:
    for result in ranks[0]:
        assert result["refuse"].startswith(
            "UnsupportedError: AdaGradNorm: this param group's update reduces over all of its "
            "parameters, but ZeroRedundancyOptimizer gives each rank only part of them; pass "
            "shard_group='world'")


def test_zero_skips_a_nonfinite_step_on_every_rank(ranks: Any) -> None:
    for result in ranks[0]:  # the NaN is on rank 0 only; the summed statistic decides for both
        assert result["zero_nonfinite"] == {"warnings": 1, "unchanged": True,
                                            "then_moved": True}, result["zero_nonfinite"]


@pytest.mark.parametrize("name", list(CASES))
def test_fsdp2_matches_single_process_training_or_refuses(ranks: Any, name: str) -> None:
    values = _values(ranks, "fsdp2", name)
    if issubclass(CASES[name][0], CurvatureOptimizer):  # estimates only via set_curvature
        for value in values:
            assert value.startswith(f"refused: UnsupportedError: {name}.backward: the built-in "
                                    f"curvature estimators do not run on DTensor (FSDP2)")
    else:
        assert max(values) < 1e-11


@pytest.mark.parametrize("name", list(CASES))
def test_dtensor_shard0_step_matches_the_full_step(ranks: Any, name: str) -> None:
    assert max(_values(ranks, "dtensor", name)) < 1e-14


def test_8bit_blocks_stay_inside_local_shards(ranks: Any) -> None:
    for result in ranks[0]:
        found = result["dtensor_8bit"]
        assert isinstance(found, dict), found
        assert found["diff"] == 0.0  # == two independently quantized halves, bit for bit
        assert found["absmax_shape"] == [26] and found["absmax_local"] == 13  # 13 per shard
        assert found["codes_placements"] == "(Shard(dim=0),)"


def test_two_rank_gnb_estimate_is_the_exact_gauss_newton_diagonal(ranks: Any) -> None:
    """The mean of GNB_DRAWS two-rank estimates against the exact Gauss-Newton diagonal of
    the whole batch (closed form from the softmax probabilities, float64). Each draw is
    about GN * chi2(1) per coordinate (relative standard deviation ~1.4), so the mean's
    standard error is ~1.4 / sqrt(1000) ~ 4.5% of GN; 5 standard errors (the measured one)
    bound any coordinate and the sum. Ranks drawing labels from one stream overestimated
    the diagonal 1.5 times (sum: 19 standard errors; up to 1.74 times per coordinate)."""
    x, layer = gnb_problem()
    exact = np.concatenate([e.ravel() for e in gauss_newton_diagonal_ref(
        x.numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy())])
    results = [result["gnb_expectation"] for result in ranks[0]]
    assert all(isinstance(r, dict) for r in results), results
    assert results[0] == results[1]  # the averaged estimate is the same on both ranks
    mean, se = np.array(results[0]["mean"]), np.array(results[0]["se"])
    z = np.abs(mean - exact) / se
    assert z.max() < 5, f"largest deviation {z.max():.1f} standard errors"
    z_sum = abs(results[0]["sum_mean"] - exact.sum()) / results[0]["sum_se"]
    ratio = results[0]["sum_mean"] / exact.sum()
    assert z_sum < 5, f"sum {ratio:.3f} x exact, {z_sum:.1f} standard errors off"
    assert GNB_DRAWS >= 1000


def test_a_gnb_checkpoint_from_rank_0_resumes_every_rank(ranks: Any) -> None:
    for result in ranks[0]:
        found = result["gnb_resume"]
        assert isinstance(found, dict), found
        assert found == {"diff": 0.0, "same_generator": True}


def test_distributed_checkpoint_saved_on_two_ranks_loads_on_one(ranks: Any) -> None:
    import torch.distributed.checkpoint as dcp

    for result in ranks[0]:
        assert result["dcp"] == "saved; state placements ['(Shard(dim=0),)']", result["dcp"]
    full, grads = dcp_problem()
    expected = [p.clone().requires_grad_() for p in full]
    reference = AdamW(expected, lr=1e-2)
    for step in grads:
        for p, g in zip(expected, step):
            p.grad = g.clone()
        reference.step()
    params = [p.clone().requires_grad_() for p in full]
    opt = AdamW(params, lr=1e-2)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()  # materialize state of the right shapes, then overwrite it from the checkpoint
    state_dict = {"optim": opt.state_dict()}
    with warnings.catch_warnings():  # DCP warns that it loads in one process: the intent here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable")
        dcp.load(state_dict, checkpoint_id=str(ranks[1] / "dcp"), no_dist=True)
    opt.load_state_dict(state_dict["optim"])
    want = reference.state_dict()["state"]
    for k, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            assert torch.equal(value, want[k][name]), (k, name)
