"""Low-bit state for every optimizer: tracking the fp32 twin (bitsandbytes' protocol), memory,
signs, thresholds, overrides and bit-exact resume."""

from __future__ import annotations

import io

import pytest
import torch

from stochopt.optim import AdamW, AdamW8bit, CurvatureOptimizer, override_state_precision
from stochopt.optim._storage import StateStorage
from tests.optim.db import OPTIM_DB, OptimizerInfo
from tests.optim.helpers import estimates_for, run

EIGHT_BIT = [info for info in OPTIM_DB if info.name != "AdaGradNorm"]  # its state is scalars
# AdaHessian keeps an EMA of the *squared* curvature, which spans twice the decades of the
# curvature itself; entries more than seven decades below their block's maximum round to 0
# and then step by m / eps. Its 8-bit state works (state_dict test below) but does not meet
# bitsandbytes' Adam tolerances, as its docstring says.
TRACKING = [info for info in EIGHT_BIT if info.name != "AdaHessian"]


def _step(opt: torch.optim.Optimizer, p: torch.Tensor, g: torch.Tensor) -> None:
    """One step; curvature optimizers get a non-negative, GNB-like estimate 1000 g^2 (8-bit
    SophiaG stores its curvature with the unsigned map, as it is never negative)."""
    p.grad = g.clone()
    if isinstance(opt, CurvatureOptimizer) and opt.curvature_due:
        opt.set_curvature([1000 * g * g])
    opt.step()


def _pair(info: OptimizerInfo, shape: tuple[int, ...], **kwargs):
    gen = torch.Generator().manual_seed(0)
    p32 = (torch.randn(shape, generator=gen) * 0.1).requires_grad_()
    p8 = p32.detach().clone().requires_grad_()
    kwargs = {"lr": 1e-3, **kwargs}
    return p32, p8, info.cls([p32], **kwargs), info.cls([p8], state_precision="8bit", **kwargs)


@pytest.mark.parametrize("info", TRACKING, ids=lambda info: info.name)
@pytest.mark.parametrize("shape", [(1024, 32), (33, 257)], ids=["1024x32", "33x257-tail"])
def test_tracks_its_fp32_twin_within_bitsandbytes_tolerances(info, shape) -> None:
    """bitsandbytes' test_optimizer8bit: each step, fewer than 20 dequantized state values
    outside atol 3e-3 / rtol 1e-3 of the fp32 state, mean parameter error < 6e-5 and mean
    relative error < 6e-4; then the fp32 twin is re-synchronized to the 8-bit one.

    bitsandbytes' 6e-5 is 6% of Adam's step at lr 1e-3; for optimizers whose steps have
    another size the parameter bound is 6% of the fp32 twin's mean step (for AdamW the two
    agree), and the relative bound scales alike."""
    p32, p8, opt32, opt8 = _pair(info, shape)
    storage = opt8._storage_for(opt8.param_groups[0])
    gen = torch.Generator().manual_seed(1)
    for _ in range(50):
        g = torch.randn(shape, generator=gen) * 0.01
        before = p32.detach().clone()
        _step(opt32, p32, g)
        _step(opt8, p8, g)
        scale = max(1.0, (p32.detach() - before).abs().mean().item() / 1e-3)
        for name in storage.names(opt8.state[p8]):
            dequantized = storage.load(opt8.state[p8], name)
            close = torch.isclose(dequantized, opt32.state[p32][name], atol=3e-3, rtol=1e-3)
            assert (~close).sum() < 20, name
            opt32.state[p32][name].copy_(dequantized)
        error = (p32.detach() - p8.detach()).abs()
        assert error.mean() < 6e-5 * scale
        assert (error / (p32.detach().abs() + 1e-9)).mean() < 6e-4 * scale
        with torch.no_grad():
            p32.copy_(p8)
    assert any(v.dtype == torch.uint8 for v in opt8.state[p8].values())


def test_first_moment_keeps_its_sign() -> None:
    info = OPTIM_DB[0]
    p32, p8, opt32, opt8 = _pair(info, (64, 128))
    storage = opt8._storage_for(opt8.param_groups[0])
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        g = torch.randn(64, 128, generator=gen) * 0.01
        run(opt32, [p32], [[g]])
        run(opt8, [p8], [[g]])
        m8 = storage.load(opt8.state[p8], "exp_avg")
        m32 = opt32.state[p32]["exp_avg"]
        assert bool(((m8 == 0) | (torch.sign(m8) == torch.sign(m32))).all())
        opt32.state[p32]["exp_avg"].copy_(m8)


