r"""The embedded bilevel applications: data hyper-cleaning on ``digits`` and per-feature
regularization tuning on ``breast-cancer`` (scikit-learn's bundled data; nothing downloads).

* :class:`HyperCleaning`: a fraction of the training labels is replaced by random wrong ones;
  :math:`x_i` weighs training sample :math:`i` by :math:`\sigma(x_i)`,
  :math:`g(x, y) = \frac1n \sum_i \sigma(x_i)\, \ell(y; a_i, b_i) + \frac{r}2 \|y\|^2` trains the
  classifier :math:`y` (a linear model, or a small Elman RNN reading the 8x8 image row by row,
  whose loss has the unbounded smoothness BO-REP targets), and :math:`f` is the cross-entropy
  on a clean validation set. Corrupted samples should end with :math:`\sigma(x_i) < 1/2`.
* :class:`RegularizationTuning`: logistic regression with a per-feature penalty
  :math:`\sum_j e^{x_j} y_j^2` on the training split; :math:`f` the validation loss.

Both are float64 (so tests can compare with finite differences) and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stochopt._checks import check_int, check_real, check_seed
from stochopt.bilevel.problem import BilevelProblem, FlatParameters, check_batch, check_sample

__all__ = ["HyperCleaning", "RegularizationTuning"]


@dataclass
class _Indices:
    rows: Tensor | None  # None: every row


def _split(n: int, sizes: tuple[int, ...], gen: torch.Generator) -> list[Tensor]:
    order = torch.randperm(n, generator=gen)
    starts = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    return [order[a:b] for a, b in zip(starts, starts[1:])]


def _selected(batch: _Indices | None) -> Tensor | slice:
    """The rows a batch names (every row without one)."""
    return slice(None) if batch is None or batch.rows is None else batch.rows


def _check_split(owner: str, train: int, val: int, n: int, *, least: int = 1) -> None:
    """``train`` (at least ``least``) and ``val`` rows, leaving a test set of at least one."""
    check_int(owner, "train", train, low=least)
    check_int(owner, "val", val)
    if train + val > n - 1:
        raise ValueError(f"{owner}: train + val must be at most {n - 1} (the data set has {n} "
                         f"rows and the test set needs one), got {train} + {val}")


def _rows(n: int, generator: torch.Generator, size: int | None) -> _Indices:
    return _Indices(None if size is None else torch.randint(0, n, (size,), generator=generator))


class _ElmanRNN(nn.Module):
    """A one-layer tanh RNN over the 8 rows of an 8x8 digit, then a linear read-out."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.cell = nn.RNN(8, hidden, batch_first=True, dtype=torch.float64)
        self.out = nn.Linear(hidden, 10, dtype=torch.float64)

    def forward(self, images: Tensor) -> Tensor:
        _, h = self.cell(images.view(-1, 8, 8))
        return self.out(h[-1])


