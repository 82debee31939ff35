"""Convergence smoke tests over ``OPTIM_DB`` (on top of, never instead of, the exact tests)."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from stochopt.optim import CurvatureOptimizer
from tests.optim.db import OPTIM_DB, OptimizerInfo


def rosenbrock(xy: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    return (a - xy[0]) ** 2 + b * (xy[1] - xy[0] ** 2) ** 2


def backward(opt: torch.optim.Optimizer, loss: torch.Tensor,
             logits: torch.Tensor | None = None) -> None:
    """``loss.backward()``, or the curvature optimizers' ``opt.backward`` (real estimates)."""
    if isinstance(opt, CurvatureOptimizer):
        opt.backward(loss, **({"logits": logits} if opt.estimator == "gnb" else {}))
    else:
        loss.backward()


@pytest.mark.parametrize("info", [i for i in OPTIM_DB if i.rosenbrock],
                         ids=lambda info: info.name)
def test_rosenbrock_reaches_the_minimum(info: OptimizerInfo) -> None:
    kwargs, steps = info.rosenbrock
    xy = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    opt = info.cls([xy], **kwargs, fused=False)
    for _ in range(steps):
        opt.zero_grad()
        backward(opt, rosenbrock(xy))
        opt.step()
    error = (xy.detach() - 1.0).abs().max().item()
    assert error < 3e-2, f"{info.name} ended {error:.3g} from (1, 1)"


def _digits_split() -> tuple[torch.Tensor, ...]:
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0  # (1797, 64) in [0, 1]
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, val = order[:1400], order[1400:]
    return x[train], y[train], x[val], y[val]


@pytest.mark.parametrize("info", OPTIM_DB, ids=lambda info: info.name)
def test_digits_classifier_learns(info: OptimizerInfo) -> None:
    x, y, x_val, y_val = _digits_split()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    opt = info.cls(model.parameters(), **info.digits, fused=False)
    gen = torch.Generator().manual_seed(1)
    for _ in range(6):  # epochs of minibatches of 64
        for batch in torch.randperm(len(y), generator=gen).split(64):
            opt.zero_grad()
            logits = model(x[batch])
            backward(opt, torch.nn.functional.cross_entropy(logits, y[batch]), logits)
            opt.step()
    with torch.no_grad():
        accuracy = (model(x_val).argmax(dim=1) == y_val).float().mean().item()
    assert accuracy > 0.9, f"{info.name}: validation accuracy {accuracy:.3f}"
