"""Properties of stochopt.offload under random and corrupted input: a damaged manifest or
state file, random constructor arguments and random in-memory state either work or raise a
documented error naming the file or argument, and a refusal leaves the optimizer, the
directory and its lock exactly as they were (never a half-built optimizer or a held lock)."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.offload import DiskOffload
from stochopt.optim import AdamW
from tests.contract import PROPERTIES, assert_clear_error, assert_same, snapshot

SHAPES = ((40, 30), ())  # one split into chunks, one kept whole
BUDGET = 60_000
JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 2**40) | st.text(max_size=4)
                    | st.floats(allow_nan=True, allow_infinity=True),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=5)


def _params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).requires_grad_() for s in SHAPES]


def _step(opt: torch.optim.Optimizer, scale: float) -> None:
    for p in (p for g in opt.param_groups for p in g["params"]):
        p.grad = torch.full_like(p, scale)
    opt.step()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step run with master weights (copied by each example, never changed)."""
    directory = tmp_path_factory.mktemp("run")
    opt = AdamW(_params(), lr=1e-2)
    with DiskOffload(opt, directory, memory_budget=BUDGET, master_weights=True):
        _step(opt, 0.1)
        _step(opt, 0.2)
    return directory


def _contents(directory: Path) -> dict[str, bytes | None]:
    return {p.name: p.read_bytes() if p.is_file() else None for p in directory.iterdir()
            if p.name != ".lock"}


def _assert_unlocked(directory: Path) -> None:
    if (directory / ".lock").exists():
        fd = os.open(directory / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def _resume_or_refuse(run: Path, damage: Callable[[Path], Any]) -> None:
    """Copy ``run``, ``damage`` it, and resume: it works (and then steps and saves), or it
    raises a ValueError (DamagedFileError or a mismatch) naming the directory or a file in it
    and leaves everything as it was."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "run"
        shutil.copytree(run, directory)
        damage(directory)
        opt = AdamW(_params(seed=1), lr=1e-2)
        before, files = snapshot(opt), _contents(directory)
        try:
            offload = DiskOffload(opt, directory, memory_budget=BUDGET, master_weights=True,
                                  resume=True)
        except Exception as error:
            assert isinstance(error, ValueError), f"{type(error).__name__}: {error}"
            assert_clear_error(error, str(directory))
            assert_same(before, snapshot(opt), "optimizer changed by a refused resume")
            assert opt._offload is None
            assert _contents(directory) == files
            _assert_unlocked(directory)
            return
        with offload:  # the damage was harmless: the resumed optimizer works
            _step(opt, 0.3)
            opt.state_dict()


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to an entry of a JSON value."""
    children = (value.items() if isinstance(value, dict)
                else enumerate(value) if isinstance(value, list) else ())
    found = [at] if at else []
    for key, child in children:
        found += _paths(child, (*at, key))
    return found


def _edit(directory: Path, edit: Callable[[Any, tuple[Any, ...]], None], pick: int) -> None:
    """Apply ``edit`` to the ``pick``-th entry of the manifest (its container, its path)."""
    manifest = directory / "manifest.json"
    data = json.loads(manifest.read_text())
    paths = _paths(data)
    path = paths[pick % len(paths)]
    container = functools.reduce(lambda value, key: value[key], path[:-1], data)
    edit(container, path)
    manifest.write_text(json.dumps(data))


def _delete(container: Any, path: tuple[Any, ...]) -> None:
    del container[path[-1]]


def _rename(container: Any, path: tuple[Any, ...]) -> None:
    if isinstance(container, dict):
        container[path[-1] + "_"] = container.pop(path[-1])
    else:
        container.insert(0, container.pop(path[-1]))  # a list reordered


@PROPERTIES
@given(damage=st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 2000)),
    st.tuples(st.just("flip"), st.integers(0, 2000), st.integers(1, 255)),
    st.tuples(st.just("delete"), st.integers(0, 200)),
    st.tuples(st.just("rename"), st.integers(0, 200)),
    st.tuples(st.just("replace"), st.integers(0, 200), JSON)))
