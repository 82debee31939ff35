"""AdaHessian: the official rule with real Hutchinson estimates, step for step against a
transcription of the official code, kernel averaging, and the probe distribution."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.optim import AdaHessian


def test_first_steps_by_hand_on_a_diagonal_quadratic() -> None:
    # f = sum(a x^2 / 2): Rademacher probes give z * Hz = a exactly, so D = |a|
    a = torch.tensor([2.0, -0.5, 8.0], dtype=torch.float64)
    x = torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64, requires_grad=True)
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-4
    opt = AdaHessian([x], lr=lr, betas=(b1, b2), eps=eps)
    expected = x.detach().clone()
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    for t in (1, 2):
        opt.zero_grad()
        opt.backward(0.5 * (a * x * x).sum())
        g = a * expected
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * a * a
        denom = v.sqrt() / math.sqrt(1 - b2**t) + eps
        expected = expected - lr * m / (1 - b1**t) / denom
        torch.testing.assert_close(x.detach(), expected, rtol=1e-14, atol=0.0)


def test_convolution_kernels_are_averaged_over_spatial_positions() -> None:
    kernel4 = torch.zeros(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    kernel3 = torch.zeros(2, 3, 4, dtype=torch.float64, requires_grad=True)
    matrix = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    params = [kernel4, kernel3, matrix]
    opt = AdaHessian(params, betas=(0.9, 0.5))
    estimates = [torch.arange(p.numel(), dtype=torch.float64).view(p.shape) - 3 for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    opt.set_curvature(estimates)
    opt.step()
    for p, d in zip(params, estimates):
        D = d.abs()
        if D.ndim >= 3:
            D = D.mean(dim=tuple(range(2, D.ndim)), keepdim=True).expand_as(D)
        torch.testing.assert_close(opt.state[p]["exp_hessian_diag_sq"], 0.5 * D * D)


def test_hessian_power_and_defaults() -> None:
    x = torch.zeros(1, requires_grad=True)
    opt = AdaHessian([x])
    group = opt.param_groups[0]
    assert (group["lr"], group["eps"], group["hessian_power"], group["update_period"]) == (
        0.15, 1e-4, 1.0, 1)
    with pytest.raises(ValueError, match=r"hessian_power must be in \[0, 1\], got 2"):
        AdaHessian([x], hessian_power=2)


class _OfficialAdaHessian:
    """``Adahessian`` of ``image_classification/optim_adahessian.py`` in
    amirgholami/adahessian, commit 935a0476aeb8f76b397d9ef4f04d59d7783abfec, transcribed
    statement by statement for one param group on a single device (``single_gpu=True``).

    Only the probe source differs: the official code draws ``2 * randint_like(p, high=2) - 1``
    from the global generator; here the same signs come from ``generator``, drawn as the
    library draws them, so both optimizers see the same probes. Its gradients come from
    ``torch.autograd.grad(..., create_graph=True)`` rather than ``p.grad``.
    """

    def __init__(self, params, lr, betas, eps, weight_decay, hessian_power, generator):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.weight_decay, self.hessian_power, self.generator = (weight_decay, hessian_power,
                                                                 generator)
        self.state = {p: {} for p in params}

    def get_trace(self, params, grads):
        v = [(torch.randint(0, 2, p.shape, generator=self.generator) * 2 - 1).to(p.dtype)
             for p in params]
        hvs = torch.autograd.grad(grads, params, grad_outputs=v, only_inputs=True,
                                  retain_graph=True)
        hutchinson_trace = []
        for hv in hvs:
            param_size = hv.size()
            if len(param_size) <= 2:
                tmp_output = hv.abs()
            elif len(param_size) == 4:
                tmp_output = torch.mean(hv.abs(), dim=[2, 3], keepdim=True)
            hutchinson_trace.append(tmp_output)
        return hutchinson_trace

    def step(self, grads):
        params = self.params
        hut_traces = self.get_trace(params, grads)
        for p, grad, hut_trace in zip(params, grads, hut_traces):
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p.data)
                state["exp_hessian_diag_sq"] = torch.zeros_like(p.data)
            exp_avg, exp_hessian_diag_sq = state["exp_avg"], state["exp_hessian_diag_sq"]
            beta1, beta2 = self.betas
            state["step"] += 1
            exp_avg.mul_(beta1).add_(grad.detach(), alpha=1 - beta1)
            exp_hessian_diag_sq.mul_(beta2).addcmul_(hut_trace, hut_trace, value=1 - beta2)
            bias_correction1 = 1 - beta1 ** state["step"]
            bias_correction2 = 1 - beta2 ** state["step"]
            k = self.hessian_power
            denom = ((exp_hessian_diag_sq.sqrt() ** k) / math.sqrt(bias_correction2) ** k).add_(
                self.eps)
            p.data = p.data - self.lr * (exp_avg / bias_correction1 / denom
                                         + self.weight_decay * p.data)


def _conv_net_params() -> list[torch.Tensor]:
    """A conv kernel (2, 3, 3, 3), its bias (2,), a linear weight (1, 32), its bias (1,) and a
    0-d scale: every rank the official code handles."""
    gen = torch.Generator().manual_seed(11)
    shapes = ((2, 3, 3, 3), (2,), (1, 32), (1,), ())
    return [(0.3 * torch.randn(s, generator=gen, dtype=torch.float64)).requires_grad_()
            for s in shapes]


def _conv_net_loss(params: list[torch.Tensor], x: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2, s = params
    h = torch.tanh(torch.nn.functional.conv2d(x, w1, b1))  # (B, 2, 4, 4)
    out = h.flatten(1) @ w2.t() + b2  # (B, 1)
    return (out - target).square().mean() + 0.5 * (s - 1) ** 2 * h.square().mean()


@pytest.mark.parametrize(("hessian_power", "weight_decay", "maximize"),
                         [(1.0, 0.0, False), (0.5, 1e-3, False), (1.0, 1e-3, True),
                          (0.5, 0.0, True)])  # each flag both ways, each pair of flags once
def test_matches_the_official_code_step_for_step(hessian_power: float, weight_decay: float,
                                                 maximize: bool) -> None:
    """Real Hessian-vector products on a small conv net, float64, 40 steps. Maximizing ``L``
    is the official code minimizing ``-L`` (its ``|Hz|`` is the same for both). The two
    round the EMAs differently, by about 1e-16 relative per step; rtol 1e-11 leaves a wide
    margin over 40 steps while any difference in the rule (a bias correction, the power,
    the kernel average, the decay term) is orders of magnitude larger."""
    kwargs = dict(lr=0.05, betas=(0.9, 0.99), eps=1e-4, weight_decay=weight_decay,
                  hessian_power=hessian_power)
    ours = _conv_net_params()
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt = AdaHessian(ours, **kwargs, maximize=maximize, seed=5)
    generator = torch.Generator()
    generator.set_state(opt.state_dict()["generator"])
    official = _OfficialAdaHessian(theirs, **kwargs, generator=generator)
    sign = -1.0 if maximize else 1.0
    data = torch.Generator().manual_seed(12)
    for t in range(40):
        x = torch.randn(6, 3, 6, 6, generator=data, dtype=torch.float64)
        target = torch.randn(6, 1, generator=data, dtype=torch.float64)
        opt.zero_grad()
        opt.backward(_conv_net_loss(ours, x, target))
        opt.step()
        loss = sign * _conv_net_loss(theirs, x, target)
        official.step(list(torch.autograd.grad(loss, theirs, create_graph=True)))
        for i, (p, q) in enumerate(zip(ours, theirs)):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-11, atol=1e-14,
                                       msg=lambda m, i=i, t=t: f"step {t}, param {i}: {m}")
    for p, q in zip(ours, theirs):
        for name in ("exp_avg", "exp_hessian_diag_sq"):
            torch.testing.assert_close(opt.state[p][name], official.state[q][name],
                                       rtol=1e-11, atol=1e-14)
