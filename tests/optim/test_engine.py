"""Contract tests of the optimizer engine, run over every optimizer in ``OPTIM_DB``."""

from __future__ import annotations

import copy
import io
import logging
import warnings

import numpy as np
import pytest
import torch

from stochopt.errors import FusedFallbackWarning, UnsupportedError
from stochopt.optim import AdaGradNorm, AdamW, ProxSGD, _engine, _lifted, _packed
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

# Each reference-matching test runs 100 steps in float64 and checks the parameters after every
# step, the state after the last. The library and the transcriptions round differently (an EMA
# written as b*m + (1-b)*g or in place, a bias correction folded into the step size or not):
# measured, they part by at most 2e-11 relative over 100 steps (AdaGradNorm, whose accumulator
# sums 100 squared norms; 1e-13 or less for the other rules). rtol 1e-9 leaves a 50x margin
# above that, so any larger gap is a difference in the rule, not rounding. atol covers
# entries that pass through 0 (soft thresholding, clipping, a momentum changing sign).
RTOL, ATOL = 1e-9, 1e-13


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
    for t, grads in enumerate(stream, start=1):
        estimates = estimates_for(opt, grads)
        run(opt, params, [grads])
        ref.step(arrays, [g.numpy() for g in grads],
                 None if estimates is None else [d.numpy() for d in estimates])
        ours = np.concatenate([p.detach().numpy().ravel() for p in params])
        theirs = np.concatenate([a.ravel() for a in arrays])
        if not np.allclose(ours, theirs, rtol=RTOL, atol=ATOL):  # step for step
            worst = np.max(np.abs(ours - theirs) - ATOL - RTOL * np.abs(theirs))
            pytest.fail(f"{info.name} {config}: parameters part from the reference at step "
                        f"{t} (by {worst:.3g} beyond the tolerance)")
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
    """Maximizing f equals minimizing -f: negated gradients and, for a Hutchinson estimate
    (the curvature of the loss the gradients are of), a negated estimate; a
    Gauss-Newton-Bartlett estimate is the same for both (see ``stochopt.optim._curvature``)."""
    params, twins = make_params(), make_params()
    maximizer = info.cls(params, maximize=True, fused=False)
    minimizer = info.cls(twins, fused=False)
    flip = -1.0 if getattr(info.cls, "estimator", None) == "hutchinson" else 1.0
    for grads in grad_stream(params, steps=10):
        estimates = estimates_for(maximizer, grads)
        for p, q, g in zip(params, twins, grads):
            p.grad, q.grad = g.clone(), -g
        if estimates is not None:
            maximizer.set_curvature(estimates)
            minimizer.set_curvature([flip * d for d in estimates])
        maximizer.step()
        minimizer.step()
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
    """bf16 parameters with native (bf16) state are stepped by the float32 rule: each step
    equals, bit for bit, a twin with float32 parameters and bf16 state started from the same
    values (parameters, state, gradients and estimates), its parameters then rounded to bf16
    (round to nearest even, as ``copy_`` does). The twin's state is bf16 too because a step
    may store a state and read it back (a curvature refresh, then the update), so the stored
    rounding is part of the rule. Equality, not a tolerance: both compute the same float32
    values, so any difference means some intermediate was rounded to bf16 (8 significant
    bits), as computing in the parameters' dtype would do. The twin is re-synchronized after
    every step, so each step is checked from equal inputs."""
    bf16 = torch.bfloat16
    params = [p.detach().to(bf16).requires_grad_() for p in make_params(torch.float32)]
    twins = [p.detach().float().requires_grad_() for p in params]
    opt16 = info.cls(params, fused=False)
    opt32 = info.cls(twins, state_precision="bf16", fused=False)
    for t, grads in enumerate(grad_stream(params, steps=20), start=1):  # bf16 gradients
        for p, q, g in zip(params, twins, grads):
            p.grad, q.grad = g.clone(), g.float()
        estimates = estimates_for(opt16, grads)
        if estimates is not None:
            opt16.set_curvature(estimates)
            opt32.set_curvature([d.float() for d in estimates])
        opt16.step()
        opt32.step()
        for i, (p, q) in enumerate(zip(params, twins)):
            assert p.dtype == bf16
            assert torch.equal(p.detach(), q.detach().to(bf16)), f"step {t}, param {i}"
            for name, value in opt16.state[p].items():
                if name != "step":
                    assert value.dtype == bf16, name
                    assert torch.equal(value, opt32.state[q][name]), f"step {t}, {i}, {name}"
        with torch.no_grad():
            for p, q in zip(params, twins):
                q.copy_(p)


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


