"""AdaGrad-Norm: b² += ‖g‖² exactly in each mode, its contract, and its robustness claim."""

from __future__ import annotations

import pytest
import torch

from stochopt.optim import AdaGradNorm, Reduction


def _two_params() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    w = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    gw = torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]], dtype=torch.float64)  # rows: 9, 25
    gb = torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64)  # 6
    return w, b, gw, gb


@pytest.mark.parametrize(("mode", "b_sq_w", "b_sq_b"), [
    ("global", torch.tensor(1.0 + 40.0), torch.tensor(1.0 + 40.0)),
    ("tensor", torch.tensor(1.0 + 34.0), torch.tensor(1.0 + 6.0)),
    ("row", torch.tensor([[1.0 + 9.0], [1.0 + 25.0]]), torch.tensor(1.0 + 6.0)),
])
def test_one_step_by_hand(mode: str, b_sq_w: torch.Tensor, b_sq_b: torch.Tensor) -> None:
    w, b, gw, gb = _two_params()
    opt = AdaGradNorm([w, b], lr=0.5, mode=mode, initial_accumulator_value=1.0)
    w.grad, b.grad = gw, gb
    opt.step()
    b_sq_w, b_sq_b = b_sq_w.double(), b_sq_b.double()
    assert torch.equal(opt.state[w]["sum_sq"], b_sq_w)
    assert torch.equal(opt.state[b]["sum_sq"], b_sq_b)
    torch.testing.assert_close(w.detach(), -0.5 * gw / b_sq_w.sqrt(), rtol=1e-15, atol=0.0)
    torch.testing.assert_close(b.detach(), -0.5 * gb / b_sq_b.sqrt(), rtol=1e-15, atol=0.0)


def test_global_accumulator_grows_by_the_squared_norm_each_step() -> None:
    w, b, _, _ = _two_params()
    opt = AdaGradNorm([w, b], lr=0.1, initial_accumulator_value=0.5)
    gen = torch.Generator().manual_seed(0)
    expected = 0.5
    for _ in range(20):
        w.grad = torch.randn(2, 3, generator=gen, dtype=torch.float64)
        b.grad = torch.randn(3, generator=gen, dtype=torch.float64)
        expected += w.grad.square().sum().item() + b.grad.square().sum().item()
        opt.step()
        assert opt.state[w]["sum_sq"].item() == pytest.approx(expected, rel=1e-14)
        assert torch.equal(opt.state[w]["sum_sq"], opt.state[b]["sum_sq"])


def test_declares_its_distribution_contract() -> None:
    w = torch.zeros(2, requires_grad=True)
    for mode, reduction in [("global", Reduction.GLOBAL), ("tensor", Reduction.TENSOR),
                            ("row", Reduction.ROW)]:
        opt = AdaGradNorm([w], mode=mode)
        assert opt.reduction(opt.param_groups[0]) is reduction


def test_converges_from_a_step_size_that_breaks_gradient_descent() -> None:
    # Ward et al.'s claim: AdaGrad-Norm converges without tuning to the smoothness L. On
    # f(x) = sum(L_i x_i^2 / 2) with L up to 100, plain GD at step eta/b_0 = 100 diverges;
    # AdaGrad-Norm grows b until eta/b < 2/L and then converges.
    curvature = torch.logspace(-1, 2, 8, dtype=torch.float64)
    x0 = torch.ones(8, dtype=torch.float64)
    x = x0.clone().requires_grad_()
    opt = AdaGradNorm([x], lr=1.0, initial_accumulator_value=1e-4)
    gd = x0.clone()
    for _ in range(3000):
        x.grad = curvature * x.detach()
        opt.step()
        gd = gd - 100.0 * curvature * gd
    assert not torch.isfinite(gd).all() or gd.abs().max() > 1e6
    b = opt.state[x]["sum_sq"].sqrt().item()
    assert 50.0 < b < 1000.0  # grew past eta * L_max / 2 = 50, then stopped growing
    # every coordinate contracts at rate (1 - L_i / b) per step: the flattest (L = 0.1)
    # reaches about exp(-0.1 * 3000 / b) ~ 0.08, the stiffer ones go to ~0
    assert x.detach()[0].item() < 0.1
    assert x.detach()[curvature >= 1.0].abs().max() < 1e-6


