"""Bad input to stochopt.offload: every argument is checked where it enters, a damaged or
foreign directory is refused with a message naming the file and the way out, and a call that
raises leaves the optimizer, the directory and its lock as they were."""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from stochopt.errors import DamagedFileError
from stochopt.offload import DiskOffload, FileIO, pipelined
from stochopt.offload.io import ALIGN, align_up, aligned_buffer
from stochopt.optim import AdaBelief, AdaGradNorm, AdamW
from tests.contract import assert_clear_error, assert_same, snapshot

SHAPES = ((30, 40), (500,), (3,))
BUDGET = 60_000


def _params(seed: int = 0, shapes: tuple[tuple[int, ...], ...] = SHAPES) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).requires_grad_() for s in shapes]


def _train(opt: torch.optim.Optimizer, steps: int = 2) -> None:
    for t in range(steps):
        for p in (p for g in opt.param_groups for p in g["params"]):
            p.grad = torch.full_like(p, 0.1 * (t + 1))
        opt.step()


def _run(directory: Path, cls: type = AdamW, **kwargs: Any) -> Path:
    """A directory holding the state of two steps of ``cls`` over ``_params()``."""
    opt = cls(_params(), lr=1e-2)
    with DiskOffload(opt, directory, memory_budget=BUDGET, **kwargs):
        _train(opt)
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """Two finished runs of AdamW, without and with master weights (copied, never changed)."""
    return {master: _run(tmp_path_factory.mktemp(f"run-{master}"), master_weights=master)
            for master in (False, True)}


def _copy(run: Path, directory: Path) -> Path:
    shutil.copytree(run, directory / "run")
    return directory / "run"


def _contents(directory: Path) -> dict[str, bytes | None]:
    """Every entry of ``directory`` but the lock file: files by their bytes."""
    return {p.name: p.read_bytes() if p.is_file() else None for p in directory.iterdir()
            if p.name != ".lock"}


