"""charlm: the corpus ships with Python, and the model learns more than character counts."""

from __future__ import annotations

import math

import torch

from stochopt.tasks import CharLM, unigram_entropy
from stochopt.tasks.charlm import corpus


def test_corpus_and_unigram_entropy() -> None:
    text = corpus()
    assert len(text) > 100_000
    assert unigram_entropy("abab") == math.log(2)
    assert 2.5 < unigram_entropy(CharLM.train_text()) < 4.5
    model = CharLM().build(0).model
    assert 200_000 < sum(p.numel() for p in model.parameters()) < 2_000_000


def test_reaches_clearly_below_the_unigram_entropy_within_its_budget() -> None:
    # AdamW at the default suite's learning rate, for the task's default number of steps
    task = CharLM()
    problem = task.build(0)
    opt = torch.optim.AdamW(problem.model.parameters(), lr=3e-3)
    start = problem.evaluate()["val_loss"]
    for _ in range(task.default_steps):
        opt.zero_grad()
        problem.train_loss().backward()
        opt.step()
    entropy = unigram_entropy(CharLM.train_text())
    final = problem.evaluate()["val_loss"]
    assert start > entropy  # an untrained model is worse than counting characters
    assert final < entropy - 1.0, f"val loss {final:.3f} vs unigram entropy {entropy:.3f}"
