"""Sophia-G and Sophia-H: fresh estimates, clipping (under maximize too), no ascent, resting
coordinates, every prediction of (B, T, V) logits, the official clip of the sampled-label
gradient, the official win rate.

Expected values come from the float64 transcriptions in tests/optim/references.py (the official
SophiaG step, the official resampled-label step of a softmax regression), never from the
library's estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stochopt.curvature import sample_labels
from stochopt.optim import SophiaG, SophiaH
from tests.optim.references import SophiaGRef, gnb_estimate_ref


def _softmax_regression(shape: tuple[int, ...], n_in: int = 5, classes: int = 4,
                        seed: int = 0):
    """Inputs of ``shape + (n_in,)``, labels of ``shape`` and a float64 linear model."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, n_in, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, shape, generator=gen)
    torch.manual_seed(seed)
    return x, y, torch.nn.Linear(n_in, classes).double()


def _estimate_by_hand(model: torch.nn.Linear, x: torch.Tensor, logits: torch.Tensor,
                      seed_or_generator: int | torch.Generator,
                      grad_clip: float = 0.0) -> list[np.ndarray]:
    """The official resampled-label estimate (labels drawn as the optimizer draws them)."""
    gen = seed_or_generator
    if isinstance(gen, int):
        gen = torch.Generator().manual_seed(gen)
    labels = sample_labels(logits, gen)
    return gnb_estimate_ref(x.numpy(), model.weight.detach().numpy(),
                            model.bias.detach().numpy(), labels.numpy(), grad_clip=grad_clip)


def _step(opt, model, x, y, sign: float = 1.0) -> None:
    opt.zero_grad()
    logits = model(x)
    opt.backward(sign * F.cross_entropy(logits.flatten(0, -2), y.flatten()), logits=logits)
    opt.step()


def test_sophia_g_consumes_the_gnb_estimate_of_the_same_step() -> None:
    x, y, model = _softmax_regression((16,))
    opt = SophiaG(model.parameters(), lr=1e-2, betas=(0.9, 0.5), rho=1.0, weight_decay=0.0,
                  seed=7)
    params = list(model.parameters())
    expected = _estimate_by_hand(model, x, model(x), 7)
    before = [p.detach().clone() for p in params]
    logits = model(x)
    opt.backward(F.cross_entropy(logits, y), logits=logits)
    grads = [p.grad.clone() for p in params]
    opt.step()
    for p, p0, g, d in zip(params, before, grads, expected):
        h = 0.5 * torch.from_numpy(d)  # (1 - beta2) * estimate: already in use at step 1
        torch.testing.assert_close(opt.state[p]["hessian"], h, rtol=1e-12, atol=0)
        m = 0.1 * g
        step = 1e-2 * m.sign() * (m.abs() / (h + 1e-15)).clamp(max=1)
        torch.testing.assert_close(p.detach(), p0 - step, rtol=1e-12, atol=1e-15)
    assert 0.0 < opt.win_rate() < 1.0  # not every coordinate clipped at step 1


def test_sophia_g_counts_every_token_of_language_model_logits() -> None:
    # logits (B, T, V) = (2, 6, 4): N = 12 predictions, the estimate is 12 g^2 (B = 2 would
    # make it 6 times too small and every step up to 6 times larger)
    x, y, model = _softmax_regression((2, 6))
    opt = SophiaG(model.parameters(), lr=1e-2, betas=(0.9, 0.5), rho=1.0, seed=3)
    expected = _estimate_by_hand(model, x, model(x), 3)
    _step(opt, model, x, y)
    for p, d in zip(model.parameters(), expected):
        np.testing.assert_allclose(opt.state[p]["hessian"].numpy(), 0.5 * d, rtol=1e-12)


