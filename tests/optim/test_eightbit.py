"""Low-bit state for every optimizer: tracking the fp32 twin (bitsandbytes' protocol), memory,
signs, thresholds, overrides and bit-exact resume."""

from __future__ import annotations

import io
import math

import pytest
import torch

from stochopt.errors import UnsupportedError
from stochopt.optim import (
    AdaBelief8bit,
    AdaGrad8bit,
    AdamW,
    AdamW8bit,
    CurvatureOptimizer,
    DiffGrad8bit,
    SophiaG8bit,
    override_state_precision,
)
from stochopt.optim._storage import ABSMAX, StateStorage
from stochopt.quant import dynamic_map
from tests.optim.db import OPTIM_DB, OptimizerInfo
from tests.optim.helpers import estimates_for, run

EIGHT_BIT = [info for info in OPTIM_DB if info.name != "AdaGradNorm"]  # its state is scalars
# AdaHessian keeps an EMA of the *squared* curvature, which spans twice the decades of the
# curvature itself; entries more than seven decades below their block's maximum round to 0
# and then step by m / eps. Its 8-bit state works (state_dict test below) but does not meet
# bitsandbytes' Adam tolerances, as its docstring says.
TRACKING = [info for info in EIGHT_BIT if info.name != "AdaHessian"]
# The states each method's equations keep non-negative, written out from the papers rather than
# read from the optimizer: these take Dettmers et al.'s unsigned dynamic map (its 8-bit Adam
# stores the second state unsigned), every other state the signed one. AdamW / AdaBelief /
# DiffGrad: EMAs of g^2, (g - m)^2 + eps and their AMSGrad maxima; AdaGrad: a sum of g^2;
# AdaHessian: an EMA of D^2; SophiaG: an EMA of the GNB estimate B * g_hat^2. SophiaH's
# Hutchinson EMA can be negative (the paper clips the ratio on both sides), ProxSGD's momentum
# is signed.
UNSIGNED_BY_PAPER: dict[str, frozenset[str]] = {
    "AdamW": frozenset({"exp_avg_sq", "max_exp_avg_sq"}),
    "AdaBelief": frozenset({"exp_avg_var", "max_exp_avg_var"}),
    "DiffGrad": frozenset({"exp_avg_sq"}),
    "AdaGrad": frozenset({"sum"}),
    "AdaHessian": frozenset({"exp_hessian_diag_sq"}),
    "SophiaG": frozenset({"hessian"}),
    "SophiaH": frozenset(),
    "ProxSGD": frozenset(),
}


def _step(opt: torch.optim.Optimizer, p: torch.Tensor, g: torch.Tensor) -> None:
    """One step; curvature optimizers get a non-negative, GNB-like estimate 1000 g^2 (8-bit
    SophiaG stores its curvature with the unsigned map, as it is never negative)."""
    p.grad = g.clone()
    if isinstance(opt, CurvatureOptimizer) and opt.curvature_due:
        opt.set_curvature([1000 * g * g])
    opt.step()


