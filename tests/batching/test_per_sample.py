"""Per-sample gradients equal a loop of single-example backward passes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stochopt.batching import flat_per_sample, per_sample_gradients


def test_matches_a_loop_over_examples() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    x, y = torch.randn(6, 5), torch.randint(0, 3, (6,))
    grads = per_sample_gradients(model, F.cross_entropy, x, y)
    for i in range(6):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad)
    assert flat_per_sample(grads).shape == (6, 5 * 4 + 4 + 4 * 3 + 3)