class HyperCleaning(BilevelProblem):
    """Data hyper-cleaning on ``digits`` with ``corruption`` of the training labels wrong.

    Args:
        model: ``"linear"`` or ``"rnn"`` (default ``"linear"``).
        corruption: fraction of training labels replaced by a random other class
            (default 0.4).
        train, val: sizes of the training and clean validation sets (default 1000, 300; the
            remaining 497 images are the test set).
        l2: :math:`r`, at least 0, the lower level's ridge (default 1e-3).
        seed: seed of the split, the corruption and the model's initialization (default 0).
    """

    dtype = torch.float64

    def __init__(self, model: str = "linear", *, corruption: float = 0.4, train: int = 1000,
                 val: int = 300, l2: float = 1e-3, seed: int = 0) -> None:
        super().__init__()
        from sklearn.datasets import load_digits

        if model not in ("linear", "rnn"):
            raise ValueError(f"HyperCleaning: model must be 'linear' or 'rnn', got {model!r}")
        check_real("HyperCleaning", "corruption", corruption, low_open=False, high=1.0)
        check_real("HyperCleaning", "l2", l2, low_open=False)
        seed = check_seed("HyperCleaning", "seed", seed)
        data = load_digits()
        _check_split("HyperCleaning", train, val, len(data.target))
        images = torch.tensor(data.data, dtype=torch.float64) / 16.0
        labels = torch.tensor(data.target)
        gen = torch.Generator().manual_seed(seed)
        tr, va, te = _split(len(labels), (train, val, len(labels) - train - val), gen)
        self.a, self.b = images[tr], labels[tr].clone()
        self.a_val, self.b_val, self.a_test, self.b_test = images[va], labels[va], images[te], \
            labels[te]
        self.corrupted = torch.rand(train, generator=gen) < corruption
        shift = torch.randint(1, 10, (train,), generator=gen)
        self.b[self.corrupted] = (self.b[self.corrupted] + shift[self.corrupted]) % 10
        self.l2 = l2
        torch.manual_seed(seed)
        net = nn.Linear(64, 10, dtype=torch.float64) if model == "linear" else _ElmanRNN()
        self.net = FlatParameters(net)

    @property
    def dim_x(self) -> int:
        return len(self.b)

    @property
    def dim_y(self) -> int:
        return self.net.size

    def x0(self) -> Tensor:
        """Every sample trusted alike: :math:`x_i = 1`, weight 0.73 (the official BO-REP
        code's start)."""
        return torch.ones(self.dim_x, dtype=torch.float64)

    def y0(self) -> Tensor:
        return self.net.flatten()

    def g(self, x: Tensor, y: Tensor, batch: _Indices | None = None) -> Tensor:
        check_batch(self, "g", x, y, batch, _Indices)
        rows = _selected(batch)
        losses = F.cross_entropy(self.net.call(y, self.a[rows]), self.b[rows], reduction="none")
        return (torch.sigmoid(x[rows]) * losses).mean() + 0.5 * self.l2 * y.square().sum()

    def f(self, x: Tensor, y: Tensor, batch: _Indices | None = None) -> Tensor:
        check_batch(self, "f", x, y, batch, _Indices)
        rows = _selected(batch)
        return F.cross_entropy(self.net.call(y, self.a_val[rows]), self.b_val[rows])

    def sample(self, level: str, generator: torch.Generator, size: int | None = None
               ) -> _Indices:
        check_sample("HyperCleaning.sample", level, generator, size)
        return _rows(len(self.b) if level == "lower" else len(self.b_val), generator, size)

    # ------------------------------------------------------------------------- metrics
    @torch.no_grad()
    def test_accuracy(self, y: Tensor) -> float:
        self.check_point("test_accuracy", y=y)
        return float((self.net.call(y, self.a_test).argmax(1) == self.b_test).double().mean())

    def detection_f1(self, x: Tensor) -> float:
        """F1 of flagging the corrupted samples as those with sigma(x_i) < 1/2."""
        self.check_point("detection_f1", x)
        flagged = x < 0
        true_pos = float((flagged & self.corrupted).sum())
        precision = true_pos / max(float(flagged.sum()), 1.0)
        recall = true_pos / max(float(self.corrupted.sum()), 1.0)
        return 0.0 if true_pos == 0 else 2 * precision * recall / (precision + recall)


class RegularizationTuning(BilevelProblem):
    """Per-feature L2 for logistic regression on ``breast-cancer`` (30 standardized features).

    Args:
        train, val: split sizes (default 300, 150; the remaining 119 rows are the test set).
        seed: seed of the split (default 0).
    """

    dtype = torch.float64

    def __init__(self, *, train: int = 300, val: int = 150, seed: int = 0) -> None:
        super().__init__()
        from sklearn.datasets import load_breast_cancer

        seed = check_seed("RegularizationTuning", "seed", seed)
        data = load_breast_cancer()
        _check_split("RegularizationTuning", train, val, len(data.target), least=2)
        features = torch.tensor(data.data, dtype=torch.float64)
        target = torch.tensor(data.target, dtype=torch.float64)
        gen = torch.Generator().manual_seed(seed)
        tr, va, te = _split(len(target), (train, val, len(target) - train - val), gen)
        mean, std = features[tr].mean(0), features[tr].std(0)
        features = (features - mean) / std
        with_bias = torch.cat([features, torch.ones(len(target), 1, dtype=torch.float64)], 1)
        self.a, self.b = with_bias[tr], target[tr]
        self.a_val, self.b_val = with_bias[va], target[va]
        self.a_test, self.b_test = with_bias[te], target[te]

    dim_x = 31  # one penalty per weight (the bias's too)
    dim_y = 31

    def g(self, x: Tensor, y: Tensor, batch: _Indices | None = None) -> Tensor:
        check_batch(self, "g", x, y, batch, _Indices)
        rows = _selected(batch)
        loss = F.binary_cross_entropy_with_logits(self.a[rows] @ y, self.b[rows])
        return loss + (x.exp() * y.square()).sum()

    def f(self, x: Tensor, y: Tensor, batch: _Indices | None = None) -> Tensor:
        check_batch(self, "f", x, y, batch, _Indices)
        rows = _selected(batch)
        return F.binary_cross_entropy_with_logits(self.a_val[rows] @ y, self.b_val[rows])

    def sample(self, level: str, generator: torch.Generator, size: int | None = None
               ) -> _Indices:
        check_sample("RegularizationTuning.sample", level, generator, size)
        return _rows(len(self.b) if level == "lower" else len(self.b_val), generator, size)

    @torch.no_grad()
    def test_loss(self, y: Tensor) -> float:
        self.check_point("test_loss", y=y)
        return float(F.binary_cross_entropy_with_logits(self.a_test @ y, self.b_test))
