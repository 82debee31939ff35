"""What each of two gloo ranks runs for tests/optim/test_distributed.py.

Every check trains the same float64 model from the same start on the same 16 samples; the
distributed run splits the batch (DDP, ZeRO) or the parameters (DTensor) over the ranks and is
compared with the single-process run each rank also does. Results (largest differences, or the
error raised) go to ``OUT/rank<r>.json``; the test asserts on them.
"""

from __future__ import annotations

import copy
import json
import os
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from stochopt.curvature import sample_labels
from stochopt.optim import AdamW8bit, CurvatureOptimizer
from tests.optim.db import OPTIM_DB

STEPS = 6
WORLD = 2
#: two-rank Gauss-Newton-Bartlett estimates averaged by check_gnb_expectation
GNB_DRAWS = 1000

#: name -> (class, kwargs): every optimizer of the registry with its digits settings
CASES: dict[str, tuple[type, dict[str, Any]]] = {
    info.name: (info.cls, dict(info.digits)) for info in OPTIM_DB}
CASES["AdaGradNorm-global"] = (CASES["AdaGradNorm"][0], {"lr": 0.5, "mode": "global"})
CASES["AdaGradNorm-row"] = (CASES["AdaGradNorm"][0], {"lr": 0.5, "mode": "row"})
CASES["AdamW8bit"] = (AdamW8bit, {"lr": 1e-2})


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 64), nn.Tanh(), nn.Linear(64, 3)).double()


def data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(16, 6, generator=gen, dtype=torch.float64), torch.randint(
        0, 3, (16,), generator=gen)


def _train(model: nn.Module, opt: Any, x: torch.Tensor, y: torch.Tensor,
           no_sync: Callable[[], Any] = nullcontext, steps: int = STEPS) -> None:
    for _ in range(steps):
        opt.zero_grad()
        curvature = isinstance(opt, CurvatureOptimizer)
        # DDP cannot keep gradient graphs: Hutchinson curvature steps run unsynchronized
        local = curvature and opt.curvature_due and opt.estimator == "hutchinson"
        with no_sync() if local else nullcontext():
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            if curvature:
                opt.backward(loss, logits=logits) if opt.estimator == "gnb" else opt.backward(loss)
            else:
                loss.backward()
        opt.step()


def _max_diff(a: nn.Module, b_params: list[torch.Tensor]) -> float:
    return max(float((p.detach() - q.detach()).abs().max()) for p, q in zip(a.parameters(),
                                                                             b_params))


def reference(name: str) -> nn.Module:
    """The single-process run on the whole batch."""
    cls, kwargs = CASES[name]
    model = make_model()
    x, y = data()
    if getattr(cls, "estimator", None) == "gnb":
        return _reference_gnb(cls, kwargs, model, x, y)
    _train(model, cls(model.parameters(), **kwargs), x, y)
    return model


def _reference_gnb(cls: type, kwargs: dict[str, Any], model: nn.Module, x: torch.Tensor,
                   y: torch.Tensor) -> nn.Module:
    """Gauss-Newton-Bartlett resamples labels, so a single process drawing labels for the
    whole batch is a different (equally valid) estimator; the reference draws them as the
    ranks do, from the streams ``gauss_newton_bartlett`` documents (a seed s from the shared
    generator; rank r seeded with (s + r * 0x9E3779B97F4A7C15) mod 2**64), averages the
    halves' sampled-label gradients and squares the mean: the whole batch's estimate from
    those labels. (That the streams make the estimate unbiased is check_gnb_expectation's.)"""
    opt = cls(model.parameters(), **kwargs)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(kwargs.get("seed", 0))
    for _ in range(STEPS):
        opt.zero_grad()
        if opt.curvature_due:
            seed, halves = int(torch.randint(0, 2**63 - 1, (), generator=gen)), []
            for rank in range(WORLD):
                logits = model(x[rank::WORLD])
                stream = torch.Generator().manual_seed((seed + rank * 0x9E3779B97F4A7C15) % 2**64)
                labels = sample_labels(logits, stream)
                halves.append(torch.autograd.grad(
                    nn.functional.cross_entropy(logits, labels), params))
            means = [sum(h[i] for h in halves) / WORLD for i in range(len(params))]
            opt.set_curvature([x.shape[0] * g * g for g in means])
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def check_ddp(name: str, rank: int) -> float:
    cls, kwargs = CASES[name]
    model = make_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    if issubclass(cls, CurvatureOptimizer):
        kwargs = {**kwargs, "process_group": dist.group.WORLD}
    opt = cls(ddp.parameters(), **kwargs)
    x, y = data()
    _train(ddp, opt, x[rank::WORLD], y[rank::WORLD], ddp.no_sync)
    return _max_diff(reference(name), list(model.parameters()))


