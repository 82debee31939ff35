"""DiskOffload: the offloaded step equals the in-memory step bit for bit; state_dict round
trips; clear errors. (Overlap and crash recovery: test_overlap.py, test_crash.py.)"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from stochopt.errors import UnsupportedError
from stochopt.offload import DiskOffload, parse_bytes
from stochopt.optim import AdaBelief, AdaGradNorm, AdaHessian, AdamW, AdamW8bit, DiffGrad
from tests.optim.helpers import clone_params

#: mixed shapes: split across chunks (30000, 20000 values), 0-d, 1-d, strided, a conv kernel
SHAPES = ((150, 200), (20000,), (), (7,), (40, 30), (3, 4, 5, 5), (0,))
STEPS = 30


def _params(dtype: torch.dtype = torch.float32, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in SHAPES]
    params[4] = params[4].t().contiguous().t()  # a strided (transposed) parameter
    return [p.requires_grad_() for p in params]


def _grads(params: list[torch.Tensor], seed: int = 1) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
             for p in params] for _ in range(STEPS)]


def _train(opt: torch.optim.Optimizer, params: list[torch.Tensor],
           grads: list[list[torch.Tensor]]) -> None:
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()


def _assert_same(memory: torch.optim.Optimizer, disk: torch.optim.Optimizer,
                 a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for p, q in zip(a, b):
        assert torch.equal(p, q)
    sa, sb = memory.state_dict()["state"], disk.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].keys() == sb[k].keys()
        for name in sa[k]:
            assert sa[k][name].dtype == sb[k][name].dtype, (k, name)
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)


CASES = {
    "adamw": (AdamW, dict(lr=1e-2, amsgrad=True)),
    "adabelief": (AdaBelief, dict(lr=1e-2, weight_decay=1e-2)),
    "diffgrad": (DiffGrad, dict(lr=1e-2)),
    "adamw-bf16-state": (AdamW, dict(lr=1e-2, state_precision="bf16")),
    "adamw-8bit": (AdamW8bit, dict(lr=1e-2)),
    "adamw-8bit-clipped": (AdamW8bit, dict(lr=1e-2, percentile_clipping=5)),  # kept whole
    "adagradnorm-row": (AdaGradNorm, dict(lr=1e-1, mode="row")),
    "adagradnorm-global": (AdaGradNorm, dict(lr=1e-1, mode="global")),
}


@pytest.mark.parametrize(("case", "io"), [(case, "auto") for case in CASES]
                         + [("adamw", "buffered")])
def test_offloaded_step_is_bit_identical_to_the_in_memory_step(tmp_path: Path, case: str,
                                                               io: str) -> None:
    cls, kwargs = CASES[case]
    a = _params()
    b = clone_params(a)
    memory, disk = cls(a, **kwargs), cls(b, **kwargs)
    # chunks of 5120 values for AdamW's three states; 8-bit state is chunked in 262144-value
    # units (whole pages of block scales), so there each tensor here is one chunk
    budget = 300_000 if case.startswith("adamw-8bit") else 200_000
    with DiskOffload(disk, tmp_path, memory_budget=budget, io=io) as offload:
        # a scalar state; one 8-bit chunk; a per-tensor norm
        whole = case in ("adagradnorm-global", "adamw-8bit", "adamw-8bit-clipped")
        splits = disk.splittable(disk.param_groups[0]) and not whole
        assert (len(offload.layouts[1].chunks) > 1) == splits
        _train(memory, a, _grads(a))
        _train(disk, b, _grads(b))
        _assert_same(memory, disk, a, b)


def test_8bit_state_split_across_chunks_matches_memory(tmp_path: Path) -> None:
    a = [torch.randn(600_000, generator=torch.Generator().manual_seed(0)).requires_grad_()]
    b = clone_params(a)
    memory, disk = AdamW8bit(a, lr=1e-2), AdamW8bit(b, lr=1e-2)
    with DiskOffload(disk, tmp_path, memory_budget=2 * 2**20) as offload:
        assert len(offload.layouts[0].chunks) == 3  # 262144-value chunks
        grads = [[torch.randn(600_000, generator=torch.Generator().manual_seed(s))]
                 for s in range(5)]
        _train(memory, a, grads)
        _train(disk, b, grads)
        _assert_same(memory, disk, a, b)


def test_complex_and_curvature_optimizers(tmp_path: Path) -> None:
    a = [torch.randn(64, 3, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
         .requires_grad_()]
    b = clone_params(a)
    memory, disk = AdamW(a, lr=1e-2), AdamW(b, lr=1e-2)
    with DiskOffload(disk, tmp_path / ".", memory_budget=100_000):
        grads = [[torch.randn(64, 3, dtype=torch.complex64)] for _ in range(10)]
        _train(memory, a, grads)
        _train(disk, b, grads)
        _assert_same(memory, disk, a, b)


def test_adahessian_keeps_each_tensor_whole(tmp_path: Path) -> None:
    """AdaHessian's refresh averages a conv kernel spatially, so tensors are never split;
    the curvature refresh and the update both go through the offloaded state."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 1))
    twin = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 1))
    twin.load_state_dict(net.state_dict())
    memory = AdaHessian(net.parameters(), lr=0.05, seed=3)
    disk = AdaHessian(twin.parameters(), lr=0.05, seed=3)
    x = torch.randn(16, 2, 4, 4)
    with DiskOffload(disk, tmp_path, memory_budget=60_000) as offload:
        assert not any(layout.split for layout in offload.layouts)
        for model, opt in ((net, memory), (twin, disk)):
            for _ in range(5):
                opt.zero_grad()
                opt.backward(model(x).square().mean())
                opt.step()
        _assert_same(memory, disk, list(net.parameters()), list(twin.parameters()))