def test_one_graph_serves_every_group_and_step_with_gradients_missing(caplog) -> None:
    """The fused path compiles once per optimizer: three param groups (other lr and decay),
    parameters of equal size when traced and not later, a parameter without a gradient for
    two steps and one that gets its first gradient at step 3 reuse the same graph. One log
    line says that it compiles."""
    gen = torch.Generator().manual_seed(3)
    extra = [torch.randn(shape, generator=gen).requires_grad_()
             for shape in ((7,), (7,), (30,), (4, 6), (2, 2), (9,))]
    params = make_params(torch.float32) + extra
    twins = clone_params(params)

    def groups(ps):
        return [{"params": ps[:5], "lr": 2e-2}, {"params": ps[5:9], "weight_decay": 0.0},
                {"params": ps[9:]}]

    fused, reference = AdamW(groups(params), fused=True), AdamW(groups(twins), fused=False)
    stream = grad_stream(params, steps=6, frozen=(5, range(1, 3)))
    for grads in stream[:3]:
        grads[10] = None  # no gradient (and so no state) until step 3
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    with caplog.at_level(logging.INFO, logger="stochopt.optim"):
        run(fused, params, stream)
        # the fused path keeps its flat views between steps: after a reload (new state
        # tensors) and a parameter whose .data was swapped, it must view the new tensors
        for opt, ps in ((fused, params), (reference, twins)):
            if opt is reference:
                run(reference, twins, stream)
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
            ps[1].data = ps[1].data.clone()
            run(opt, ps, grad_stream(ps, steps=2, seed=5))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs + 1
    assert caplog.text.count("AdamW: compiling the fused step") == 1
    assert not fused._fused_failed
    # float32, 6 steps: inductor's kernels and the reference round differently (a few ulps
    # per step: rtol 1e-5); the frozen parameter and the late one match as well
    assert_same_state(fused, reference, params, twins, exact=False, rtol=1e-5, atol=1e-6)


def test_compiling_a_function_that_steps_warns_of_nothing() -> None:
    """``torch.compile`` of code calling ``opt.step()`` traces the engine without warnings
    (it warned about the ``lru_cache`` of the coefficients' type) and steps as eagerly."""
    params, twins = make_params(), make_params()
    opt, reference = AdamW(params, lr=1e-2), AdamW(twins, lr=1e-2)

    @torch.compile(backend="eager")  # dynamo alone: what warned, without inductor's cost
    def step() -> None:
        opt.step()

    stream = grad_stream(params, steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for grads in stream:
            for p, q, g in zip(params, twins, grads):
                p.grad, q.grad = g.clone(), g.clone()
            step()
            reference.step()
    assert_same_state(opt, reference, params, twins, exact=False, rtol=1e-12, atol=1e-15)


@_by_info
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lists_give_the_tensor_by_tensor_bits(info: OptimizerInfo, dtype, monkeypatch) -> None:
    """The default path runs each rule once on lists (torch._foreach_* where it can): on the
    CPU the very kernels of the tensor-by-tensor run, so the same bits, every config."""
    for config in info.configs[:4]:
        params, twins = make_params(dtype), make_params(dtype)
        stream = grad_stream(params, steps=4, frozen=(2, range(1, 2)))
        lifted = info.cls(params, **config, fused=False)
        run(lifted, params, stream)
        with monkeypatch.context() as patch:
            patch.setattr(_lifted, "apply_lifted", lambda *args: False)
            patch.setattr(_packed, "apply_packed", lambda *args: False)
            one_by_one = info.cls(twins, **config, fused=False)
            run(one_by_one, twins, stream)
        assert_same_state(lifted, one_by_one, params, twins, exact=True)


def test_rules_that_read_a_shape_are_neither_packed_nor_lifted_over_shapes(monkeypatch) -> None:
    """Packs hold several parameters in one flat tensor, so only elementwise rules run on
    them: ProxSGD's simplex step (a softmax over each parameter) runs lifted, one softmax per
    parameter; AdaGradNorm's row mode branches on each tensor's rank, so it runs tensor by
    tensor (bit for bit, as the test above checks); AdamW is packed."""
    calls: list[tuple[str, bool]] = []
    def spy(name, original):
        def wrapped(*args):
            calls.append((name, original(*args)))
            return calls[-1][1]
        return wrapped

    for module, name in ((_packed, "apply_packed"), (_lifted, "apply_lifted")):
        monkeypatch.setattr(module, name, spy(name, getattr(module, name)))
    simplex = [torch.full((3, 4), 1 / 12, dtype=torch.float64, requires_grad=True),
               torch.full((5,), 0.2, dtype=torch.float64, requires_grad=True)]
    for opt_cls, config, params in (
            (AdamW, {}, make_params()), (ProxSGD, {"prox": "simplex"}, simplex),
            (AdaGradNorm, {"mode": "row"}, make_params())):
        calls.append((opt_cls.__name__, True))
        run(opt_cls(params, lr=1e-2, **config, fused=False), params,
            grad_stream(params, steps=1))
    assert calls == [("AdamW", True), ("apply_packed", True),
                     ("ProxSGD", True), ("apply_packed", False), ("apply_lifted", True),
                     ("AdaGradNorm", True), ("apply_packed", False), ("apply_lifted", False)]
    # the lifted softmax is each parameter's own: both stay on the simplex
    assert all(abs(float(p.detach().sum()) - 1) < 1e-12 for p in simplex)