def test_a_damaged_manifest_is_refused_or_harmless(run: Path, damage: tuple[Any, ...]) -> None:
    def apply(directory: Path) -> None:
        manifest = directory / "manifest.json"
        raw = bytearray(manifest.read_bytes())
        kind, at = damage[0], damage[1]
        if kind == "truncate":
            manifest.write_bytes(raw[: at % len(raw)])
        elif kind == "flip":
            raw[at % len(raw)] ^= damage[2]
            manifest.write_bytes(bytes(raw))
        elif kind == "replace":
            _edit(directory, lambda c, path: c.__setitem__(path[-1], damage[2]), at)
        else:
            _edit(directory, _delete if kind == "delete" else _rename, at)

    _resume_or_refuse(run, apply)


@PROPERTIES
@given(pick=st.integers(0, 5), size=st.one_of(st.sampled_from([0, -1, 1, -4096, 4096]),
                                                st.integers(0, 70_000)),
       relative=st.booleans())
def test_a_state_file_of_another_size_is_refused(run: Path, pick: int, size: int,
                                                 relative: bool) -> None:
    def apply(directory: Path) -> None:
        victim = sorted(directory.glob("*.bin"))[pick % 6]  # 3 stored tensors, 2 copies
        os.truncate(victim, max(victim.stat().st_size + size if relative else size, 0))

    _resume_or_refuse(run, apply)


VALID_BUDGETS = st.sampled_from(["256KiB", "1 MiB", "60000", 60_000, 10**9])
BUDGETS = st.one_of(VALID_BUDGETS, VALID_BUDGETS, st.integers(-10, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(alphabet="0123456789.eE-KMGiBnaf ", max_size=7),
                    st.sampled_from(["1e400", "inf", "0.5B", None, True]))
FLAGS = st.one_of(st.booleans(), st.booleans(), st.sampled_from([0, 1, "yes", None]))


@PROPERTIES
@given(budget=BUDGETS, master=FLAGS,
       io=st.sampled_from(["auto", "buffered", "auto", "buffered", "fast", 3]))
def test_constructor_arguments_work_or_are_named(budget: Any, master: Any, io: Any) -> None:
    opt = AdamW(_params(), lr=1e-2)
    before = snapshot(opt)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            offload = DiskOffload(opt, tmp, memory_budget=budget, master_weights=master, io=io)
        except Exception as error:
            assert_clear_error(error, "memory_budget", "master_weights", "io")
            assert_same(before, snapshot(opt), "optimizer changed by a refused construction")
            assert opt._offload is None and not list(Path(tmp).iterdir())
            return
        with offload:
            _step(opt, 0.1)


STATES = st.dictionaries(
    st.sampled_from([0, 1, 2, "0", -1]),
    st.dictionaries(st.sampled_from(["exp_avg", "exp_avg_sq", "step", "other"]),
                    st.one_of(st.sampled_from([(40, 30), (30, 40), (7,), (), (1200,)]).map(
                        torch.zeros),
                              st.sampled_from([torch.tensor(3.0), torch.tensor(-1.0),
                                               torch.tensor(float("nan")), 2, "x", None]),
                              st.sampled_from([torch.int64, torch.float64, torch.uint8]).map(
                                  lambda dtype: torch.zeros(7, dtype=dtype))),
                    max_size=4),
    max_size=3)


def test_random_state_is_checked_without_changing_anything(tmp_path: Path) -> None:
    opt = AdamW(_params(), lr=1e-2)
    with DiskOffload(opt, tmp_path, memory_budget=BUDGET) as offload:
        _step(opt, 0.1)
        before = snapshot(opt)

        @PROPERTIES
        @given(state=STATES)
        def check(state: dict[Any, dict[str, Any]]) -> None:
            try:
                offload.check_state(state)
            except Exception as error:
                assert_clear_error(error, "parameter", "state")
            assert_same(before, snapshot(opt), "check_state changed the optimizer")

        check()
