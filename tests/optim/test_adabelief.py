"""AdaBelief: hand-computed steps and step-for-step agreement with ``adabelief-pytorch``."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from stochopt.optim import AdaBelief
from tests.optim.helpers import (
    assert_steps_like_official,
    clone_params,
    grad_stream,
    make_params,
)

adabelief_pytorch = pytest.importorskip("adabelief_pytorch")

FLAGS = ("amsgrad", "weight_decouple", "fixed_decay", "rectify", "degenerated_to_sgd")


def test_first_steps_by_hand_without_rectification() -> None:
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-3
    theta = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    opt = AdaBelief([theta], lr=lr, betas=(b1, b2), eps=eps, rectify=False)
    m = s = 0.0
    expected = 2.0
    for t, g in enumerate((0.5, -1.5), start=1):
        theta.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps
        expected -= lr / (1 - b1**t) * m / (math.sqrt(s) / math.sqrt(1 - b2**t) + eps)
        assert theta.item() == pytest.approx(expected, rel=1e-14)
        assert opt.state[theta]["exp_avg_var"].item() == pytest.approx(s, rel=1e-14)
    # pinned: with eps added in place, s_1 = 0.001 * 0.45^2 + eps and
    # s_2 = 0.999 s_1 + 0.001 (g_2 - m_2)^2 + eps
    assert opt.state[theta]["exp_avg_var"].item() == pytest.approx(
        0.999 * (0.001 * 0.45**2 + 1e-3) + 0.001 * (-1.5 + 0.105) ** 2 + 1e-3, rel=1e-14)


def test_rectified_warmup_takes_sgd_steps_then_adaptive_ones() -> None:
    lr, b1, b2 = 0.01, 0.9, 0.999
    theta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = AdaBelief([theta], lr=lr, betas=(b1, b2), eps=1e-16)
    rho_inf = 2 / (1 - b2) - 1
    sgd_steps = 0
    for t in range(1, 8):
        before = theta.item()
        theta.grad = torch.tensor([1.0], dtype=torch.float64)
        opt.step()
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        m = opt.state[theta]["exp_avg"].item()
        if rho < 5:  # SGD with momentum, bias-corrected
            sgd_steps += 1
            assert before - theta.item() == pytest.approx(lr * m / (1 - b1**t), rel=1e-12)
        else:
            assert before - theta.item() != pytest.approx(lr * m / (1 - b1**t), rel=1e-3)
    assert sgd_steps == 5  # rho_5 = 4.996 < 5 <= rho_6 = 5.994 for beta2 = 0.999


@pytest.mark.parametrize("maximize", [False, True], ids=["min", "max"])
@pytest.mark.parametrize("flags", list(itertools.product((False, True), repeat=len(FLAGS))),
                         ids=lambda f: "-".join(n for n, on in zip(FLAGS, f) if on) or "none")
def test_matches_the_official_package_step_for_step(flags: tuple[bool, ...],
                                                    maximize: bool) -> None:
    """adabelief-pytorch 0.2.1 (juntang-zhuang/Adabelief-Optimizer, commit 1059ccab) under every
    flag combination, with weight decay, float64, 60 steps, parameters compared after every
    step. The package has no ``maximize``: maximizing equals its minimizing with the
    gradient negated. It adds L2 decay into ``p.grad`` in place; we do not (a documented
    departure), so each step sets fresh gradients on both. The two agree to rounding
    (~1e-15 relative per step); rtol 1e-12 bounds 60 steps of it."""
    kwargs = dict(zip(FLAGS, flags), lr=1e-2, betas=(0.9, 0.99), eps=1e-4, weight_decay=0.05)
    params = make_params()
    twins = clone_params(params)
    ours = AdaBelief(params, **kwargs, maximize=maximize, fused=False)
    official = adabelief_pytorch.AdaBelief(twins, **kwargs, print_change_log=False)
    assert_steps_like_official(ours, official, params, twins, grad_stream(params, steps=60),
                               maximize=maximize)


def test_l2_decay_leaves_the_gradient_alone_unlike_the_official_package() -> None:
    """The documented departure: without ``weight_decouple`` the package adds the decay into
    ``p.grad`` in place (``grad.add_(p.data, alpha=weight_decay)``); we leave ``p.grad`` as
    given, so a second step on the same gradient sees the same gradient."""
    kwargs = dict(lr=1e-2, weight_decay=0.5, weight_decouple=False, rectify=False)
    p = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    grad = torch.tensor([0.3, 0.1], dtype=torch.float64)
    p.grad, q.grad = grad.clone(), grad.clone()
    AdaBelief([p], **kwargs).step()
    adabelief_pytorch.AdaBelief([q], **kwargs, print_change_log=False).step()
    assert torch.equal(p.grad, grad)
    torch.testing.assert_close(q.grad, grad + 0.5 * torch.tensor([1.0, -2.0],
                                                                 dtype=torch.float64))
