"""Contracts of the optimizers that the mutation check (``make mutants``) found untested."""

from __future__ import annotations

import pytest
import torch

from stochopt.optim import (
    AdaBelief,
    AdaBelief8bit,
    AdaGrad,
    AdaGrad8bit,
    AdamW,
    AdamW8bit,
    CurvatureOptimizer,
    DiffGrad,
    DiffGrad8bit,
    SophiaG,
    SophiaG8bit,
)

ALIASES = [(AdamW8bit, AdamW), (AdaBelief8bit, AdaBelief), (DiffGrad8bit, DiffGrad),
           (AdaGrad8bit, AdaGrad), (SophiaG8bit, SophiaG)]


@pytest.mark.parametrize(("alias", "base"), ALIASES, ids=lambda c: c.__name__)
def test_each_8bit_alias_is_its_optimizer_with_8bit_state(alias, base) -> None:
    # at their defaults (optim_bits=8, no percentile clipping) the 8-bit classes are their
    # base with state_precision="8bit" (stochopt.optim.eightbit): every state tensor of a
    # large parameter is kept as uint8
    # codes with float32 block scales, and the steps are those of the base optimizer with
    # state_precision="8bit", bit for bit
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(64, 80, generator=gen) * 0.1  # 5120 values >= min_8bit_size 4096
    p, q = start.clone().requires_grad_(), start.clone().requires_grad_()
    ours, twin = alias([p], lr=1e-3), base([q], lr=1e-3, state_precision="8bit")
    assert ours.param_groups[0]["state_precision"] == "8bit"
    for _ in range(3):
        g = torch.randn(64, 80, generator=gen) * 0.01
        for opt, param in ((ours, p), (twin, q)):
            param.grad = g.clone()
            if isinstance(opt, CurvatureOptimizer) and opt.curvature_due:
                opt.set_curvature([1000 * g * g])
            opt.step()
    names = [k for k in ours.state[p] if k != "step" and not k.endswith(".absmax")]
    assert names and all(ours.state[p][k].dtype == torch.uint8 for k in names)
    assert torch.equal(p, q)
    for name, value in twin.state[q].items():
        assert torch.equal(ours.state[p][name], value), name