def gnb_problem() -> tuple[torch.Tensor, nn.Linear]:
    """The softmax regression of :func:`check_gnb_expectation` (shared with the test): 32
    inputs, 16 per rank (``x[rank::2]``); rank 1's are rank 0's, perturbed, so the ranks'
    predictions are alike, as data-parallel batches from one distribution are, and as
    shared label streams need to bias the estimate most (1.5 times the diagonal here)."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    x[1::2] = x[0::2] + 0.3 * torch.randn(16, 6, generator=gen, dtype=torch.float64)
    layer = nn.Linear(6, 3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 6, generator=gen, dtype=torch.float64))
        layer.bias.copy_(torch.randn(3, generator=gen, dtype=torch.float64))
    return x, layer


def check_gnb_expectation(rank: int) -> dict[str, Any]:
    """GNB_DRAWS two-rank estimates (each rank its half of the batch, generators seeded alike,
    as optimizers' are): per coordinate, their mean and its standard error, and the same for
    their sum over coordinates; the test compares them with the exact Gauss-Newton
    diagonal."""
    from stochopt.curvature import gauss_newton_bartlett

    x, layer = gnb_problem()
    logits = layer(x[rank::WORLD])
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([torch.cat([e.reshape(-1) for e in gauss_newton_bartlett(
        logits, [layer.weight, layer.bias], generator=generator,
        process_group=dist.group.WORLD)]) for _ in range(GNB_DRAWS)])  # (draws, 21)
    sums = draws.sum(dim=1)
    return {"mean": draws.mean(dim=0).tolist(),
            "se": (draws.std(dim=0) / GNB_DRAWS**0.5).tolist(),
            "sum_mean": float(sums.mean()), "sum_se": float(sums.std() / GNB_DRAWS**0.5)}


def check_gnb_resume(rank: int) -> dict[str, Any]:
    """SophiaG under DDP: after 3 steps (2 refreshes) rank 0's state dict is broadcast and
    loaded by a fresh optimizer on every rank, which then replays the next 3 steps; the
    largest difference from the uninterrupted run, and whether the ranks' generator states
    agreed when saved."""
    cls = CASES["SophiaG"][0]
    kwargs = {"lr": 1e-2, "update_period": 2, "process_group": dist.group.WORLD}
    model = make_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = cls(ddp.parameters(), **kwargs)
    x, y = data()
    x, y = x[rank::WORLD], y[rank::WORLD]
    _train(ddp, opt, x, y, steps=3)
    saved = copy.deepcopy([opt.state_dict(), [p.detach() for p in model.parameters()]])
    states = [None] * WORLD
    dist.all_gather_object(states, saved[0]["generator"])
    dist.broadcast_object_list(saved, src=0)
    _train(ddp, opt, x, y, steps=3)
    twin = make_model()
    with torch.no_grad():
        for p, q in zip(twin.parameters(), saved[1]):
            p.copy_(q)
    twin_ddp = nn.parallel.DistributedDataParallel(twin)
    resumed = cls(twin_ddp.parameters(), **{**kwargs, "seed": 99})
    resumed.load_state_dict(saved[0])
    _train(twin_ddp, resumed, x, y, steps=3)
    return {"diff": _max_diff(model, list(twin.parameters())),
            "same_generator": all(torch.equal(s, states[0]) for s in states)}


def check_zero(name: str, rank: int) -> float | str:
    """ZeRO parity; curvature optimizers must refuse (the error message is returned)."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    cls, kwargs = CASES[name]
    if issubclass(cls, CurvatureOptimizer):
        try:
            ZeroRedundancyOptimizer(make_model().parameters(), optimizer_class=cls, **kwargs)
        except Exception as error:
            return f"refused: {type(error).__name__}: {error}"
        return "not refused"
    if cls.statistics:
        kwargs = {**kwargs, "shard_group": "world"}
    model = make_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=cls, **kwargs)
    x, y = data()
    _train(ddp, opt, x[rank::WORLD], y[rank::WORLD])
    return _max_diff(reference(name), list(model.parameters()))


