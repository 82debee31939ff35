"""``charlm``: a small character-level transformer on Python's own documentation text.

The corpus is ``pydoc_data.topics`` (shipped with CPython: the text ``help()`` shows for
keywords and topics, about 0.46M characters). Topics are joined in sorted order; the first 90%
of characters is the training split and the last 10% the validation split. The text differs
between Python versions, so figures are comparable only on the same Python.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stochopt.nn import StableEmbedding
from stochopt.tasks._base import Metric, Problem, Task, seeded

__all__ = ["CharLM", "CharLMStable", "CharTransformer", "corpus", "unigram_entropy"]


@functools.cache
def corpus() -> str:
    """The pydoc topics text, topics joined by blank lines in sorted order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def unigram_entropy(text: str) -> float:
    """Entropy, in nats per character, of the character frequencies of ``text``."""
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log(c / n) for c in counts.values())


class _Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and a 4x MLP.

    Attention is written out (not ``scaled_dot_product_attention``) so that the model is
    twice differentiable on every backend: Hessian-vector products need it.
    """

    def __init__(self, width: int, heads: int, block: int) -> None:
        super().__init__()
        self.heads = heads
        self.register_buffer("causal", torch.tril(torch.ones(block, block, dtype=torch.bool)),
                             persistent=False)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
        scores = scores.masked_fill(~self.causal[:T, :T], float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v  # (B, nh, T, hs)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    """A decoder-only transformer over characters (nanoGPT-style, learned positions)."""

    def __init__(self, vocab: int, block: int, width: int = 128, layers: int = 2,
                 heads: int = 4, stable_embedding: bool = False) -> None:
        super().__init__()
        self.tokens = (StableEmbedding if stable_embedding else nn.Embedding)(vocab, width)
        self.positions = nn.Embedding(block, width)
        self.blocks = nn.Sequential(*(_Block(width, heads, block) for _ in range(layers)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.shape[1]
        x = self.tokens(idx) + self.positions(torch.arange(T, device=idx.device))  # (B, T, C)
        return self.head(self.norm(self.blocks(x)))  # (B, T, vocab)


class _CharLMProblem(Problem):
    def __init__(self, model: CharTransformer, train: Tensor, val: Tensor, block: int,
                 batch_size: int, seed: int) -> None:
        self.model, self.train, self.block, self.batch_size = model, train, block, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        # a fixed validation set: 128 evenly spaced windows, the same for every run
        starts = torch.linspace(0, len(val) - block - 2, 128).long()
        self.val_windows = torch.stack([val[s:s + block + 1] for s in starts.tolist()])

    def _loss(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(windows[:, :-1])  # (B, T, vocab)
        return F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()), logits

    def train_outputs(self) -> tuple[Tensor, Tensor | None]:
        starts = torch.randint(0, len(self.train) - self.block - 1, (self.batch_size,),
                               generator=self.generator)
        windows = torch.stack([self.train[s:s + self.block + 1] for s in starts.tolist()])
        return self._loss(windows)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        return {"val_loss": self._loss(self.val_windows)[0].item()}


class CharLM(Task):
    """Character-level language model on ``pydoc_data.topics``; loss in nats per character.

    About 0.42M parameters (2 layers, width 128, 4 heads, context 64), batches of 32 windows.
    The unigram entropy of the corpus is about 3.25 nats/char; a model that learns anything
    beyond character frequencies goes below it within a few hundred steps.
    """

    name: ClassVar[str] = "charlm"
    description: ClassVar[str] = "char transformer (0.42M params) on Python's pydoc text"
    metric: ClassVar[Metric] = Metric("val_loss", higher_is_better=False, target=1.8)
    default_steps: ClassVar[int] = 400
    eval_every: ClassVar[int] = 25
    block: ClassVar[int] = 64
    batch_size: ClassVar[int | None] = 32
    logits: ClassVar[bool] = True
    stable_embedding: ClassVar[bool] = False

    def build(self, seed: int, batch_size: int | None = None) -> Problem:
        seed, batch_size = self.check_build(seed, batch_size)
        vocab, data = _encoded()
        split = int(0.9 * len(data))
        with seeded(seed):
            model = CharTransformer(vocab, self.block, stable_embedding=self.stable_embedding)
        return _CharLMProblem(model, data[:split], data[split:], self.block, batch_size, seed)

    @staticmethod
    def train_text() -> str:
        """The training split as text (the validation split is the remaining 10%)."""
        text = corpus()
        return text[: int(0.9 * len(text))]


@functools.cache
def _encoded() -> tuple[int, Tensor]:
    """Vocabulary size and the corpus as character ids (sorted-character order)."""
    text = corpus()
    lookup = {c: i for i, c in enumerate(sorted(set(text)))}
    return len(lookup), torch.tensor([lookup[c] for c in text], dtype=torch.long)


class CharLMStable(CharLM):
    """``charlm`` with a :class:`~stochopt.nn.StableEmbedding` for the characters (Xavier
    initialization, float32 layer norm, 32-bit optimizer state), as 8-bit training needs."""

    name: ClassVar[str] = "charlm-stable"
    description: ClassVar[str] = "charlm with StableEmbedding (for 8-bit optimizer state)"
    stable_embedding: ClassVar[bool] = True