def test_sophia_g_maximize_keeps_the_clip_and_matches_the_official_step() -> None:
    # maximizing the log-likelihood -CE: the gradient is negated, the Gauss-Newton-Bartlett
    # estimate (of CE, from the logits) is not. Every step moves a coordinate by at most lr
    # beyond the decay, and the run equals the official step in float64, step for step.
    x, y, model = _softmax_regression((24,))
    hp = dict(lr=1e-2, betas=(0.9, 0.95), rho=0.04, weight_decay=0.1, eps=1e-15,
              update_period=2, maximize=True)
    opt = SophiaG(model.parameters(), **hp, seed=3)
    ref = SophiaGRef(**hp)
    params = list(model.parameters())
    arrays = [p.detach().numpy().copy() for p in params]
    labels = torch.Generator().manual_seed(3)  # the optimizer's label stream, replayed
    for _ in range(6):
        estimates = _estimate_by_hand(model, x, model(x), labels) if opt.curvature_due else None
        decayed = [p.detach() * (1 - hp["lr"] * hp["weight_decay"]) for p in params]
        _step(opt, model, x, y, sign=-1.0)
        ref.step(arrays, [p.grad.numpy() for p in params], estimates)
        for p, start in zip(params, decayed):
            assert (p.detach() - start).abs().max() <= hp["lr"] * (1 + 1e-12)
        for p, a in zip(params, arrays):
            np.testing.assert_allclose(p.detach().numpy(), a, rtol=1e-12, atol=1e-15)
    assert all((opt.state[p]["hessian"] >= 0).all() for p in params)


def test_sophia_g_maximize_does_not_depend_on_state_precision() -> None:
    # 8-bit state stores the curvature with the unsigned map: a negated estimate became 0
    # there while native state kept it negative; both now keep the same non-negative h
    runs = {}
    for precision in ("native", "8bit"):
        x, y, model = _softmax_regression((32,), n_in=64, classes=8)
        opt = SophiaG([{"params": model.parameters(), "min_8bit_size": 0}], lr=1e-2,
                      update_period=1, maximize=True, state_precision=precision)
        for _ in range(3):
            _step(opt, model, x, y, sign=-1.0)
        storage = opt._storage_for(opt.param_groups[0])
        runs[precision] = (storage.load(opt.state[model.weight], "hessian").double(),
                           model.weight.detach())
    (h8, w8), (h, w) = runs["8bit"], runs["native"]
    assert h8.max() > 0
    torch.testing.assert_close(h8, h, rtol=0.05, atol=0.02 * float(h.max()))
    torch.testing.assert_close(w8, w, rtol=0, atol=1e-3)  # steps of 1e-2: the same moves


def test_sophia_h_maximize_climbs_a_concave_quadratic_with_hutchinson_curvature() -> None:
    # the Hutchinson estimate of f = -x'Ax/2 is negative; negated it is the curvature of -f,
    # the objective minimized, and the preconditioned steps reach the maximum as in the
    # minimizing test below
    A = torch.diag(torch.logspace(0, 3, 10, dtype=torch.float64))
    x = torch.ones(10, dtype=torch.float64, requires_grad=True)
    opt = SophiaH([x], lr=0.05, rho=0.05, weight_decay=0.0, update_period=5, maximize=True)
    for _ in range(300):
        opt.zero_grad()
        opt.backward(-0.5 * x @ A @ x)
        opt.step()
    assert x.detach().abs().max() < 2e-2
    assert (opt.state[x]["hessian"] > 0).all()


@pytest.mark.parametrize("cls", [SophiaG, SophiaH])
def test_rows_with_no_gradient_and_no_curvature_stay_put(cls) -> None:
    # embedding rows no token uses have m = h = 0: the step is 0 / eps = 0 (0 / 0 = NaN
    # without eps, and the NaN would then spread through every later forward pass)
    torch.manual_seed(0)
    embedding, head = torch.nn.Embedding(10, 3), torch.nn.Linear(3, 4)
    tokens, y = torch.randint(0, 5, (2, 8)), torch.randint(0, 4, (2, 8))  # rows 5-9 unused
    unused = embedding.weight.detach()[5:].clone()
    opt = cls([*embedding.parameters(), *head.parameters()], lr=1e-2, weight_decay=0.0,
              update_period=2)
    for _ in range(4):
        opt.zero_grad()
        logits = head(embedding(tokens))  # (B, T, V)
        opt.backward(F.cross_entropy(logits.flatten(0, 1), y.flatten()), logits=logits)
        opt.step()
    assert torch.equal(embedding.weight.detach()[5:], unused)
    assert all(torch.isfinite(p).all() for p in [*embedding.parameters(), *head.parameters()])


