"""The engine's AdamW against ``torch.optim.AdamW``."""

from __future__ import annotations

import itertools

import pytest
import torch

from stochopt.optim import AdamW
from tests.optim.helpers import clone_params, grad_stream, make_params, run


@pytest.mark.parametrize(("amsgrad", "maximize", "weight_decay"),
                         list(itertools.product((False, True), (False, True), (0.0, 0.1))))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torch_adamw(amsgrad: bool, maximize: bool, weight_decay: float,
                             dtype: torch.dtype) -> None:
    """``torch.optim.AdamW`` (the single-tensor path, torch 2.13.0) under each flag, 100 steps,
    parameters compared after every step and every state tensor after the last."""
    kwargs = dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=weight_decay,
                  amsgrad=amsgrad, maximize=maximize)
    params = make_params(dtype)
    twins = clone_params(params)
    ours = AdamW(params, **kwargs, fused=False)
    reference = torch.optim.AdamW(twins, **kwargs, foreach=False)
    # torch updates m with lerp and we with beta*m + (1-beta)*g: equal up to rounding, which
    # 100 steps accumulate to a few ulps of float32 (rtol 1e-5) and ~1e-15 in float64
    rtol, atol = (1e-5, 1e-6) if dtype == torch.float32 else (1e-12, 1e-14)
    for grads in grad_stream(params, steps=100):
        grads = [g.to(dtype) for g in grads]
        run(ours, params, [grads])
        run(reference, twins, [grads])
        for p, q in zip(params, twins):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=rtol, atol=atol)
    for p, q in zip(params, twins):
        names = {k for k in reference.state[q] if k != "step"}
        assert names == {k for k in ours.state[p] if k != "step"}
        for name in names:
            torch.testing.assert_close(ours.state[p][name], reference.state[q][name],
                                       rtol=rtol, atol=atol)


def test_fused_path_matches_torch_fused_adamw() -> None:
    params = make_params(torch.float32)
    twins = clone_params(params)
    ours = AdamW(params, lr=1e-2, weight_decay=0.1, fused=True)
    reference = torch.optim.AdamW(twins, lr=1e-2, weight_decay=0.1, fused=True)
    stream = grad_stream(params, steps=30)
    run(ours, params, [[g.float() for g in grads] for grads in stream])
    run(reference, twins, [[g.float() for g in grads] for grads in stream])
    for p, q in zip(params, twins):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)