def test_master_weights_hold_the_fp32_trajectory_of_bf16_parameters(tmp_path: Path) -> None:
    """bf16 parameters with fp32 masters on disk follow the fp32 run exactly: the masters
    equal its parameters and the bf16 parameters are those rounded."""
    start = [p.detach().to(torch.bfloat16).float() for p in _params()[:4]]  # bf16-exact values
    grads = [[g.to(torch.bfloat16) for g in step[:4]] for step in _grads(_params())]
    full = [p.clone().requires_grad_() for p in start]
    _train(AdamW(full, lr=1e-2), full, [[g.float() for g in step] for step in grads])
    half = [p.to(torch.bfloat16).requires_grad_() for p in start]
    disk = AdamW(half, lr=1e-2)
    with DiskOffload(disk, tmp_path, memory_budget=200_000, master_weights=True) as offload:
        assert offload.layouts[1].split and len(offload.layouts[1].chunks) > 1
        _train(disk, half, grads)
        masters = [offload._materialize(layout)["master"] for layout in offload.layouts]
    for master, p, q in zip(masters, half, full):
        assert master.dtype == torch.float32
        assert torch.equal(master, q.detach())
        assert torch.equal(p, q.detach().to(torch.bfloat16))


def test_state_dict_round_trips_between_disk_and_memory(tmp_path: Path) -> None:
    """An offloaded optimizer's state_dict loads into an in-memory one and back, and every
    run continues exactly as the uninterrupted in-memory run."""
    a = _params()
    grads = _grads(a)
    memory = AdamW(a, lr=1e-2)
    _train(memory, a, grads[:10])
    b = clone_params(a)
    disk = AdamW(b, lr=1e-2)
    with DiskOffload(disk, tmp_path, memory_budget=200_000):
        disk.load_state_dict(memory.state_dict())  # memory -> disk
        _train(memory, a, grads[10:20])
        _train(disk, b, grads[10:20])
        _assert_same(memory, disk, a, b)
        c = clone_params(b)
        again = AdamW(c, lr=1e-2)
        again.load_state_dict(disk.state_dict())  # disk -> memory
    _train(memory, a, grads[20:])
    _train(again, c, grads[20:])
    _assert_same(memory, again, a, c)


