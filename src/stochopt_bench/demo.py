"""A short demo: stochopt's optimizers against ``torch.optim.AdamW`` on scikit-learn's digits."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_digits

from stochopt import optim

OptimizerFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]

CONTENDERS: dict[str, OptimizerFactory] = {
    "torch.optim.AdamW": lambda ps: torch.optim.AdamW(ps, lr=3e-3),
    "stochopt AdamW": lambda ps: optim.AdamW(ps, lr=3e-3),
    "stochopt AdaBelief": lambda ps: optim.AdaBelief(ps, lr=3e-3, eps=1e-8, rectify=False),
    "stochopt DiffGrad": lambda ps: optim.DiffGrad(ps, lr=1e-2),
    "stochopt AdaGrad": lambda ps: optim.AdaGrad(ps, lr=5e-2),
    "stochopt AdaGradNorm (row)": lambda ps: optim.AdaGradNorm(ps, lr=0.5, mode="row"),
}


@dataclass
class Result:
    name: str
    val_loss: float
    val_accuracy: float
    seconds: float


def _data(seed: int) -> tuple[torch.Tensor, ...]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0  # (1797, 64)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return x[order[:1400]], y[order[:1400]], x[order[1400:]], y[order[1400:]]


def train(name: str, factory: OptimizerFactory, epochs: int = 8, seed: int = 0) -> Result:
    """Train a 64-64-10 MLP with minibatches of 64; report validation loss and accuracy."""
    x, y, x_val, y_val = _data(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10))
    opt = factory(list(model.parameters()))
    gen = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        logits = model(x_val)
        loss = torch.nn.functional.cross_entropy(logits, y_val).item()
        accuracy = (logits.argmax(dim=1) == y_val).float().mean().item()
    return Result(name, loss, accuracy, seconds)


def run(console: Console | None = None) -> list[Result]:
    console = console or Console()
    results = []
    with console.status("training") as status:
        for name, factory in CONTENDERS.items():
            status.update(f"training with {name}")
            results.append(train(name, factory))
    table = Table(title="digits MLP, 8 epochs, batch 64 (validation set of 397)")
    for column in ("optimizer", "val loss", "val accuracy", "train time (s)"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    for r in results:
        table.add_row(r.name, f"{r.val_loss:.4f}", f"{r.val_accuracy:.3f}", f"{r.seconds:.2f}")
    console.print(table)
    return results
