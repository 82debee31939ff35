"""Train the `charlm` task (a character transformer on Python's own docs) on several CPU
processes with any stochopt optimizer, under DDP, ZeRO or FSDP2.

    torchrun --standalone --nproc_per_node=2 examples/distributed_charlm.py \\
        [--mode ddp|zero|fsdp2] [--optimizer adamw|adabelief|adagradnorm|sophiag] \\
        [--steps 200] [--checkpoint DIR]

Every rank builds the same model (seed 0) and draws its own batches of 32 windows, so the
global batch is 32 x world size. DDP averages gradients; ZeRO (``ZeroRedundancyOptimizer``)
also splits the optimizer state by parameter; FSDP2 (``fully_shard``) shards parameters,
gradients and state along their first dimension (DTensors). AdaGrad-Norm's global accumulator
under ZeRO gets ``shard_group`` (its squared norm is a sum over the ranks' parameters); SophiaG
gets ``process_group`` (its sampled-label gradients are averaged over the ranks). Rank 0
prints the validation loss; ``--checkpoint`` saves model and optimizer state with
``torch.distributed.checkpoint`` (resharded on load, e.g. into one process).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from stochopt import optim
from stochopt.tasks import CharLM

OPTIMIZERS = {"adamw": (optim.AdamW, {"lr": 3e-3, "weight_decay": 0.0}),
              "adabelief": (optim.AdaBelief, {"lr": 3e-3}),
              "adagradnorm": (optim.AdaGradNorm, {"lr": 0.5, "mode": "global"}),
              "sophiag": (optim.SophiaG, {"lr": 3e-3, "rho": 0.05, "weight_decay": 0.0})}


def build_optimizer(name: str, mode: str, model: nn.Module) -> Any:
    cls, kwargs = OPTIMIZERS[name]
    if cls is optim.SophiaG and mode == "ddp":
        kwargs = {**kwargs, "process_group": dist.group.WORLD}
    if mode == "zero":
        from torch.distributed.optim import ZeroRedundancyOptimizer

        if cls.statistics:
            kwargs = {**kwargs, "shard_group": "world"}
        return ZeroRedundancyOptimizer(model.parameters(), optimizer_class=cls, **kwargs)
    return cls(model.parameters(), **kwargs)


def wrap(model: nn.Module, mode: str) -> nn.Module:
    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in model.modules():
            if type(block).__name__ == "_Block":
                fully_shard(block)
        return fully_shard(model)
    return nn.parallel.DistributedDataParallel(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["ddp", "zero", "fsdp2"], default="ddp")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adamw")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    if args.mode != "ddp" and args.optimizer == "sophiag":
        parser.error("sophiag's built-in estimator runs under --mode ddp (see stochopt docs)")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    problem = CharLM().build(seed=0)
    problem.generator.manual_seed(1000 + rank)  # each rank its own batches
    model = wrap(problem.model, args.mode)
    problem.model = model  # the task's loss now runs through the wrapper
    opt = build_optimizer(args.optimizer, args.mode, model)
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        loss, logits = problem.train_outputs()
        if isinstance(opt, optim.CurvatureOptimizer):
            opt.backward(loss, logits=logits)
        else:
            loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps:
            val = problem.evaluate()["val_loss"]
            if rank == 0:
                print(f"step {step}: train_loss {loss.item():.3f} val_loss {val:.3f} "
                      f"({world} ranks, {args.mode}, {args.optimizer})", flush=True)
    if args.checkpoint:
        save(model, opt, args.checkpoint, args.mode)
    dist.destroy_process_group()


def save(model: nn.Module, opt: Any, directory: str, mode: str) -> None:
    """Model and optimizer state with torch.distributed.checkpoint (each rank writes its own
    shards; ZeRO first gathers its partitions on rank 0)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    os.makedirs(directory, exist_ok=True)
    if mode == "zero":
        opt.consolidate_state_dict(to=0)
        if dist.get_rank() == 0:
            torch.save({"model": model.module.state_dict(), "optim": opt.state_dict()},
                       os.path.join(directory, "zero.pt"))
        return
    model_state, optim_state = get_state_dict(model, opt)
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=directory)


if __name__ == "__main__":
    main()