def test_an_optimizer_with_state_moves_it_to_disk(tmp_path: Path) -> None:
    a = _params()
    grads = _grads(a)
    memory = AdamW(a, lr=1e-2)
    _train(memory, a, grads[:5])
    b = clone_params(a)
    disk = AdamW(b, lr=1e-2)
    disk.load_state_dict(memory.state_dict())
    with DiskOffload(disk, tmp_path, memory_budget=200_000):
        assert all(set(disk.state[p]) == {"step"} for p in b)  # nothing left in memory
        _train(memory, a, grads[5:])
        _train(disk, b, grads[5:])
        _assert_same(memory, disk, a, b)


def test_parse_bytes() -> None:
    assert parse_bytes("256MiB") == 256 * 2**20
    assert parse_bytes("2GB") == 2 * 10**9
    assert parse_bytes(4096) == 4096
    with pytest.raises(ValueError, match=r"memory_budget must be > 0 bytes, got -1"):
        parse_bytes(-1)
    with pytest.raises(ValueError, match=r"memory_budget must look like '256MiB'.*'lots'"):
        parse_bytes("lots")
    with pytest.raises(TypeError, match="memory_budget must be an int"):
        parse_bytes(1.5)  # type: ignore[arg-type]


def test_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opt = AdamW(_params()[:2], lr=1e-2)
    with pytest.raises(FileNotFoundError, match="does not exist; create it"):
        DiskOffload(opt, tmp_path / "missing")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        DiskOffload(opt, tmp_path / "file")
    with pytest.raises(ValueError, match=r"memory_budget must hold 3 chunks of at least 1024 "
                                         r"elements of parameter 0 \(>= 24576 bytes\), got 1000"):
        DiskOffload(opt, tmp_path, memory_budget=1000)
    whole = AdaHessian([torch.zeros(100, 100, requires_grad=True)])
    with pytest.raises(ValueError, match=r"memory_budget must hold 3 copies of parameter 0's "
                                         r"state \(shape \(100, 100\).*>= 245760 bytes, got 10000"):
        DiskOffload(whole, tmp_path, memory_budget=10_000)
    with pytest.raises(ValueError, match="io must be one of"):
        DiskOffload(opt, tmp_path, io="fast")
    with pytest.raises(TypeError, match="optimizer must be a stochopt optimizer"):
        DiskOffload(torch.optim.SGD(_params()[:1], lr=0.1), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"resume=True but .* holds no offloaded state"):
        DiskOffload(opt, tmp_path, resume=True)
    usage = type("Usage", (), {"free": 1000})
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage)
    with pytest.raises(OSError, match=r"has 1000 bytes free; the offloaded state needs") as info:
        DiskOffload(opt, tmp_path)
    assert info.value.errno == errno.ENOSPC
    assert not list(tmp_path.glob("*.bin"))  # refused before writing anything


def test_a_directory_serves_one_run_at_a_time(tmp_path: Path) -> None:
    params = _params()[:2]
    opt = AdamW(params, lr=1e-2)
    offload = DiskOffload(opt, tmp_path, memory_budget=200_000)
    with pytest.raises(OSError, match="in use by another DiskOffload"):
        DiskOffload(AdamW(clone_params(params)), tmp_path)
    with pytest.raises(UnsupportedError, match="cannot add a param group"):
        opt.add_param_group({"params": [torch.zeros(3, requires_grad=True)]})
    offload.close()
    with pytest.raises(FileExistsError, match="already holds offloaded state"):
        DiskOffload(AdamW(clone_params(params)), tmp_path)
    params[1].grad = torch.ones_like(params[1])
    with pytest.raises(ValueError, match="is closed; reopen"):
        opt.step()
    different = AdamW([torch.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match=r"holds the state of 2 parameters .*, but this AdamW "
                                         r"has 1; resume with the same parameters"):
        DiskOffload(different, tmp_path, resume=True)
    resumed = DiskOffload(opt, tmp_path, resume=True)  # the same optimizer reopens it
    opt.step()
    resumed.close()


def test_sparse_gradients_are_refused(tmp_path: Path) -> None:
    from stochopt.optim import AdaGrad

    p = torch.zeros(10, 3, requires_grad=True)
    opt = AdaGrad([p], lr=0.1)
    with DiskOffload(opt, tmp_path, memory_budget=100_000):
        p.grad = torch.sparse_coo_tensor([[1]], [[1.0, 2.0, 3.0]], (10, 3),
                                         check_invariants=True)
        with pytest.raises(UnsupportedError, match="sparse gradients are not supported with "
                                                   "offloaded state"):
            opt.step()


def test_updates_during_backward_match_the_step_after_it(tmp_path: Path) -> None:
    """Each parameter updated as its gradient becomes final equals the ordinary step."""
    torch.manual_seed(0)
    make = lambda: torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(),  # noqa: E731
                                       torch.nn.Linear(128, 1))
    net, twin = make(), make()
    twin.load_state_dict(net.state_dict())
    memory = AdamW(net.parameters(), lr=1e-2)
    disk = AdamW(twin.parameters(), lr=1e-2)
    x = torch.randn(32, 64)
    with DiskOffload(disk, tmp_path, memory_budget=100_000) as offload:
        for _ in range(5):
            memory.zero_grad()
            net(x).square().mean().backward()
            memory.step()
            disk.zero_grad()
            with offload.update_during_backward():
                twin(x).square().mean().backward()
            disk.step()
        _assert_same(memory, disk, list(net.parameters()), list(twin.parameters()))