def test_state_memory_is_at_most_2_05_bytes_per_parameter() -> None:
    p = torch.zeros(1_000_000, requires_grad=True)
    opt = AdamW8bit([p])
    p.grad = torch.randn(1_000_000)
    opt.step()
    state_bytes = sum(v.numel() * v.element_size() for k, v in opt.state[p].items() if k != "step")
    assert state_bytes / p.numel() <= 2.05  # 2 codes + 2 absmax per 256 values: 2.031


def test_small_tensors_and_overridden_parameters_keep_full_precision() -> None:
    big = torch.zeros(4096, requires_grad=True)
    small = torch.zeros(4095, requires_grad=True)
    embedding = override_state_precision(torch.nn.Parameter(torch.zeros(8192)), "fp32")
    opt = AdamW8bit([big, small, embedding])
    for p in (big, small, embedding):
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt.state[big]["exp_avg"].dtype == torch.uint8
    assert opt.state[small]["exp_avg"].dtype == torch.float32
    assert opt.state[embedding]["exp_avg"].dtype == torch.float32
    custom = AdamW([{"params": [big], "min_8bit_size": 10_000}], state_precision="8bit")
    big.grad = torch.ones_like(big)
    custom.step()
    assert custom.state[big]["exp_avg"].dtype == torch.float32


@pytest.mark.parametrize("info", EIGHT_BIT, ids=lambda info: info.name)
def test_state_dict_round_trip_is_bit_exact(info) -> None:
    p, twin, _, opt = _pair(info, (40, 130))
    twin = p.detach().clone().requires_grad_()
    p = opt.param_groups[0]["params"][0]
    gen = torch.Generator().manual_seed(3)
    stream = [[torch.randn(40, 130, generator=gen) * 0.01] for _ in range(20)]
    run(opt, [p], stream[:10])
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    with torch.no_grad():
        twin.copy_(p)
    resumed = info.cls([twin], lr=1e-3, state_precision="8bit")
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for name, value in opt.state[p].items():
        assert resumed.state[twin][name].dtype == value.dtype, name
    run(opt, [p], stream[10:])
    run(resumed, [twin], stream[10:])
    assert torch.equal(p, twin)
    for name, value in opt.state[p].items():
        assert torch.equal(resumed.state[twin][name], value), name


def test_bf16_state_tracks_fp32() -> None:
    info = OPTIM_DB[0]
    p32, pb, opt32, _ = _pair(info, (64, 64))
    optb = info.cls([pb], lr=1e-3, state_precision="bf16")
    gen = torch.Generator().manual_seed(4)
    for _ in range(30):
        g = torch.randn(64, 64, generator=gen) * 0.01
        run(opt32, [p32], [[g]])
        run(optb, [pb], [[g]])
    assert optb.state[pb]["exp_avg"].dtype == torch.bfloat16
    torch.testing.assert_close(pb, p32, atol=2e-4, rtol=1e-3)


def test_fused_8bit_matches_reference_8bit() -> None:
    info = OPTIM_DB[0]
    _, p_ref, _, ref = _pair(info, (40, 130))
    p_fused = p_ref.detach().clone().requires_grad_()
    fused = info.cls([p_fused], lr=1e-3, state_precision="8bit", fused=True)
    gen = torch.Generator().manual_seed(5)
    stream = [[torch.randn(40, 130, generator=gen) * 0.01] for _ in range(10)]
    run(ref, [p_ref], stream)
    run(fused, [p_fused], stream)
    torch.testing.assert_close(p_fused, p_ref, atol=1e-6, rtol=1e-5)
    codes_ref, codes_fused = ref.state[p_ref]["exp_avg"], fused.state[p_fused]["exp_avg"]
    assert (codes_ref == codes_fused).float().mean() > 0.999  # ties may round either way
    assert not fused._fused_failed
    assert estimates_for(fused, [None]) is None
    assert isinstance(fused._storage_for(fused.param_groups[0]), StateStorage)