def test_label_grad_clip_clips_the_sampled_gradient_as_the_official_script() -> None:
    # train_sophiag.py: clip_grad_norm_(model.parameters(), grad_clip) on the resampled-label
    # gradient, over all parameters (here in two groups), before update_hessian squares it
    x, y, model = _softmax_regression((16,))
    expected = _estimate_by_hand(model, x, model(x), 5, grad_clip=0.05)
    unclipped = _estimate_by_hand(model, x, model(x), 5)
    opt = SophiaG([{"params": [model.weight]}, {"params": [model.bias]}], lr=1e-2,
                  betas=(0.9, 0.5), label_grad_clip=0.05, seed=5)
    _step(opt, model, x, y)
    for p, d, full in zip(model.parameters(), expected, unclipped):
        np.testing.assert_allclose(opt.state[p]["hessian"].numpy(), 0.5 * d, rtol=1e-12)
        assert (0.5 * full > opt.state[p]["hessian"].numpy()).any()  # it did clip


def test_label_grad_clip_is_off_by_default_and_old_state_dicts_load() -> None:
    *_, model = _softmax_regression((8,))
    opt = SophiaG(model.parameters())
    assert opt.param_groups[0]["label_grad_clip"] == math.inf
    saved = opt.state_dict()
    del saved["param_groups"][0]["label_grad_clip"]  # saved before the option existed
    resumed = SophiaG(model.parameters(), label_grad_clip=1.0)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["label_grad_clip"] == 1.0
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match=r"label_grad_clip must be in \(0, inf\]"):
            SophiaG(model.parameters(), label_grad_clip=bad)


def test_win_rate_counts_as_the_official_script() -> None:
    # train_sophiag.py: |exp_avg| < rho * bs * hessian, strict and with no eps: a coordinate
    # with m = h = 0 (here the third) counts as clipped
    w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = SophiaG([w], lr=1.0, betas=(0.0, 0.0), rho=1.0, weight_decay=0.0)
    w.grad = torch.tensor([1.0, 1.0, 0.0, -3.0, 1.0], dtype=torch.float64)
    opt.set_curvature([torch.tensor([0.5, 2.0, 0.0, 1.0, 1.0], dtype=torch.float64)])
    opt.step()  # |m| / h = 2, 0.5, 0 / 0, 3, 1: one unclipped (1 < 1 is false)
    assert opt.win_rate() == 0.2
    torch.testing.assert_close(w.detach(), -torch.tensor([1.0, 0.5, 0.0, -1.0, 1.0],
                                                          dtype=torch.float64))


def test_win_rate_rises_with_rho() -> None:
    # the direction SophiaG's docs give: a larger rho, a larger denominator rho * h, fewer
    # clipped coordinates. 20 steps of real training (GNB estimates every 5) on one problem;
    # rho spans three decades, so the order is far from noise (measured 0.01, 0.04, 0.15, 0.62)
    rates = []
    for rho in (0.004, 0.04, 0.4, 4.0):
        x, y, model = _softmax_regression((64,), n_in=20, classes=10)
        opt = SophiaG(model.parameters(), lr=1e-2, rho=rho, update_period=5, seed=0)
        for _ in range(20):
            _step(opt, model, x, y)
        rates.append(opt.win_rate())
    assert all(a < b for a, b in zip(rates, rates[1:])), rates
    assert rates[1] < 0.1 < 0.5 < rates[-1]  # the default region near sign descent


def test_win_rate_reads_8bit_state_dequantized() -> None:
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(64, 128, generator=gen)
    curvature = 2 * torch.rand(64, 128, generator=gen) * g.abs()  # |m| / h around 1
    rates = []
    for precision in ("native", "8bit"):
        w = torch.zeros(64, 128, requires_grad=True)
        opt = SophiaG([w], betas=(0.0, 0.0), rho=1.0, state_precision=precision)
        w.grad = g.clone()
        opt.set_curvature([curvature])
        opt.step()
        rates.append(opt.win_rate())
    assert 0.3 < rates[0] < 0.7
    assert abs(rates[1] - rates[0]) < 0.02, rates


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