def test_updates_during_backward_refuse_group_statistics(tmp_path: Path) -> None:
    opt = AdaGradNorm([torch.zeros(3, requires_grad=True)], mode="global")
    with DiskOffload(opt, tmp_path) as offload, pytest.raises(
            UnsupportedError, match=r"AdaGradNorm cannot update during backward: its step needs "
                                    r"group statistics"), offload.update_during_backward():
        pass


def _lock_is_free(directory: Path) -> bool:
    """Whether no DiskOffload (of this or another process) holds ``directory``'s lock."""
    import fcntl
    import os

    fd = os.open(directory / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing the descriptor also drops a lock taken through it


def test_an_unclosed_offload_unlocks_its_directory_when_dropped(tmp_path: Path) -> None:
    """Dropping the optimizer and its DiskOffload without close() releases the directory at
    once: nothing holds them in a reference cycle, so no garbage collection is needed (it is
    disabled here); the state of the last step resumes."""
    import gc
    import weakref

    params = _params()[:2]
    opt = AdamW(params, lr=1e-2)
    offload = DiskOffload(opt, tmp_path, memory_budget=200_000)
    _train(opt, params, _grads(params)[:2])
    dropped = weakref.ref(offload)
    gc.disable()
    try:
        del opt, offload
        assert dropped() is None and _lock_is_free(tmp_path)
    finally:
        gc.enable()
    resumed = AdamW(params, lr=1e-2)
    DiskOffload(resumed, tmp_path, resume=True).close()
    assert float(resumed.state[params[0]]["step"]) == 2


def test_a_rerun_notebook_cell_reopens_its_directory(tmp_path: Path) -> None:
    """A notebook cell ``opt = AdamW(...); off = DiskOffload(opt, d, resume=...)`` run twice:
    rebinding ``opt`` drops the first optimizer, which releases its DiskOffload's lock even
    though ``off`` still names that DiskOffload (now closed, saying how to reopen)."""
    params = _params()[:2]
    cell = "opt = AdamW(params, lr=1e-2)\noff = DiskOffload(opt, d, resume=resume)\n"
    names = {"AdamW": AdamW, "DiskOffload": DiskOffload, "params": params, "d": tmp_path,
             "resume": False}
    exec(cell, names)
    first = names["off"]
    _train(names["opt"], params, _grads(params)[:1])
    names["resume"] = True
    exec(cell, names)  # would raise OSError "in use by another DiskOffload" while it was held
    assert names["off"] is not first and names["off"].optimizer is names["opt"]
    with pytest.raises(ValueError, match="is closed; reopen"):
        first.commit()
    _train(names["opt"], params, _grads(params)[1:2])
    names["off"].close()
    assert float(names["opt"].state[params[0]]["step"]) == 2
