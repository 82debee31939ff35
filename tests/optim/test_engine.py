"""Contract tests of the optimizer engine, run over every optimizer in ``OPTIM_DB``."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

from stochopt.errors import FusedFallbackWarning, UnsupportedError
from stochopt.optim import _engine
from tests.optim.db import OPTIM_DB, OptimizerInfo
from tests.optim.helpers import (
    as_numpy,
    assert_same_state,
    clone_params,
    estimates_for,
    grad_stream,
    make_params,
    run,
)

# Each reference-matching test runs 100 steps; rtol 1e-6 is the bar and far above the
# float64 rounding of 100 steps (~1e-13), while any misplaced eps, bias correction or decay
# term moves results by more than 1e-3 relative.
RTOL, ATOL = 1e-6, 1e-12


def _cases(attr: str):
    return [pytest.param(info, cfg, id=f"{info.name}-{i}")
            for info in OPTIM_DB for i, cfg in enumerate(getattr(info, attr))]


def _by_info(fn=None):
    return pytest.mark.parametrize("info", OPTIM_DB, ids=lambda info: info.name)(fn)


@pytest.mark.parametrize(("info", "config"), _cases("configs"))
def test_matches_reference_transcription(info: OptimizerInfo, config: dict) -> None:
    params = make_params()
    opt = info.cls(params, **config, fused=False)
    ref = info.reference(**{k: v for k, v in opt.defaults.items() if k != "fused"})
    arrays = as_numpy(params)
    stream = grad_stream(params, steps=100)
    for grads in stream:
        estimates = estimates_for(opt, grads)
        run(opt, params, [grads])
        ref.step(arrays, [g.numpy() for g in grads],
                 None if estimates is None else [d.numpy() for d in estimates])
    for i, (p, a) in enumerate(zip(params, arrays)):
        np.testing.assert_allclose(p.detach().numpy(), a, rtol=RTOL, atol=ATOL,
                                   err_msg=f"param {i}")
        for name, value in ref.state[i].items():
            if name != "step":
                np.testing.assert_allclose(opt.state[p][name].numpy(), value, rtol=RTOL,
                                           atol=ATOL, err_msg=f"param {i} state {name}")
        assert opt.state[p]["step"].item() == ref.state[i]["step"] == 100


@pytest.mark.parametrize(("info", "config"), _cases("fused_configs"))
def test_fused_matches_reference(info: OptimizerInfo, config: dict) -> None:
    params = make_params()
    twins = clone_params(params)
    fused = info.cls(params, **config, fused=True)
    reference = info.cls(twins, **config, fused=False)
    stream = grad_stream(params, steps=12, frozen=(2, range(4, 7)))
    run(fused, params, stream)
    run(reference, twins, stream)
    # inductor may contract a*b+c into an FMA or reorder scalar math: a few ulps per step
    assert_same_state(fused, reference, params, twins, exact=False, rtol=1e-12, atol=1e-14)
    assert not fused._fused_failed


@_by_info
def test_state_dict_round_trip_resumes_bit_exactly(info: OptimizerInfo) -> None:
    config = info.configs[-1]
    params = make_params()
    opt = info.cls(params, **config, fused=False)
    stream = grad_stream(params, steps=20)
    run(opt, params, stream[:10])

    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    twins = clone_params(params)
    resumed = info.cls(twins, **info.configs[0], fused=False)  # groups come from the file
    resumed.load_state_dict(loaded)
    assert resumed.param_groups[0]["lr"] == opt.param_groups[0]["lr"]

    run(opt, params, stream[10:])
    run(resumed, twins, stream[10:])
    assert_same_state(opt, resumed, params, twins)


@_by_info
def test_loaded_state_does_not_alias_the_source(info: OptimizerInfo) -> None:
    params = make_params()
    opt = info.cls(params, fused=False)
    run(opt, params, grad_stream(params, steps=2))
    other = info.cls(clone_params(params), fused=False)
    other.load_state_dict(opt.state_dict())
    for p, q in zip(opt.param_groups[0]["params"], other.param_groups[0]["params"]):
        for name, value in opt.state[p].items():
            assert value.data_ptr() != other.state[q][name].data_ptr() or value.numel() == 0


@_by_info
def test_none_grad_is_skipped(info: OptimizerInfo) -> None:
    params = make_params()
    before = params[2].detach().clone()
    opt = info.cls(params, fused=False)
    run(opt, params, grad_stream(params, steps=5, frozen=(2, range(5))))
    assert torch.equal(params[2].detach(), before)
    assert params[2] not in opt.state
    assert opt.state[params[3]]["step"].item() == 5


@_by_info
def test_sparse_gradient_contract(info: OptimizerInfo) -> None:
    weight = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    opt = info.cls([weight], fused=False)
    weight.grad = torch.sparse_coo_tensor([[1, 4]], torch.ones(2, 3, dtype=torch.float64),
                                          (6, 3), check_invariants=True)
    if info.cls.supports_sparse:
        opt.step()  # behaviour checked in the optimizer's own test module
        assert opt.state[weight]["step"].item() == 1
    else:
        with pytest.raises(UnsupportedError, match=rf"{info.name} does not support sparse "
                                                   r"gradients.*parameter 0 of param group 0"):
            opt.step()


@_by_info
def test_complex_parameter_equals_its_real_view(info: OptimizerInfo) -> None:
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(3, 2, dtype=torch.complex128, generator=gen).requires_grad_()
    x = torch.view_as_real(z.detach()).clone().requires_grad_()
    opt_z, opt_x = info.cls([z], fused=False), info.cls([x], fused=False)
    for _ in range(10):
        gz = torch.randn(3, 2, dtype=torch.complex128, generator=gen)
        run(opt_z, [z], [[gz]])
        run(opt_x, [x], [[torch.view_as_real(gz).clone()]])
    assert torch.equal(torch.view_as_real(z.detach()), x.detach())
    for name, value in opt_x.state[x].items():
        assert torch.equal(opt_z.state[z][name], value), name


@_by_info
def test_maximize_equals_minimizing_the_negation(info: OptimizerInfo) -> None:
    params, twins = make_params(), make_params()
    stream = grad_stream(params, steps=10)
    run(info.cls(params, maximize=True, fused=False), params, stream)
    negated = [[None if g is None else -g for g in grads] for grads in stream]
    run(info.cls(twins, fused=False), twins, negated)
    for p, q in zip(params, twins):
        assert torch.equal(p, q)


@_by_info
def test_tensor_lr_equals_float_lr(info: OptimizerInfo) -> None:
    lr = info.configs[0]["lr"]
    params, twins = make_params(), make_params()
    stream = grad_stream(params, steps=10)
    run(info.cls(params, lr=torch.tensor(lr, dtype=torch.float64), fused=False), params, stream)
    run(info.cls(twins, lr=lr, fused=False), twins, stream)
    for p, q in zip(params, twins):
        assert torch.equal(p, q)


@_by_info
def test_param_groups_keep_their_own_hyperparameters(info: OptimizerInfo) -> None:
    params = make_params()
    frozen = [p.detach().clone() for p in params[:2]]
    opt = info.cls([{"params": params[:2], "lr": 0.0}, {"params": params[2:]}], fused=False)
    moving = [p.detach().clone() for p in params[2:]]
    run(opt, params, grad_stream(params, steps=3))
    assert all(torch.equal(p, f) for p, f in zip(params[:2], frozen))
    assert not any(torch.equal(p, m) for p, m in zip(params[2:], moving))


@_by_info
def test_bad_hyperparameters_are_refused(info: OptimizerInfo) -> None:
    for case in info.errors:
        with pytest.raises(case.error, match=case.match):
            info.cls([torch.zeros(2, requires_grad=True)], **case.kwargs)
    with pytest.raises(ValueError, match="lr must be in"):
        info.cls([{"params": [torch.zeros(2, requires_grad=True)], "lr": -1.0}])


@_by_info
def test_closure_is_called_once_with_grad_enabled(info: OptimizerInfo) -> None:
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = info.cls([w], fused=False)
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        estimates = estimates_for(opt, [w.grad])
        if estimates is not None:
            opt.set_curvature(estimates)
        return loss

    loss = opt.step(closure)
    assert calls == [True]
    assert loss.item() == 5.0
    assert not torch.equal(w.detach(), torch.tensor([1.0, -2.0]))


@_by_info
def test_deepcopy_continues_identically(info: OptimizerInfo) -> None:
    params = make_params()
    opt = info.cls(params, fused=False)
    stream = grad_stream(params, steps=6)
    run(opt, params, stream[:3])
    twins = copy.deepcopy(params)
    clone = copy.deepcopy(opt)
    clone_params_ = clone.param_groups[0]["params"]
    run(opt, params, stream[3:])
    run(clone, clone_params_, stream[3:])
    assert all(torch.equal(p, q) for p, q in zip(params, clone_params_))
    assert len(twins) == len(params)


@_by_info
def test_half_precision_parameters_compute_in_float32(info: OptimizerInfo) -> None:
    params32 = make_params(torch.float32)
    params16 = [p.detach().to(torch.bfloat16).requires_grad_() for p in params32]
    stream = grad_stream(params32, steps=5)
    run(info.cls(params32, fused=False), params32, stream)
    opt16 = info.cls(params16, fused=False)
    run(opt16, params16, [[g.to(torch.bfloat16) for g in grads] for grads in stream])
    for p16, p32 in zip(params16, params32):
        assert p16.dtype == torch.bfloat16
        assert all(v.dtype == torch.bfloat16 for k, v in opt16.state[p16].items() if k != "step")
        torch.testing.assert_close(p16.float(), p32.detach(), rtol=2e-2, atol=2e-2)


def test_fused_path_falls_back_when_compilation_fails(monkeypatch) -> None:
    def broken_compile(fn):
        def fail(*args, **kwargs):
            raise RuntimeError("no working C++ compiler")
        return fail

    monkeypatch.setattr(_engine, "_private_compile", broken_compile)
    info = OPTIM_DB[0]
    params, twins = make_params(), make_params()
    stream = grad_stream(params, steps=3)
    fused = info.cls(params, fused=True)
    with pytest.warns(FusedFallbackWarning, match="no working C\\+\\+ compiler"):
        run(fused, params, stream)
    run(info.cls(twins, fused=False), twins, stream)
    assert all(torch.equal(p, q) for p, q in zip(params, twins))


def test_changing_lr_does_not_recompile() -> None:
    info = OPTIM_DB[0]
    params = make_params(torch.float32)
    opt = info.cls(params, lr=1e-3, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    stream = grad_stream(params, steps=6)
    run(opt, params, stream[:1])
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for grads in stream[1:]:
        scheduler.step()
        run(opt, params, [grads])
    assert opt.param_groups[0]["lr"] < 1e-3 / 5
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    assert not opt._fused_failed
