"""Loaded state takes the loading optimizer's precision (issue #22): an fp32 checkpoint loaded
into an 8-bit optimizer is quantized (the memory of a natively 8-bit one), 8-bit codes loaded
into an fp32 or bf16 optimizer are dequantized, codes of another block size requantized."""

from __future__ import annotations

import torch

from stochopt.optim import AdaGrad, AdaGrad8bit, AdamW, AdamW8bit
from stochopt.optim._storage import ABSMAX, StateStorage

SHAPE = (64, 160)  # 10240 values: over min_8bit_size, 40 blocks of 256


def _grads(steps: range) -> list[torch.Tensor]:
    return [torch.randn(SHAPE, generator=torch.Generator().manual_seed(t)) * 0.01 for t in steps]


def _run(opt: torch.optim.Optimizer, p: torch.Tensor, grads: list[torch.Tensor]) -> None:
    for g in grads:
        p.grad = g.clone()
        opt.step()


def _param() -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.randn(SHAPE, generator=torch.Generator().manual_seed(99)))


def _state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())


def _dequantized(opt: torch.optim.Optimizer, state: dict[str, torch.Tensor],
                 name: str) -> torch.Tensor:
    block_size = opt.param_groups[0]["block_size"]
    return StateStorage(block_size, opt.nonnegative_states).load(state, name)


def test_an_fp32_torch_checkpoint_loads_into_adamw8bit_as_8bit_state() -> None:
    reference = _param()
    torch_opt = torch.optim.AdamW([reference], lr=1e-3)
    _run(torch_opt, reference, _grads(range(10)))
    p = torch.nn.Parameter(reference.detach().clone())
    opt = AdamW8bit([p], lr=1e-3)
    opt.load_state_dict(torch_opt.state_dict())
    native_p = _param()
    native = AdamW8bit([native_p], lr=1e-3)
    _run(native, native_p, _grads(range(1)))
    assert {k: v.dtype for k, v in opt.state[p].items()} == {
        k: v.dtype for k, v in native.state[native_p].items()}
    assert _state_bytes(opt) == _state_bytes(native) < 0.3 * _state_bytes(torch_opt)
    for name in ("exp_avg", "exp_avg_sq"):  # the block scales are the blocks' maxima
        exact = torch_opt.state[reference][name].reshape(-1, 256).abs().amax(dim=1)
        assert torch.equal(opt.state[p][name + ABSMAX], exact), name
    # 8-bit tolerance: with lr 1e-3, 10 more Adam steps move each value by at most about 1e-2;
    # moments held to one step of the 8-bit map (up to 1.4% of a block's maximum) change that
    # by a few percent, so atol 1e-3 (measured: 2e-4 at most)
    _run(torch_opt, reference, _grads(range(10, 20)))
    _run(opt, p, _grads(range(10, 20)))
    torch.testing.assert_close(p, reference, rtol=1e-3, atol=1e-3)


def test_an_8bit_checkpoint_loads_into_an_fp32_optimizer_dequantized() -> None:
    p8 = _param()
    eight = AdaGrad8bit([p8], lr=1e-2)
    _run(eight, p8, _grads(range(5)))
    p = torch.nn.Parameter(p8.detach().clone())
    opt = AdaGrad([p], lr=1e-2)  # native: float32 state
    opt.load_state_dict(eight.state_dict())
    assert opt.state[p]["sum"].dtype == torch.float32 and "sum" + ABSMAX not in opt.state[p]
    assert torch.equal(opt.state[p]["sum"], _dequantized(eight, eight.state[p8], "sum"))
    assert opt.param_groups[0]["state_precision"] == "native"
    _run(opt, p, _grads(range(5, 6)))  # and it steps from there
    assert opt.state[p]["step"].item() == 6


def test_8bit_codes_load_into_bf16_state_and_bf16_into_fp32() -> None:
    p8 = _param()
    eight = AdamW8bit([p8])
    _run(eight, p8, _grads(range(3)))
    p = torch.nn.Parameter(p8.detach().clone())
    bf16 = AdamW([p], state_precision="bf16")
    bf16.load_state_dict(eight.state_dict())
    expected = _dequantized(eight, eight.state[p8], "exp_avg").to(torch.bfloat16)
    assert torch.equal(bf16.state[p]["exp_avg"], expected)
    fp32 = AdamW([p], state_precision="fp32")
    fp32.load_state_dict(bf16.state_dict())
    assert torch.equal(fp32.state[p]["exp_avg"], expected.float())


def test_8bit_codes_of_another_block_size_are_requantized() -> None:
    p8 = _param()
    eight = AdamW8bit([p8])
    _run(eight, p8, _grads(range(3)))
    p = torch.nn.Parameter(p8.detach().clone())
    opt = AdamW8bit([{"params": [p], "block_size": 128}])
    opt.load_state_dict(eight.state_dict())
    assert opt.param_groups[0]["block_size"] == 128
    for name in ("exp_avg", "exp_avg_sq"):
        assert opt.state[p][name + ABSMAX].numel() == p.numel() // 128
        values = _dequantized(eight, eight.state[p8], name)
        requantized: dict[str, torch.Tensor] = {}
        StateStorage(128, opt.nonnegative_states).create(requantized, name, values, "8bit", 0)
        assert torch.equal(opt.state[p][name], requantized[name]), name
