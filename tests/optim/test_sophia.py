"""Sophia-G and Sophia-H: fresh estimates, clipping, no ascent, the GNB pipeline, win rate."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stochopt.curvature import gauss_newton_bartlett
from stochopt.optim import SophiaG, SophiaH


def test_sophia_g_consumes_the_gnb_estimate_of_the_same_step() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 4)
    x, y = torch.randn(16, 5), torch.randint(0, 4, (16,))
    opt = SophiaG(model.parameters(), lr=1e-2, betas=(0.9, 0.5), rho=1.0, weight_decay=0.0,
                  seed=7)
    params = list(model.parameters())
    logits = model(x)
    expected = gauss_newton_bartlett(logits, params, generator=torch.Generator().manual_seed(7))
    before = [p.detach().clone() for p in params]
    opt.backward(F.cross_entropy(logits, y), logits=logits)
    grads = [p.grad.clone() for p in params]
    opt.step()
    for p, p0, g, d in zip(params, before, grads, expected):
        h = 0.5 * d  # (1 - beta2) * estimate: already in use at step 1
        torch.testing.assert_close(opt.state[p]["hessian"], h)
        m = 0.1 * g
        step = 1e-2 * m.sign() * (m.abs() / (h + 1e-15)).clamp(max=1)
        torch.testing.assert_close(p.detach(), p0 - step)
    assert 0.0 < opt.win_rate() < 1.0  # not every coordinate clipped at step 1


def test_negative_curvature_never_turns_a_step_into_ascent() -> None:
    w = torch.zeros(1000, dtype=torch.float64, requires_grad=True)
    opt = SophiaH([w], lr=0.1, rho=1.0, weight_decay=0.0)
    g = torch.randn(1000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w.grad = g.clone()
    opt.set_curvature([-g.abs() - 1.0])  # negative everywhere
    opt.step()
    m = opt.state[w]["exp_avg"]
    assert (w.detach() * m < 0).all()  # moved against the momentum: descent
    torch.testing.assert_close(w.detach().abs(), torch.full_like(w, 0.1))  # clipped to lr
    assert opt.win_rate() == 0.0


def test_win_rate_is_the_unclipped_fraction() -> None:
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = SophiaG([w], lr=1.0, betas=(0.0, 0.0), rho=1.0, weight_decay=0.0, eps=0.0)
    w.grad = torch.tensor([1.0, 1.0, 1.0, -3.0], dtype=torch.float64)
    opt.set_curvature([torch.tensor([0.5, 2.0, 4.0, 1.0], dtype=torch.float64)])
    opt.step()  # |m| / h = 2, 0.5, 0.25, 3: two unclipped
    assert opt.win_rate() == 0.5
    torch.testing.assert_close(w.detach(), -torch.tensor([1.0, 0.5, 0.25, -1.0],
                                                          dtype=torch.float64))


def test_sophia_h_real_hutchinson_on_a_quadratic_converges() -> None:
    # curvature from 1 to 1000: gradient descent at this lr diverges (0.05 * 1000 > 2); the
    # clipped, curvature-preconditioned step brings every coordinate from 1 to the noise floor
    A = torch.diag(torch.logspace(0, 3, 10, dtype=torch.float64))
    x = torch.ones(10, dtype=torch.float64, requires_grad=True)
    opt = SophiaH([x], lr=0.05, rho=0.05, weight_decay=0.0, update_period=5)
    for _ in range(300):
        opt.zero_grad()
        opt.backward(0.5 * x @ A @ x)
        opt.step()
    assert x.detach().abs().max() < 2e-2