class _AdAdaGradRows:
    """``Adagradnorm.step`` of ``adagradnorm.py`` in timlautk/AdAdaGrad, commit
    135b9aad291ae91ab4aa7e726adc2c0ea833443b, transcribed for 2-d and 4-d tensors with its
    defaults ``momentum=0``, ``lr_decay=0``, ``weight_decay=0`` (its decay is
    ``theta -= lr * lambda * grad``, not ours; its 1-d rule is another, see the class
    docstring). Deprecated overloads are written with ``value=``."""

    def __init__(self, params, lr, initial_accumulator_value):
        self.params, self.lr = params, lr
        self.state = {}
        for p in params:
            grad = p.data
            if len(grad.size()) == 4:
                total = torch.ones_like(grad.view(grad.size()[0], -1))
            else:
                total = torch.ones_like(grad)
            self.state[p] = {"step": 0, "sum": total.mul_(initial_accumulator_value)}

    def step(self):
        for p in self.params:
            grad = p.grad.data
            state = self.state[p]
            state["step"] += 1
            clr = self.lr / (1 + (state["step"] - 1) * 0)
            if len(grad.size()) == 4:
                output_channel = grad.size()[0]
                grad_sqaure = grad.view(output_channel, -1).norm(dim=1, p=2) ** 2
                state["sum"].add_(grad_sqaure.unsqueeze(1))
            else:  # 2-d
                grad_sqaure = grad.norm(dim=1, p=2) ** 2
                state["sum"].add_(grad_sqaure.unsqueeze(1))
            std = state["sum"].sqrt().add_(1e-10).view(*grad.shape)
            p.data.addcdiv_(grad, std, value=-clr)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("initial_accumulator_value", [1e-2, 1.0])
def test_row_mode_matches_adadagrad_step_for_step(initial_accumulator_value: float,
                                                  maximize: bool) -> None:
    """"row" mode is AdAdaGrad's rule on matrices and conv kernels: float64, 100 steps,
    parameters compared after every step. It has no ``maximize`` (maximizing is its
    minimizing with negated gradients) and adds 1e-10 to b, which moves each step by
    lr |g| 1e-10 / b^2 (b >= 0.1, 1e-9 relative): over 100 steps at most 2.3e-11 absolute
    (measured), so atol 1e-10 and rtol 1e-8 cover it, while any other difference in the rule
    (the accumulator's shape or order, the square root) is orders larger."""
    gen = torch.Generator().manual_seed(6)
    shapes = ((4, 3), (3, 2, 3, 3))
    ours = [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_() for s in shapes]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt = AdaGradNorm(ours, lr=0.5, mode="row", initial_accumulator_value=initial_accumulator_value,
                      maximize=maximize)
    official = _AdAdaGradRows(theirs, lr=0.5, initial_accumulator_value=initial_accumulator_value)
    sign = -1.0 if maximize else 1.0
    for _ in range(100):
        for p, q in zip(ours, theirs):
            g = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.grad, q.grad = g, sign * g
        opt.step()
        official.step()
        for p, q in zip(ours, theirs):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-8, atol=1e-10)
    for p, q in zip(ours, theirs):  # one accumulator per row: AdAdaGrad repeats it per entry
        b_sq = opt.state[p]["sum_sq"].reshape(p.shape[0], 1)
        torch.testing.assert_close(b_sq.expand(p.shape[0], q.numel() // q.shape[0]),
                                   official.state[q]["sum"], rtol=1e-12, atol=0.0)
