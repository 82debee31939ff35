"""diffGrad: hand-computed steps of the v2 rule, step-for-step agreement with a
transcription of the official code, and the v1 aliasing bug stays fixed."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from stochopt.optim import DiffGrad
from tests.optim.helpers import (
    assert_steps_like_official,
    clone_params,
    grad_stream,
    make_params,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_first_steps_by_hand() -> None:
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-3, 0.01
    theta = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    opt = DiffGrad([theta], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    m = v = g_prev = 0.0
    expected = 2.0
    for t, raw in enumerate((0.5, -1.5, -1.4), start=1):
        theta.grad = torch.tensor([raw], dtype=torch.float64)
        opt.step()
        g = raw + wd * expected
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        xi = _sigmoid(abs(g_prev - g))
        g_prev = g
        expected -= lr * math.sqrt(1 - b2**t) / (1 - b1**t) * xi * m / (math.sqrt(v) + eps)
        assert theta.item() == pytest.approx(expected, rel=1e-14)
        assert opt.state[theta]["previous_grad"].item() == pytest.approx(g, rel=1e-15)


def test_friction_is_not_the_constant_one_half_of_the_v1_bug() -> None:
    # First step from g_prev = 0 with g = 2: m/sqrt(v) = (1-b1)/sqrt(1-b2) * sign(g), so with
    # eps = 0 the step is exactly lr * sigmoid(2) = 0.0881; v1's aliasing would give lr / 2.
    theta = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    opt = DiffGrad([theta], lr=0.1, eps=0.0)
    theta.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    assert -theta.item() == pytest.approx(0.1 * _sigmoid(2.0), rel=1e-12)
    # an unchanged gradient gives |g_prev - g| = 0, hence friction sigmoid(0) = 1/2
    before = theta.item()
    theta.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    m, v = opt.state[theta]["exp_avg"].item(), opt.state[theta]["exp_avg_sq"].item()
    step = 0.1 * math.sqrt(1 - 0.999**2) / (1 - 0.9**2) * 0.5 * m / math.sqrt(v)
    assert before - theta.item() == pytest.approx(step, rel=1e-12)


class _OfficialDiffGrad:
    """``diffgrad.step`` of ``diffGrad_v2.py`` in shivram1987/diffGrad, commit
    93fb7fcdf1ddefea04d4273b91f42f1c6e0da4b4 (unchanged at head 73233ba4), transcribed
    statement by statement. Only the deprecated ``add_(scalar, tensor)`` overloads are
    written with ``alpha=`` / ``value=``; the in-place L2 term on ``p.grad`` is kept."""

    def __init__(self, params, lr, betas, eps, weight_decay):
        self.params, self.lr, self.betas = params, lr, betas
        self.eps, self.weight_decay = eps, weight_decay
        self.state = {p: {} for p in params}

    def step(self):
        for p in self.params:
            if p.grad is None:
                continue
            grad = p.grad.data
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p.data)
                state["exp_avg_sq"] = torch.zeros_like(p.data)
                state["previous_grad"] = torch.zeros_like(p.data)
            exp_avg, exp_avg_sq, previous_grad = (state["exp_avg"], state["exp_avg_sq"],
                                                  state["previous_grad"])
            beta1, beta2 = self.betas
            state["step"] += 1
            if self.weight_decay != 0:
                grad.add_(p.data, alpha=self.weight_decay)
            exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = exp_avg_sq.sqrt().add_(self.eps)
            bias_correction1 = 1 - beta1 ** state["step"]
            bias_correction2 = 1 - beta2 ** state["step"]
            diff = abs(previous_grad - grad)
            dfc = 1.0 / (1.0 + torch.exp(-diff))
            state["previous_grad"] = grad.clone()
            exp_avg1 = exp_avg * dfc
            step_size = self.lr * math.sqrt(bias_correction2) / bias_correction1
            p.data.addcdiv_(exp_avg1, denom, value=-step_size)


@pytest.mark.parametrize(("weight_decay", "eps", "maximize"),
                         list(itertools.product((0.0, 0.05), (1e-8, 1e-3), (False, True))))
def test_matches_the_official_code_step_for_step(weight_decay: float, eps: float,
                                                 maximize: bool) -> None:
    """Float64, 100 steps, parameters compared after every step and the state after the
    last. The official code has no ``maximize``: maximizing equals its minimizing with the
    gradient negated. It adds the decay into ``p.grad`` in place, so each step gives both
    fresh gradients. The two agree to rounding (~1e-16 relative per step; rtol 1e-12)."""
    kwargs = dict(lr=1e-2, betas=(0.9, 0.99), eps=eps, weight_decay=weight_decay)
    params = make_params()
    twins = clone_params(params)
    ours = DiffGrad(params, **kwargs, maximize=maximize, fused=False)
    official = _OfficialDiffGrad(twins, **kwargs)
    grads = grad_stream(params, steps=100, frozen=(2, range(10, 20)))
    assert_steps_like_official(ours, official, params, twins, grads, maximize=maximize)


def test_weight_decay_leaves_the_gradient_alone_unlike_the_official_code() -> None:
    """The documented departure: the official code adds the L2 term into ``p.grad`` in place
    (``grad.add_(weight_decay, p.data)``), so gradients accumulated over two steps without
    ``zero_grad`` would count it twice; we leave ``p.grad`` as given."""
    p = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    grad = torch.tensor([0.3, 0.1], dtype=torch.float64)
    p.grad, q.grad = grad.clone(), grad.clone()
    DiffGrad([p], lr=1e-2, weight_decay=0.5).step()
    _OfficialDiffGrad([q], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.5).step()
    assert torch.equal(p.grad, grad)
    torch.testing.assert_close(q.grad, grad + 0.5 * torch.tensor([1.0, -2.0],
                                                                 dtype=torch.float64))
    torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-15, atol=0.0)
