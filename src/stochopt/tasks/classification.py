"""Classification tasks on scikit-learn's bundled data (nothing downloads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stochopt.tasks._base import BatchStream, Metric, Problem, Task, fixed_split, seeded

__all__ = ["BreastCancerLogReg", "DigitsCNN", "DigitsMLP"]


class _Classification(Problem):
    """Minibatch training of ``model`` on (x, y); accuracy and loss on a held-out split."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, x_val: Tensor, y_val: Tensor,
                 batch_size: int, seed: int, loss: Callable[[Tensor, Tensor], Tensor],
                 predict: Callable[[Tensor], Tensor]) -> None:
        self.model, self.x, self.y, self.x_val, self.y_val = model, x, y, x_val, y_val
        self.batches = BatchStream(len(y), batch_size, seed)
        self.loss, self.predict = loss, predict

    def train_outputs(self) -> tuple[Tensor, Tensor | None]:
        batch = self.batches.next()
        out = self.model(self.x[batch])
        return self.loss(out, self.y[batch]), out if out.shape[-1] > 1 else None

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        out = self.model(self.x_val)
        accuracy = (self.predict(out) == self.y_val).float().mean().item()
        return {"val_loss": self.loss(out, self.y_val).item(), "val_accuracy": accuracy}


def _digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits: 1797 8x8 images in [0, 1], 10 classes; 397 held out."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0  # (1797, 64)
    y = torch.tensor(data.target)
    train, val = fixed_split(len(y), 397)
    return x[train], y[train], x[val], y[val]


def _argmax(out: Tensor) -> Tensor:
    return out.argmax(dim=1)


class _DigitsTask(Task):
    """Digits with minibatches (64 by default); subclasses choose the model."""

    eval_every: ClassVar[int] = 25
    batch_size: ClassVar[int | None] = 64
    logits: ClassVar[bool] = True

    def model(self) -> nn.Module:
        raise NotImplementedError

    def build(self, seed: int, batch_size: int | None = None) -> Problem:
        seed, batch_size = self.check_build(seed, batch_size)
        with seeded(seed):
            model = self.model()
        return _Classification(model, *_digits(), batch_size=batch_size, seed=seed,
                               loss=F.cross_entropy, predict=_argmax)


class DigitsMLP(_DigitsTask):
    """A 64-64-10 tanh MLP on digits."""

    name: ClassVar[str] = "digits-mlp"
    description: ClassVar[str] = "scikit-learn digits, 64-64-10 tanh MLP, batch 64"
    metric: ClassVar[Metric] = Metric("val_accuracy", higher_is_better=True, target=0.95)
    default_steps: ClassVar[int] = 300

    def model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


class _SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = x.view(-1, 1, 8, 8)  # (B, 1, 8, 8)
        x = F.relu(self.conv1(x))  # (B, 16, 8, 8)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 32, 4, 4)
        return self.head(x.flatten(1))  # (B, 10)


class DigitsCNN(_DigitsTask):
    """A two-layer CNN on digits (about 10k parameters)."""

    name: ClassVar[str] = "digits-cnn"
    description: ClassVar[str] = "scikit-learn digits, 2-conv CNN (10k params), batch 64"
    metric: ClassVar[Metric] = Metric("val_accuracy", higher_is_better=True, target=0.97)
    default_steps: ClassVar[int] = 400

    def model(self) -> nn.Module:
        return _SmallCNN()


def _bce(out: Tensor, y: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(out.squeeze(-1), y)


def _positive(out: Tensor) -> Tensor:
    return (out.squeeze(-1) > 0).float()


class BreastCancerLogReg(Task):
    """Logistic regression (a convex problem) on scikit-learn's breast-cancer set."""

    name: ClassVar[str] = "breast-cancer-logreg"
    description: ClassVar[str] = "scikit-learn breast cancer (569 x 30), logistic regression"
    metric: ClassVar[Metric] = Metric("val_accuracy", higher_is_better=True, target=0.96)
    default_steps: ClassVar[int] = 300
    eval_every: ClassVar[int] = 25
    batch_size: ClassVar[int | None] = 32

    def build(self, seed: int, batch_size: int | None = None) -> Problem:
        from sklearn.datasets import load_breast_cancer

        seed, batch_size = self.check_build(seed, batch_size)
        data = load_breast_cancer()
        x = torch.tensor(data.data, dtype=torch.float32)
        y = torch.tensor(data.target, dtype=torch.float32)
        train, val = fixed_split(len(y), 114)
        mean, std = x[train].mean(0), x[train].std(0)  # standardize with train statistics
        x = (x - mean) / std
        with seeded(seed):
            model = nn.Linear(30, 1)
        return _Classification(model, x[train], y[train], x[val], y[val],
                               batch_size=batch_size, seed=seed, loss=_bce,
                               predict=_positive)