def _assert_within_one_map_step(opt: torch.optim.Optimizer, state: dict[str, torch.Tensor],
                                name: str, dequantized: torch.Tensor,
                                exact: torch.Tensor) -> None:
    """The 8-bit state ``name`` of ``opt``, loaded as ``dequantized``, holds ``exact`` (the
    fp32 twin's new value of it) to the resolution of its quantization map, block by block:
    the unsigned map for the states the paper's equations keep non-negative
    (``UNSIGNED_BY_PAPER``), the signed one for the others.

    Each block's scale is the largest magnitude of ``exact`` in that block (the same float32
    values, so equal bit for bit), and each dequantized value is one of the two map entries
    that bracket ``exact / absmax``: an error below one step of the map where the value
    lies (at most 1.4% of the block maximum at the top of the signed map, 0.7% at the top of
    the unsigned one used for second moments and curvature, and finer in each decade below). The
    bound follows the block's own scale and the map's local step, so it binds second moments
    (about 5e-6 in the tracking test) as tightly as any other state. rtol 1e-6 on
    both ratios absorbs float32 rounding (the quantizer's ``x * (1 / absmax)``, the
    dequantizer's ``code * absmax``).
    """
    block = opt._storage_for(opt.param_groups[0]).block_size
    x = exact.detach().reshape(-1).double()
    absmax = state[name + ABSMAX]
    padded = torch.nn.functional.pad(x.abs(), (0, (-x.numel()) % block))
    assert torch.equal(absmax.double(), padded.view(-1, block).amax(dim=1)), name
    scale = absmax.double().repeat_interleave(block)[: x.numel()]
    code = dynamic_map(signed=name not in UNSIGNED_BY_PAPER[type(opt).__name__]).double()
    y = torch.where(scale > 0, x / scale.clamp(min=1e-300), 0.0)
    upper = torch.searchsorted(code, y).clamp(max=code.numel() - 1)
    lo, hi = code[(upper - 1).clamp(min=0)], code[upper]
    lo = torch.where(code[upper] <= y, code[upper], lo)  # y exactly on a map entry
    got = torch.where(scale > 0, dequantized.reshape(-1).double() / scale.clamp(min=1e-300), 0.0)
    slack = 1e-6 * y.abs() + 1e-12
    off = (got < lo - slack) | (got > hi + slack)
    assert not off.any(), (
        f"{name}: {int(off.sum())} of {x.numel()} values more than one map step from the fp32 "
        f"state, e.g. {float(got[off][0]):.6g} * absmax where {float(y[off][0]):.6g} lies "
        f"between {float(lo[off][0]):.6g} and {float(hi[off][0]):.6g}")


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
    agree), and the relative bound scales alike.

    bitsandbytes' state bound is vacuous here: with gradients of 0.01 the second moments are
    about 5e-6 and the first moments about 1.5e-3 (median), inside atol 3e-3 whatever their
    value. So every state is also held to its quantization map's resolution, block by block,
    every fifth step (:func:`_assert_within_one_map_step`)."""
    p32, p8, opt32, opt8 = _pair(info, shape)
    storage = opt8._storage_for(opt8.param_groups[0])
    gen = torch.Generator().manual_seed(1)
    for t in range(50):
        g = torch.randn(shape, generator=gen) * 0.01
        before = p32.detach().clone()
        _step(opt32, p32, g)
        _step(opt8, p8, g)
        scale = max(1.0, (p32.detach() - before).abs().mean().item() / 1e-3)
        for name in storage.names(opt8.state[p8]):
            dequantized = storage.load(opt8.state[p8], name)
            close = torch.isclose(dequantized, opt32.state[p32][name], atol=3e-3, rtol=1e-3)
            assert (~close).sum() < 20, name
            if t % 5 == 0:  # the errors it looks for are systematic; every step is slow
                _assert_within_one_map_step(opt8, opt8.state[p8], name, dequantized,
                                            opt32.state[p32][name])
            opt32.state[p32][name].copy_(dequantized)
        error = (p32.detach() - p8.detach()).abs()
        assert error.mean() < 6e-5 * scale
        assert (error / (p32.detach().abs() + 1e-9)).mean() < 6e-4 * scale
        with torch.no_grad():
            p32.copy_(p8)
    assert any(v.dtype == torch.uint8 for v in opt8.state[p8].values())


@pytest.mark.parametrize("info", EIGHT_BIT, ids=lambda info: info.name)
def test_8bit_states_use_the_map_their_sign_allows(info) -> None:
    """Each 8-bit state is stored with the map its equations call for (``UNSIGNED_BY_PAPER``):
    the unsigned map for a never-negative state (all 256 codes on [0, 1], twice the signed
    map's resolution there), the signed map for the others. Every state is checked, not only
    the one the tracking test happens to hold to its map."""
    p = torch.zeros(64, 64, requires_grad=True)
    opt = info.cls([p], lr=1e-3, state_precision="8bit")
    _step(opt, p, torch.full((64, 64), 0.01))
    storage = opt._storage_for(opt.param_groups[0])
    names = storage.names(opt.state[p])
    assert names and all(storage.is_quantized(opt.state[p], n) for n in names)
    for name in names:
        assert storage.signed(name) == (name not in UNSIGNED_BY_PAPER[info.name]), name


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


# ----------------------------------------------------------- bitsandbytes' arguments (#22)
def _bnb_optim():
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    return pytest.importorskip("bitsandbytes.optim")


@pytest.mark.parametrize(("ours", "theirs"), [("AdamW8bit", "AdamW8bit"),
                                              ("AdaGrad8bit", "Adagrad8bit")])
def test_the_signature_is_bitsandbytes(ours, theirs) -> None:
    """Every argument of bitsandbytes' class (the installed release) exists here, in the same
    positional order as far as its releases agree (0.50 has no percentile_clipping and
    block_wise, which follow min_8bit_size here as in 0.43), with the same default except
    optim_bits (bitsandbytes' AdamW8bit defaults to 32 and means 8-bit state; here 8 means 8).
    """
    import inspect

    import stochopt.optim

    mine = inspect.signature(getattr(stochopt.optim, ours)).parameters
    bnb = inspect.signature(getattr(_bnb_optim(), theirs)).parameters
    for name, param in bnb.items():
        if name != "optim_bits":
            assert name in mine and mine[name].default == param.default, name
    order, theirs_order = list(mine), list(bnb)
    assert order[: order.index("min_8bit_size") + 1] == theirs_order[
        : theirs_order.index("min_8bit_size") + 1]
    assert order.index("percentile_clipping") == order.index("min_8bit_size") + 1


def test_code_written_for_bitsandbytes_runs_unchanged() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(128, 4))
    opt = AdamW8bit(model.parameters(), lr=1e-3, betas=(0.9, 0.995), optim_bits=8,
                    min_8bit_size=4096, percentile_clipping=100, block_wise=True)
    model(torch.randn(8, 64)).square().mean().backward()
    opt.step()
    assert opt.state[model[0].weight]["exp_avg"].dtype == torch.uint8  # 8192 values
    assert opt.state[model[1].weight]["exp_avg"].dtype == torch.float32  # 512 < 4096
    assert opt.param_groups[0]["betas"] == (0.9, 0.995)


def test_optim_bits_min_8bit_size_and_block_size_choose_the_storage() -> None:
    big = torch.nn.Parameter(torch.zeros(5000, dtype=torch.bfloat16))
    small = torch.nn.Parameter(torch.zeros(1000))
    late = torch.nn.Parameter(torch.zeros(3000))
    opt = AdamW8bit([{"params": [big]}, {"params": [small], "min_8bit_size": 512}],
                    block_size=128, min_8bit_size=4000)
    opt.add_param_group({"params": [late]})  # the constructor's settings are its defaults
    wide = torch.nn.Parameter(torch.zeros(5000, dtype=torch.bfloat16))
    fp32 = AdamW8bit([wide], optim_bits=32)
    for p in (big, small, late, wide):
        p.grad = torch.ones_like(p)
    opt.step()
    fp32.step()
    assert opt.state[big]["exp_avg.absmax"].numel() == 40  # ceil(5000 / 128) blocks
    assert opt.state[small]["exp_avg"].dtype == torch.uint8  # the group's own threshold
    assert opt.state[late]["exp_avg"].dtype == torch.float32  # 3000 < 4000
    assert [g["min_8bit_size"] for g in opt.param_groups] == [4000, 512, 4000]
    assert fp32.state[wide]["exp_avg"].dtype == torch.float32  # fp32 state for bf16 params
    assert fp32.param_groups[0]["state_precision"] == "fp32"


@pytest.mark.parametrize(("kwargs", "kind", "names"), [
    ({"optim_bits": 16}, ValueError, ("optim_bits must be 8", "got 16")),
    ({"optim_bits": "8"}, TypeError, ("optim_bits must be 8 or 32",)),
    ({"optim_bits": True}, TypeError, ("optim_bits must be 8 or 32",)),
    ({"block_wise": False}, UnsupportedError, ("block_wise=False is not supported",)),
    ({"block_wise": 1}, TypeError, ("block_wise must be True or False",)),
    ({"is_paged": True}, UnsupportedError, ("is_paged=True is not supported", "DiskOffload")),
    ({"args": object()}, TypeError, ("args must be None",)),
    ({"percentile_clipping": 101}, ValueError, ("percentile_clipping must be in [0, 100]",)),
    ({"percentile_clipping": -1}, ValueError, ("percentile_clipping must be in [0, 100]",)),
    ({"percentile_clipping": 5.0}, TypeError, ("percentile_clipping must be an integer",)),
    ({"min_8bit_size": -1}, ValueError, ("min_8bit_size must be in [0, inf)",)),
    ({"block_size": 0}, ValueError, ("block_size must be in [1, inf)",)),
    ({"percentile_clipping": 5, "min_8bit_size": 64}, ValueError,
     ("percentile_clipping=5", "min_8bit_size > 100")),
])
def test_bad_bitsandbytes_arguments_are_named_and_change_nothing(kwargs, kind, names) -> None:
    from tests.contract import assert_clear_error, assert_same, snapshot

    for cls in (AdamW8bit, AdaGrad8bit, SophiaG8bit):
        group = {"params": [torch.nn.Parameter(torch.zeros(3))], "lr": 1e-3}
        before = snapshot(group)
        with pytest.raises(kind) as info:
            cls([group], **kwargs)
        assert_clear_error(info.value, f"{cls.__name__}: {names[0]}", *names[1:])
        assert_same(before, snapshot(group), "a refused constructor changed its param group")


def _clip_reference(grads: list[torch.Tensor], percentile: int) -> list[torch.Tensor]:
    """bitsandbytes 0.43's percentile clipping, transcribed from ``functional.py`` and the
    ``kPercentileClipping`` kernel, in plain Python floats: a ring of 100 squared gradient
    norms, all set to the first at step 1, slot ``step % 100`` afterwards; the gradient is
    scaled by ``clip / norm`` where its norm exceeds ``clip = sqrt(sorted(ring)[percentile])``."""
    ring, clipped = [0.0] * 100, []
    for step, g in enumerate(grads, start=1):
        norm_sq = float((g.double() ** 2).sum())
        if step == 1:
            ring = [norm_sq] * 100
        else:
            ring[step % 100] = norm_sq
        clip, norm = math.sqrt(sorted(ring)[percentile]), math.sqrt(norm_sq)
        clipped.append(g * (clip / norm) if norm > clip else g)
    return clipped


@pytest.mark.parametrize("percentile", [5, 50])
def test_percentile_clipping_matches_bitsandbytes_semantics(percentile) -> None:
    """130 steps (the ring of 100 norms wraps) of AdamW8bit with float64 state against
    torch.optim.AdamW fed the gradients clipped by the transcription above. Gradient scales
    vary over three decades, so many steps clip. Both sides compute in float64 and differ
    only by rounding (AdamW's EMA against torch's lerp): rtol 1e-10."""
    gen = torch.Generator().manual_seed(7)
    shape = (30, 7)
    grads = [torch.randn(shape, generator=gen, dtype=torch.float64)
             * math.exp(3 * float(torch.rand((), generator=gen, dtype=torch.float64)))
             for _ in range(130)]
    clipped = _clip_reference(grads, percentile)
    assert sum(not torch.equal(a, b) for a, b in zip(grads, clipped)) > 20
    start = torch.randn(shape, generator=gen, dtype=torch.float64)
    ours = torch.nn.Parameter(start.clone())
    theirs = torch.nn.Parameter(start.clone())
    opt = AdamW8bit([{"params": [ours], "state_precision": "native"}], lr=1e-2,
                    percentile_clipping=percentile)
    reference = torch.optim.AdamW([theirs], lr=1e-2)
    for g, c in zip(grads, clipped):
        ours.grad, theirs.grad = g.clone(), c.clone()
        opt.step()
        reference.step()
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    for name in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(opt.state[ours][name], reference.state[theirs][name],
                                   rtol=1e-10, atol=1e-14)


def test_percentile_clipping_resumes_bit_exactly_with_its_history() -> None:
    gen = torch.Generator().manual_seed(8)
    grads = [torch.randn(64, 80, generator=gen) * (1 + 9 * (t % 7 == 0)) for t in range(110)]
    p = torch.nn.Parameter(torch.randn(64, 80, generator=gen))
    opt = AdamW8bit([p], lr=1e-3, percentile_clipping=10)
    run(opt, [p], [[g] for g in grads[:60]])
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    twin = torch.nn.Parameter(p.detach().clone())
    resumed = AdamW8bit([twin], lr=1e-3, percentile_clipping=10)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    history = opt.state[p]["gnorm_vec"]
    assert history.dtype == torch.float32 and history.shape == (100,)
    run(opt, [p], [[g] for g in grads[60:]])
    run(resumed, [twin], [[g] for g in grads[60:]])
    assert torch.equal(p, twin)
    for name, value in opt.state[p].items():
        assert torch.equal(resumed.state[twin][name], value), name


def test_an_8bit_state_dict_without_clipping_loads_into_the_base_optimizer() -> None:
    """percentile_clipping=100 (off) leaves AdamW's rule, so AdamW8bit's state dict loads into
    AdamW (the 8-bit codes are converted there); one that clips does not, naming the setting."""
    p, q = torch.nn.Parameter(torch.randn(50, 100)), torch.nn.Parameter(torch.randn(50, 100))
    for percentile, loads in ((100, True), (5, False)):
        eight = AdamW8bit([p], percentile_clipping=percentile)
        run(eight, [p], [[torch.ones(50, 100)]])
        plain = AdamW([q])
        if loads:
            plain.load_state_dict(eight.state_dict())
            assert "percentile_clipping" not in plain.param_groups[0]
        else:
            with pytest.raises(ValueError, match="has percentile_clipping"):
                plain.load_state_dict(eight.state_dict())


def test_percentile_clipping_refuses_sparse_gradients_before_any_change() -> None:
    from tests.contract import assert_unchanged

    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = AdaGrad8bit(emb.parameters(), optim_bits=32, percentile_clipping=5)
    emb(torch.tensor([1, 4])).sum().backward()
    assert_unchanged(opt.step, opt, emb, names=("percentile_clipping=5 needs dense gradients",))


def test_the_8bit_classes_take_every_argument_of_their_base() -> None:
    """No argument of the rule's class is lost (each has the same default), except
    state_precision, which optim_bits replaces."""
    import inspect

    for cls in (AdamW8bit, AdaGrad8bit, AdaBelief8bit, DiffGrad8bit, SophiaG8bit):
        mine = inspect.signature(cls).parameters
        for name, param in inspect.signature(cls.__mro__[1]).parameters.items():
            if name != "state_precision":
                assert name in mine and mine[name].default == param.default, (cls, name)
