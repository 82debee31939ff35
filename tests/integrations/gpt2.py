"""A tiny GPT-2 built from its config (no download) and token windows of stochopt's own text
corpus, shared by the trainer-integration tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from stochopt.tasks.charlm import corpus

VOCAB = 128  # byte values of the (ASCII) pydoc text; anything above 127 is clamped
LENGTH = 8  # tokens per window


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    """One layer, width 32, two heads, no dropout, no key-value cache (as the ``Trainer`` sets
    it); "eager" attention, the implementation that is twice differentiable on the CPU (SophiaH
    and AdaHessian take Hessian-vector products)."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, n_positions=LENGTH, n_embd=32, n_layer=1, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                        eos_token_id=0, use_cache=False,
                        attn_implementation="eager")
    return GPT2LMHeadModel(config)


def token_windows(n: int = 8) -> list[dict[str, torch.Tensor]]:
    """``n`` consecutive windows of the corpus as examples: ``input_ids`` and ``labels`` (the
    model shifts them)."""
    text = corpus()[: n * LENGTH]
    ids = torch.tensor([min(ord(c), VOCAB - 1) for c in text]).view(n, LENGTH)
    return [{"input_ids": row, "labels": row.clone()} for row in ids]


class EncoderLM(nn.Module):
    """A one-layer ``nn.TransformerEncoderLayer`` language model in the form the ``Trainer``
    takes (a dict with ``loss`` and ``logits``): its attention runs on torch's fused kernel,
    which has no double backward."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, 32)
        self.layer = nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(32, VOCAB)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = nn.Transformer.generate_square_subsequent_mask(input_ids.shape[1])
        logits = self.head(self.layer(self.embed(input_ids), src_mask=mask, is_causal=True))
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
        return {"loss": loss, "logits": logits}  # logits: (B, T, VOCAB)