def check_fsdp2(name: str, rank: int) -> float | str:
    """FSDP2 (fully_shard) training on half batches against the single process. gloo's AVG
    reduce-scatter once summed instead of averaging (pytorch#162338); on the pinned torch the
    gradients FSDP2 leaves are the averages, which this parity check would catch if not."""
    from torch.distributed.fsdp import fully_shard

    cls, kwargs = CASES[name]
    model = make_model()
    fully_shard(model)
    opt = cls(model.parameters(), **kwargs)
    x, y = data()
    if isinstance(opt, CurvatureOptimizer):  # the built-in estimators must refuse
        try:
            _train(model, opt, x[rank::WORLD], y[rank::WORLD])
        except Exception as error:
            return f"refused: {type(error).__name__}: {error}"
        return "not refused"
    _train(model, opt, x[rank::WORLD], y[rank::WORLD])
    return _max_diff(reference(name), [p.full_tensor() for p in model.parameters()])


def check_dtensor(name: str, rank: int) -> float:
    """One step on parameters sharded along dim 0 (DTensor Shard(0)) against the full step."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    cls, kwargs = CASES[name]
    if issubclass(cls, CurvatureOptimizer):
        kwargs = {**kwargs}
    mesh = init_device_mesh("cpu", (WORLD,))
    gen = torch.Generator().manual_seed(3)
    full = [torch.randn(s, generator=gen, dtype=torch.float64) for s in ((64, 6), (64,), (3, 64))]
    grads = [[torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in full]
             for _ in range(STEPS)]
    curv = [[torch.rand(p.shape, generator=gen, dtype=torch.float64) for p in full]
            for _ in range(STEPS)]
    plain = [p.clone().requires_grad_() for p in full]
    sharded = [nn.Parameter(distribute_tensor(p.clone(), mesh, [Shard(0)])) for p in full]
    results = []
    for params, shard in ((plain, False), (sharded, True)):
        opt = cls(params, **kwargs)
        for t in range(STEPS):
            for p, g in zip(params, grads[t]):
                p.grad = distribute_tensor(g, mesh, [Shard(0)]) if shard else g.clone()
            if isinstance(opt, CurvatureOptimizer) and opt.curvature_due:
                opt.set_curvature([distribute_tensor(d, mesh, [Shard(0)]) if shard else d
                                   for d in curv[t]])
            opt.step()
        results.append([p.detach().full_tensor() if shard else p.detach() for p in params])
    return max(float((a - b).abs().max()) for a, b in zip(*results))


def check_dtensor_8bit(rank: int) -> dict[str, Any]:
    """8-bit state of a Shard(0) parameter is quantized shard by shard: it equals a single
    process holding the two shards as separate tensors, and its scales are sharded too."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (WORLD,))
    gen = torch.Generator().manual_seed(4)
    full = torch.randn(64, 100, generator=gen)  # 3200 values per shard: 12.5 blocks of 256
    grads = [torch.randn(64, 100, generator=gen) for _ in range(STEPS)]
    sharded = nn.Parameter(distribute_tensor(full.clone(), mesh, [Shard(0)]))
    halves = [full[:32].clone().requires_grad_(), full[32:].clone().requires_grad_()]
    # 1024: quantize the 3200-value halves too (the default 4096 would keep them in fp32)
    opt_sharded = AdamW8bit([{"params": [sharded], "min_8bit_size": 1024}], lr=1e-2)
    opt_halves = AdamW8bit([{"params": halves, "min_8bit_size": 1024}], lr=1e-2)
    for g in grads:
        sharded.grad = distribute_tensor(g, mesh, [Shard(0)])
        halves[0].grad, halves[1].grad = g[:32].clone(), g[32:].clone()
        opt_sharded.step()
        opt_halves.step()
    state = opt_sharded.state[sharded]
    absmax = state["exp_avg.absmax"]
    return {"diff": float((sharded.detach().full_tensor() - torch.cat(halves).detach()).abs()
                          .max()),
            "absmax_shape": list(absmax.shape), "absmax_local": absmax.to_local().numel(),
            "codes_placements": str(state["exp_avg"].placements)}


