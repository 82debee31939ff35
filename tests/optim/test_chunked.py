"""The chunked fused path for 8-bit state on the CPU gives bit for bit what the whole-tensor
fused path gives, serves only what it can, and never applies a step twice."""

from __future__ import annotations

import pytest
import torch

from stochopt.errors import FusedFallbackWarning
from stochopt.optim import AdamW8bit, CurvatureOptimizer, SophiaG, _chunked, _engine
from stochopt.quant import _native

pytestmark = pytest.mark.skipif(_native.kernels() is None,
                                reason="no C compiler: the native kernels are not built")

# chunks of 1024 values (4 and 5 per tensor), partial last blocks (5000 = 19 * 256 + 136,
# 4500 = 17 * 256 + 148), and one tensor under min_8bit_size that keeps native state
SHAPES = ((50, 100), (4500,), (30, 10))


def _eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the 'compiled' functions eagerly: the chunking logic without inductor's time."""
    monkeypatch.setattr(_engine, "_private_compile", lambda fn: fn)


def _run(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: int = 6) -> None:
    gen = torch.Generator().manual_seed(3)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * 0.01
        if isinstance(opt, CurvatureOptimizer) and opt.curvature_due:
            opt.set_curvature([1000 * p.grad * p.grad for p in params])
        opt.step()


# small tensors, 8-bit from 256 values on: chunks of 2048 values gather several of them
SMALL = ((300,), (20, 35), (1000,), (2500,), (260,), (5000,), (17, 19))


def _params(shapes=SHAPES) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(s, generator=gen) * 0.1).requires_grad_() for s in shapes]


def _both(make, monkeypatch: pytest.MonkeyPatch, steps: int = 6, shapes=SHAPES,
          chunk: int = 1024):
    """The same run through the chunked path (chunks of ``chunk`` values) and the
    whole-tensor fused path; returns both (params, optimizer) pairs."""
    monkeypatch.setattr(_chunked, "CHUNK", chunk)
    chunked_params, whole_params = _params(shapes), _params(shapes)
    chunked, whole = make(chunked_params), make(whole_params)
    calls = []
    original = _chunked.apply_chunked
    monkeypatch.setattr(_chunked, "apply_chunked",
                        lambda *a: calls.append(1) or original(*a))
    _run(chunked, chunked_params, steps)
    assert calls, "the chunked path did not run"
    monkeypatch.setattr(_chunked, "chunkable", lambda *a: False)
    _run(whole, whole_params, steps)
    return (chunked_params, chunked), (whole_params, whole)


def _assert_same(a, b) -> None:
    (pa, oa), (pb, ob) = a, b
    for x, y in zip(pa, pb):
        assert torch.equal(x, y)
    for x, y in zip(pa, pb):
        for name, value in oa.state[x].items():
            assert torch.equal(value, ob.state[y][name]), name


@pytest.mark.parametrize("make", [
    lambda ps: AdamW8bit(ps, lr=1e-2, fused=True),
    lambda ps: SophiaG(ps, lr=1e-2, fused=True, state_precision="8bit", update_period=2),
], ids=["AdamW", "SophiaG"])
def test_chunks_give_the_whole_tensor_result_bit_for_bit(make, monkeypatch) -> None:
    """SophiaG's curvature refresh updates one state of two: the other keeps its codes."""
    _eager(monkeypatch)
    _assert_same(*_both(make, monkeypatch))


def test_compiled_chunks_give_the_whole_tensor_result_bit_for_bit(monkeypatch) -> None:
    """With inductor: one graph for full chunks, one with a dynamic length for the tails."""
    chunked, whole = _both(lambda ps: AdamW8bit(ps, lr=1e-2, fused=True), monkeypatch, steps=3)
    _assert_same(chunked, whole)
    assert not chunked[1]._fused_failed
    keys = set(chunked[1]._compiled) - {"cpu-chunked-1"}  # the small tensor: whole, in a
    assert len(keys) == 1 and "flat" in next(iter(keys))  # bucket of the flat layout


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "inductor"])
def test_chunks_of_several_small_parameters_give_the_whole_tensor_result(
        compiled, monkeypatch) -> None:
    """Pieces of 2500 and 5000 values and whole small tensors share chunks of 2048."""
    sizes = []
    if not compiled:  # (recording inside a compiled function would recompile it each time)
        _eager(monkeypatch)
        original = _chunked.step_in_place
        monkeypatch.setattr(_chunked, "step_in_place",
                            lambda rule, ps, *a: sizes.append(len(ps)) or original(rule, ps, *a))

    def make(ps):
        return AdamW8bit([{"params": ps, "min_8bit_size": 256}], lr=1e-2, fused=True)

    chunked, whole = _both(make, monkeypatch, steps=3, shapes=SMALL, chunk=2048)
    _assert_same(chunked, whole)
    if compiled:
        assert {"cpu-chunked-1", "cpu-chunked-3"} <= set(chunked[1]._compiled)
    else:
        assert max(sizes) == 3  # [300, 700, 1000] share a chunk


def test_serves_only_contiguous_fully_quantized_cpu_parameters(monkeypatch) -> None:
    _eager(monkeypatch)
    strided = torch.randn(100, 80).t().requires_grad_()
    small = torch.randn(10).requires_grad_()  # under min_8bit_size: native state
    big = torch.randn(5000).requires_grad_()
    seen: list[int] = []
    monkeypatch.setattr(_chunked, "apply_chunked", lambda *a: seen.append(len(a[4])))
    for params, expected in (([strided], []), ([small], []), ([big], [1])):
        seen.clear()
        _run(AdamW8bit(params, lr=1e-2, fused=True), params, steps=1)
        assert seen == expected


def test_a_failed_compilation_mid_step_finishes_eagerly_without_stepping_twice(
        monkeypatch) -> None:
    """The second chunk's compilation fails: that chunk runs eagerly, later steps take the
    reference path, and the result equals a run that never compiled."""
    monkeypatch.setattr(_chunked, "CHUNK", 1024)
    calls = []

    def flaky(fn):
        def compiled(*args):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("inductor failed")
            return fn(*args)
        return compiled

    monkeypatch.setattr(_engine, "_private_compile", flaky)
    params, reference_params = _params(), _params()
    opt = AdamW8bit(params, lr=1e-2, fused=True)
    with pytest.warns(FusedFallbackWarning, match="inductor failed"):
        _run(opt, params, steps=3)
    reference = AdamW8bit(reference_params, lr=1e-2, fused=False)
    _run(reference, reference_params, steps=3)
    assert opt._fused_failed and len(calls) == 2
    for p, q in zip(params, reference_params):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


def test_a_strided_gradient_gives_the_whole_tensor_result(monkeypatch) -> None:
    _eager(monkeypatch)
    monkeypatch.setattr(_chunked, "CHUNK", 1024)
    results = []
    for chunked in (True, False):
        if not chunked:
            monkeypatch.setattr(_chunked, "chunkable", lambda *a: False)
        p = (torch.randn(80, 64, generator=torch.Generator().manual_seed(0)) * 0.1)
        p.requires_grad_()
        opt = AdamW8bit([p], lr=1e-2, fused=True)
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            p.grad = torch.randn(64, 80, generator=gen).t() * 0.01  # not contiguous
            opt.step()
        results.append((p.detach().clone(), opt.state[p]["exp_avg"].clone()))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
