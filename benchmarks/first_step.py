"""First step, steady step and compilations of AdamW on a small transformer, stochopt against
torch, all in one run.

    python benchmarks/first_step.py            # 8 layers: 100 tensors in 3 param groups
    python benchmarks/first_step.py --quick    # 2 layers, few steps: checks that it runs

Each optimizer runs in fresh processes, twice: with an empty inductor cache (cold: what the
very first run on a machine pays) and again on the cache the first left (warm: every later
run; inductor's FX graph cache and AOT autograd cache are on by default). A process builds the
model (3 param groups: decayed weights, undecayed biases and norms, the embedding at a tenth
of the learning rate; plus one parameter that never has a gradient), times the first
``step()``, then steps with the output layer's weight (in the largest group) without a
gradient every other step, and times
``--steps`` more steps with all gradients (median). It counts the graphs dynamo compiled
(``torch._dynamo.utils.counters``) after the first step and after the rest: any growth is a
recompile. Rows without compilation run once (their cold and warm are the same).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from step_time import machine

CONTENDERS = {  # name: (compiles, factory of the optimizer)
    "torch AdamW default (for-loop on CPU)": (False, "torch"),
    "torch AdamW fused=True": (False, "torch-fused"),
    "torch AdamW, torch.compile(step)": (True, "torch-compiled"),
    "stochopt AdamW default": (False, "ours"),
    "stochopt AdamW fused=True": (True, "ours-fused"),
}


def model_and_groups(layers: int) -> tuple[nn.Module, list[dict], nn.Parameter]:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.Embedding(256, 64), nn.TransformerEncoder(layer, layers),
                          nn.Linear(64, 256))
    unused = nn.Parameter(torch.zeros(64))  # in the optimizer, never a gradient
    embedding = list(model[0].parameters())
    rest = [p for p in model.parameters() if all(p is not e for e in embedding)]
    groups = [{"params": [p for p in rest if p.ndim >= 2], "weight_decay": 0.1},
              {"params": [p for p in rest if p.ndim < 2] + [unused], "weight_decay": 0.0},
              {"params": embedding, "lr": 1e-4}]
    return model, groups, unused


def make(kind: str, groups: list[dict]):
    from stochopt import optim

    lr = torch.tensor(1e-3)  # a tensor: torch.compile(step) does not recompile per lr value
    if kind == "torch":
        return torch.optim.AdamW(groups, lr=1e-3)
    if kind == "torch-fused":
        return torch.optim.AdamW(groups, lr=1e-3, fused=True)
    if kind == "torch-compiled":
        for group in groups:
            group["lr"] = torch.tensor(float(group.get("lr", lr)))
        opt = torch.optim.AdamW(groups, lr=lr)
        opt.step = torch.compile(opt.step)
        return opt
    return optim.AdamW(groups, lr=1e-3, fused=kind == "ours-fused")


def child(kind: str, layers: int, steps: int) -> dict:
    """One process's measurements (printed as JSON)."""
    model, groups, _ = model_and_groups(layers)
    opt = make(kind, groups)
    x = torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(1))
    model(x).logsumexp(-1).mean().backward()
    counters = torch._dynamo.utils.counters["stats"]
    start = time.perf_counter()
    opt.step()
    first = time.perf_counter() - start
    graphs = counters["unique_graphs"]
    head, head_grad = model[2].weight, model[2].weight.grad
    for i in range(4):  # the output layer's weight without a gradient every other step
        head.grad = None if i % 2 == 0 else head_grad
        opt.step()
    head.grad = head_grad
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    return {"first": first, "steady": statistics.median(times), "graphs": graphs,
            "recompiles": counters["unique_graphs"] - graphs,
            "tensors": sum(len(g["params"]) for g in opt.param_groups)}


def measure(kind: str, layers: int, steps: int, cache: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    command = [sys.executable, os.path.abspath(__file__), "--child", kind,
               "--layers", str(layers), "--steps", str(steps)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="2 layers, 5 steps")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.steps = 2, 5
    if args.child:
        print(json.dumps(child(args.child, args.layers, args.steps)))
        return

    print(f"machine: {machine(torch.device('cpu'))}")
    rows = []
    for name, (compiles, kind) in CONTENDERS.items():
        with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
            cold = measure(kind, args.layers, args.steps, cache)
            warm = measure(kind, args.layers, args.steps, cache) if compiles else cold
        rows.append((name, cold, warm))
        print(f"  {name}: done", file=sys.stderr)
    tensors = rows[0][1]["tensors"]
    print(f"AdamW on a {args.layers}-layer transformer: {tensors} tensors in 3 param groups, one "
          f"never with a gradient, the output layer's missing every other step\n")
    anchor = rows[0][2]["steady"]
    print("| optimizer | first step, cold (s) | first step, warm (s) | steady step (ms) "
          "| vs torch default | graphs | recompiles |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, cold, warm in rows:
        print(f"| {name} | {cold['first']:.2f} | {warm['first']:.2f} | "
              f"{warm['steady'] * 1e3:.2f} | {warm['steady'] / anchor:.2f}x | "
              f"{warm['graphs']} | {warm['recompiles']} |")


if __name__ == "__main__":
    main()