def dcp_problem() -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Parameters and gradients of the checkpoint round trip (shared with the test)."""
    gen = torch.Generator().manual_seed(5)
    full = [torch.randn(s, generator=gen, dtype=torch.float64) for s in ((64, 6), (64,))]
    grads = [[torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in full]
             for _ in range(STEPS)]
    return full, grads


def check_dcp_save(rank: int, out: str) -> str:
    """Save AdamW's state of Shard(0) parameters with torch.distributed.checkpoint from both
    ranks; the test loads it in one process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from stochopt.optim import AdamW

    mesh = init_device_mesh("cpu", (WORLD,))
    full, grads = dcp_problem()
    params = [nn.Parameter(distribute_tensor(p, mesh, [Shard(0)])) for p in full]
    opt = AdamW(params, lr=1e-2)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = distribute_tensor(g, mesh, [Shard(0)])
        opt.step()
    placements = {str(v.placements) for s in opt.state.values() for k, v in s.items()
                  if k != "step"}
    dcp.save({"optim": opt.state_dict()}, checkpoint_id=str(Path(out, "dcp")))
    return f"saved; state placements {sorted(placements)}"


def check_zero_refuses_global(rank: int) -> str:
    from torch.distributed.optim import ZeroRedundancyOptimizer

    cls, _ = CASES["AdaGradNorm"]
    try:
        ZeroRedundancyOptimizer(make_model().parameters(), optimizer_class=cls, lr=0.5,
                                mode="global")
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "no error"


def check_zero_nonfinite(rank: int) -> dict[str, Any]:
    """AdaGradNorm under ZeRO with nonfinite="skip": a NaN gradient that only rank 0 holds
    (in one of its own parameters) skips the step on both ranks (the summed statistic is NaN
    everywhere), so every parameter is unchanged; then a finite step moves them all."""
    import warnings

    from torch.distributed.optim import ZeroRedundancyOptimizer

    from stochopt.errors import NonFiniteWarning

    model = make_model()
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=CASES["AdaGradNorm"][0],
                                  lr=0.5, mode="global", shard_group="world", nonfinite="skip")
    start = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    if rank == 0:
        opt.optim.param_groups[0]["params"][0].grad.view(-1)[0] = float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt.step()
    skipped = sum(issubclass(w.category, NonFiniteWarning) for w in caught)
    unchanged = all(torch.equal(p, q) for p, q in zip(model.parameters(), start))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    moved = all(bool(torch.isfinite(p).all()) and not torch.equal(p, q)
                for p, q in zip(model.parameters(), start))
    return {"warnings": skipped, "unchanged": unchanged, "then_moved": moved}


def run(rank: int, init_file: str, out: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=60))
    results: dict[str, Any] = {"refuse": check_zero_refuses_global(rank)}
    for kind, check in (("ddp", check_ddp), ("zero", check_zero), ("dtensor", check_dtensor),
                        ("fsdp2", check_fsdp2)):
        results[kind] = {}
        for name in CASES:
            try:
                results[kind][name] = check(name, rank)
            except Exception:
                results[kind][name] = traceback.format_exc(limit=-3)
    for kind, check in (("dtensor_8bit", check_dtensor_8bit),
                        ("zero_nonfinite", check_zero_nonfinite),
                        ("gnb_expectation", check_gnb_expectation),
                        ("gnb_resume", check_gnb_resume),
                        ("dcp", lambda rank: check_dcp_save(rank, out))):
        try:
            results[kind] = check(rank)
        except Exception:
            results[kind] = traceback.format_exc(limit=-3)
    dist.barrier()
    dist.destroy_process_group()
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
