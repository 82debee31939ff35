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