def _assert_unlocked(directory: Path) -> None:
    if not (directory / ".lock").exists():
        return
    fd = os.open(directory / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if a DiskOffload still holds it
    finally:
        os.close(fd)


def _refused(call: Callable[[], Any], kind: type[BaseException] | tuple[type[BaseException], ...],
             names: tuple[str, ...],
             opt: torch.optim.Optimizer, directory: Path | None = None) -> BaseException:
    """``call()`` raises ``kind`` naming one of ``names``, and leaves ``opt``, ``directory``
    and its lock as they were."""
    before = snapshot(opt)
    files = _contents(directory) if directory is not None else None
    with pytest.raises(kind) as info:
        call()
    assert_clear_error(info.value, *names)
    assert_same(before, snapshot(opt), "optimizer changed by a call that raised")
    assert getattr(opt, "_offload", None) is None or opt._offload._lock is not None
    if directory is not None:
        assert _contents(directory) == files, "directory changed by a call that raised"
        _assert_unlocked(directory)
    return info.value


# ----------------------------------------------------------------------- constructor
@pytest.mark.parametrize(("budget", "kind"), [
    (math.inf, TypeError), (math.nan, TypeError), (1.5, TypeError), (None, TypeError),
    (True, TypeError), (b"1MiB", TypeError), ("inf", ValueError), ("nan", ValueError),
    ("1e400", ValueError), ("lots", ValueError), ("0.5B", ValueError), (0, ValueError),
    (-5, ValueError), ("-1MiB", ValueError), (10**40, ValueError)])
def test_a_bad_memory_budget_is_refused_before_anything_is_written(
        tmp_path: Path, budget: Any, kind: type) -> None:
    opt = AdamW(_params(), lr=1e-2)
    _refused(lambda: DiskOffload(opt, tmp_path, memory_budget=budget), kind,
             ("DiskOffload: memory_budget",), opt, tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("kwargs", "kind", "name"), [
    (dict(master_weights="yes"), TypeError, "master_weights"),
    (dict(master_weights=1), TypeError, "master_weights"),
    (dict(resume="no"), TypeError, "resume"),
    (dict(resume=1), TypeError, "resume"),
    (dict(io=3), TypeError, "io"),
    (dict(io="fast"), ValueError, "io")])
def test_flags_and_io_are_checked(tmp_path: Path, kwargs: dict[str, Any], kind: type,
                                  name: str) -> None:
    opt = AdamW(_params(), lr=1e-2)
    _refused(lambda: DiskOffload(opt, tmp_path, **kwargs), kind, (f"DiskOffload: {name}",),
             opt, tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_directory_that_is_not_a_usable_directory_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opt = AdamW(_params(), lr=1e-2)
    (tmp_path / "file").write_text("")
    for directory, kind in ((None, TypeError), (3, TypeError), (b"/tmp", TypeError),
                            ("", ValueError), ("  ", ValueError),
                            (tmp_path / "missing", FileNotFoundError),
                            (tmp_path / "file", NotADirectoryError)):
        _refused(lambda d=directory: DiskOffload(opt, d), kind, ("DiskOffload: directory",),
                 opt)
    monkeypatch.setattr(os, "access", lambda *args: False)
    _refused(lambda: DiskOffload(opt, tmp_path), PermissionError, ("is not writable",), opt)
    assert _contents(tmp_path) == {"file": b""}


def test_the_optimizer_is_checked(tmp_path: Path) -> None:
    with pytest.raises(TypeError) as info:
        DiskOffload(torch.optim.SGD(_params(), lr=0.1), tmp_path)
    assert_clear_error(info.value, "DiskOffload: optimizer must be a stochopt optimizer")
    opt = AdamW(_params(), lr=1e-2)
    with DiskOffload(opt, tmp_path / ".", memory_budget=BUDGET):
        other = tmp_path / "other"
        other.mkdir()
        error = _refused(lambda: DiskOffload(opt, other), ValueError,
                         ("already offloads its state",), opt, other)
        assert str(tmp_path) in str(error)


def test_a_directory_in_use_is_an_os_error_naming_it(tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    with DiskOffload(opt, tmp_path, memory_budget=BUDGET):
        twin = AdamW(_params(), lr=1e-2)
        with pytest.raises(OSError) as info:
            DiskOffload(twin, tmp_path, memory_budget=BUDGET, resume=True)
        assert info.value.errno == errno.EBUSY
        assert_clear_error(info.value, str(tmp_path))
        assert twin._offload is None and not twin.state


# -------------------------------------------------------------------- fresh start
def test_in_memory_state_that_does_not_fit_is_refused_before_any_file_exists(
        tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    _train(opt)
    p = opt.param_groups[0]["params"][1]
    opt.state[p]["exp_avg"] = torch.zeros(499)
    _refused(lambda: DiskOffload(opt, tmp_path, memory_budget=BUDGET), ValueError,
             ("parameter 1", "'exp_avg' must have shape (500,)"), opt, tmp_path)
    opt.state[p]["exp_avg"] = "zeros"
    _refused(lambda: DiskOffload(opt, tmp_path, memory_budget=BUDGET), TypeError,
             ("'exp_avg' must be a tensor",), opt, tmp_path)
    opt.state[p]["exp_avg"] = torch.zeros(500, dtype=torch.int64)
    _refused(lambda: DiskOffload(opt, tmp_path, memory_budget=BUDGET), TypeError,
             ("'exp_avg' must have dtype",), opt, tmp_path)
    del opt.state[p]["exp_avg"]
    _refused(lambda: DiskOffload(opt, tmp_path, memory_budget=BUDGET), ValueError,
             ("missing ['exp_avg']",), opt, tmp_path)
    opt.state[p]["exp_avg"], opt.state[p]["step"] = torch.zeros(500), torch.tensor(math.nan)
    _refused(lambda: DiskOffload(opt, tmp_path, memory_budget=BUDGET), ValueError,
             ("'step' must be a finite number >= 0",), opt, tmp_path)
    assert not list(tmp_path.iterdir())


class _FullDisk(FileIO):
    def reserve(self, nbytes: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))


class _FullDiskOffload(DiskOffload):
    file_type = _FullDisk


def test_a_failed_start_removes_its_files_and_releases_the_directory(tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    _train(opt)
    _refused(lambda: _FullDiskOffload(opt, tmp_path, memory_budget=BUDGET), OSError,
             ("no space left",), opt, tmp_path)
    assert not list(tmp_path.glob("*.bin")) and not (tmp_path / "manifest.json").exists()
    DiskOffload(opt, tmp_path, memory_budget=BUDGET).close()  # the directory is free


# ------------------------------------------------------------------------- resume
def _resume(directory: Path, cls: type = AdamW, params: list[torch.Tensor] | None = None,
            **kwargs: Any) -> tuple[torch.optim.Optimizer, Callable[[], Any]]:
    opt = cls(params if params is not None else _params(seed=7), lr=1e-2)
    call = lambda: DiskOffload(opt, directory, memory_budget=BUDGET,  # noqa: E731
                               resume=True, **kwargs)
    return opt, call


@pytest.mark.parametrize("text", ["", '{"format": 1, "optimizer": "Ada', "[]", "null",
                                  "\xff\xfe not text"])
def test_a_truncated_or_corrupt_manifest_names_the_file_and_the_way_out(
        tmp_path: Path, runs: dict[bool, Path], text: str) -> None:
    directory = _copy(runs[False], tmp_path)
    manifest = directory / "manifest.json"
    intact = manifest.read_bytes()
    manifest.write_bytes(text.encode("latin-1"))
    opt, call = _resume(directory)
    error = _refused(call, DamagedFileError, (str(manifest),), opt, directory)
    assert error.path == manifest and "without resume=True" in str(error)
    manifest.write_bytes(intact)
    call().close()  # nothing was held: the repaired directory resumes


def _drop_stored(m: dict[str, Any]) -> None:
    m["params"][1]["stored"].pop()


MUTATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    **{f"no {key}": (lambda m, key=key: m.pop(key))
       for key in ("format", "optimizer", "master_weights", "copies", "steps", "params")},
    "a parameter lost": lambda m: [m[k].pop() for k in ("params", "copies", "steps")],
    "a stored tensor lost": _drop_stored,
    "an entry lost": lambda m: m["params"][0].pop("dtype"),
    "copies short": lambda m: m["copies"].pop(),
    "steps short": lambda m: m["steps"].pop(),
    "copy 2": lambda m: m["copies"].__setitem__(0, 2),
    "copy true": lambda m: m["copies"].__setitem__(0, True),
    "step nan": lambda m: m["steps"].__setitem__(1, math.nan),
    "step negative": lambda m: m["steps"].__setitem__(1, -1.0),
    "step text": lambda m: m["steps"].__setitem__(1, "2"),
    "step beyond the floats": lambda m: m["steps"].__setitem__(1, 10**400),
    "float shape": lambda m: m["params"][0].__setitem__("shape", [30.0, 40.0]),
    "bool shape": lambda m: m["params"][2].__setitem__("shape", [True]),
    "other shape": lambda m: m["params"][0].__setitem__("shape", [40, 30]),
    "other format": lambda m: m.__setitem__("format", 2),
    "params not a list": lambda m: m.__setitem__("params", {"0": {}}),
    "an offset moved": lambda m: m["params"][1]["stored"][0].__setitem__(3, 0),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_manifest_that_lost_or_garbled_entries_is_refused_before_anything_changes(
        tmp_path: Path, runs: dict[bool, Path], mutation: str) -> None:
    directory = _copy(runs[False], tmp_path)
    manifest = directory / "manifest.json"
    data = json.loads(manifest.read_text())
    MUTATIONS[mutation](data)
    manifest.write_text(json.dumps(data))
    opt, call = _resume(directory)
    _refused(call, ValueError, (str(manifest),), opt, directory)  # DamagedFileError or mismatch


def test_another_optimizer_class_is_named_as_such(tmp_path: Path,
                                                 runs: dict[bool, Path]) -> None:
    directory = _copy(runs[False], tmp_path)
    opt, call = _resume(directory, AdaBelief)
    error = _refused(call, ValueError, ("directory",), opt, directory)
    assert f"{str(directory)!r} holds the state of AdamW (3 parameters), not AdaBelief" in \
        str(error)
    assert not isinstance(error, FileNotFoundError)


@pytest.mark.parametrize(("params", "expected"), [
    (_params(shapes=SHAPES[:2]), "holds the state of 3 parameters"),
    (_params(shapes=((40, 30), *SHAPES[1:])), "parameter 0 has shape [40, 30] here"),
    ([p.detach().double().requires_grad_() for p in _params()], 'has dtype "float64" here')])
def test_other_parameters_are_named(tmp_path: Path, runs: dict[bool, Path],
                                    params: list[torch.Tensor], expected: str) -> None:
    directory = _copy(runs[False], tmp_path)
    opt, call = _resume(directory, params=params)
    error = _refused(call, ValueError, ("directory", "manifest"), opt, directory)
    assert expected in str(error)


def test_other_settings_are_named(tmp_path: Path, runs: dict[bool, Path]) -> None:
    directory = _copy(runs[False], tmp_path)
    opt, call = _resume(directory, master_weights=True)
    _refused(call, ValueError, ("master_weights=False",), opt, directory)
    half = AdamW(_params(shapes=((5000,),)), lr=1e-2, state_precision="bf16")
    (tmp_path / "native").mkdir()
    DiskOffload(AdamW(_params(shapes=((5000,),)), lr=1e-2), tmp_path / "native",
                memory_budget=BUDGET).close()
    call = lambda: DiskOffload(half, tmp_path / "native", memory_budget=BUDGET,  # noqa: E731
                               resume=True)
    _refused(call, ValueError, ("state_precision",), half, tmp_path / "native")


@pytest.mark.parametrize("damage", ["missing", "short", "long", "a directory"])
def test_a_damaged_state_file_is_named(tmp_path: Path, runs: dict[bool, Path],
                                       damage: str) -> None:
    directory = _copy(runs[True], tmp_path)
    victim = directory / "exp_avg_sq.1.bin"
    size = victim.stat().st_size
    if damage == "missing":
        victim.unlink()
    elif damage == "a directory":
        victim.unlink()
        victim.mkdir()
    else:
        os.truncate(victim, size - ALIGN if damage == "short" else size + ALIGN)
    params = _params(seed=7)  # the masters would overwrite these: a refusal must not
    opt, call = _resume(directory, params=params, master_weights=True)
    error = _refused(call, DamagedFileError, (str(victim),), opt, directory)
    assert error.path == victim


# --------------------------------------------------------------- public methods
def test_absorb_checks_every_parameter_before_writing(tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    with DiskOffload(opt, tmp_path, memory_budget=BUDGET) as offload:
        _train(opt)
        params = offload._params
        on_disk = [offload.state_tensors(p) for p in params]
        manifest = (tmp_path / "manifest.json").read_bytes()
        opt.state[params[0]].update(exp_avg=torch.ones(30, 40), exp_avg_sq=torch.ones(30, 40))
        opt.state[params[2]].update(exp_avg=torch.ones(4), exp_avg_sq=torch.ones(3))
        memory = {k: dict(opt.state[p]) for k, p in enumerate(params)}
        with pytest.raises(ValueError) as info:
            offload.absorb()
        assert_clear_error(info.value, "parameter 2", "'exp_avg' must have shape (3,)")
        assert (tmp_path / "manifest.json").read_bytes() == manifest
        assert all(dict(opt.state[p]) == memory[k] for k, p in enumerate(params))
        assert_same(on_disk, [offload.state_tensors(p) for p in params])


def test_a_state_dict_that_does_not_fit_changes_neither_memory_nor_disk(tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    with DiskOffload(opt, tmp_path, memory_budget=BUDGET):
        _train(opt)
        good = opt.state_dict()
        manifest = (tmp_path / "manifest.json").read_bytes()
        for name, value in (("exp_avg", torch.zeros(499)), ("exp_avg_sq", "zeros")):
            bad = {**good, "state": {**good["state"], 1: {**good["state"][1], name: value}}}
            _refused(lambda b=bad: opt.load_state_dict(b), (TypeError, ValueError),
                     (name,), opt)
            assert (tmp_path / "manifest.json").read_bytes() == manifest
        opt.load_state_dict(good)  # and a state dict that fits loads


def test_check_state_refuses_what_absorb_would(tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    with DiskOffload(opt, tmp_path, memory_budget=BUDGET) as offload:
        good = {1: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(500),
                    "exp_avg_sq": torch.zeros(500)}}
        offload.check_state(good)
        for state, kind, name in (([], TypeError, "state must be a dict"),
                                  ({3: {}}, ValueError, "parameter 3"),
                                  ({"1": {}}, ValueError, "parameter '1'"),
                                  ({1: {"exp_avg": torch.zeros(500)}}, ValueError,
                                   "missing ['exp_avg_sq']"),
                                  ({0: 5}, TypeError, "must be a dict")):
            _refused(lambda s=state: offload.check_state(s), kind, (name,), opt)


def test_state_tensors_names_a_parameter_it_does_not_hold(tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    with DiskOffload(opt, tmp_path, memory_budget=BUDGET) as offload:
        _refused(lambda: offload.state_tensors("p0"), TypeError, ("param must be a tensor",),
                 opt)
        _refused(lambda: offload.state_tensors(torch.zeros(3)), ValueError,
                 ("not one of the offloaded optimizer's parameters",), opt)


def test_a_closed_offload_refuses_every_method(tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    offload = DiskOffload(opt, tmp_path, memory_budget=BUDGET)
    offload.close()
    offload.close()  # closing twice is fine
    p = opt.param_groups[0]["params"][0]
    for call in (offload.commit, offload.absorb, offload.io_pass,
                 lambda: offload.state_tensors(p), lambda: offload.check_state({}),
                 lambda: offload.update_during_backward().__enter__()):
        with pytest.raises(ValueError) as info:
            call()
        assert_clear_error(info.value, "is closed; reopen")


def test_update_during_backward_cannot_nest(tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    with DiskOffload(opt, tmp_path, memory_budget=BUDGET) as offload, \
            offload.update_during_backward():
        with pytest.raises(ValueError) as info, offload.update_during_backward():
            pass
        assert_clear_error(info.value, "already active")


def test_small_states_of_8bit_optimizers_stay_unquantized_as_in_memory(tmp_path: Path) -> None:
    """AdaGradNorm's scalar state is too small to quantize in memory; the offloaded layout
    agrees, so an in-memory state dict loads into the offloaded optimizer and back."""
    memory = AdaGradNorm(_params(shapes=((5000,),)), lr=0.1, state_precision="8bit")
    _train(memory)
    disk = AdaGradNorm(_params(shapes=((5000,),)), lr=0.1, state_precision="8bit")
    with DiskOffload(disk, tmp_path, memory_budget=BUDGET):
        disk.load_state_dict(memory.state_dict())
        assert_same(memory.state_dict()["state"], disk.state_dict()["state"])


# ------------------------------------------------------------------- file I/O
def test_file_io_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError) as info:
        FileIO(None)  # type: ignore[arg-type]
    assert_clear_error(info.value, "FileIO: path")
    with pytest.raises(TypeError) as info:
        FileIO(tmp_path / "x.bin", 3)  # type: ignore[arg-type]
    assert_clear_error(info.value, "FileIO: mode")
    file = FileIO(tmp_path / "x.bin", "buffered")
    for call, kind, name in ((lambda: file.reserve(-1), ValueError, "nbytes"),
                             (lambda: file.reserve(1.5), TypeError, "nbytes"),
                             (lambda: file.read(torch.zeros(ALIGN), 0), TypeError, "buffer"),
                             (lambda: file.write([0] * ALIGN, 0), TypeError, "buffer"),
                             (lambda: file.read(aligned_buffer(ALIGN), -1), ValueError, "offset"),
                             (lambda: file.write(aligned_buffer(ALIGN), "0"), TypeError,
                              "offset")):
        with pytest.raises(kind) as info:
            call()
        assert_clear_error(info.value, name)
    file.close()
    with pytest.raises(ValueError) as info:
        file.read(aligned_buffer(ALIGN), 0)
    assert_clear_error(info.value, "is closed")


def test_direct_io_names_a_misaligned_request(tmp_path: Path) -> None:
    file = FileIO(tmp_path / "x.bin", "auto")
    if not file.direct:
        pytest.skip("this filesystem has no O_DIRECT")
    file.reserve(4 * ALIGN)
    with pytest.raises(ValueError) as info:
        file.write(aligned_buffer(ALIGN), 512)
    assert_clear_error(info.value, "aligned to 4096 bytes")
    file.close()


def test_the_helpers_check_their_arguments() -> None:
    with pytest.raises(ValueError) as info:
        align_up(5, 0)
    assert_clear_error(info.value, "alignment")
    with pytest.raises(ValueError) as info:
        aligned_buffer(-1)
    assert_clear_error(info.value, "nbytes")
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(TypeError) as info:
            pipelined([1], print, "compute", print, [0], pool, pool)  # type: ignore[arg-type]
        assert_clear_error(info.value, "compute must be callable")
        with pytest.raises(TypeError) as info:
            pipelined([1], print, print, print, [0], pool, None)  # type: ignore[arg-type]
        assert_clear_error(info.value, "writer")
