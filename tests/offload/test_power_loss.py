"""A power loss at every point of a few offloaded steps leaves a committed step, intact.

``test_crash.py`` kills the process (SIGKILL), which keeps the page cache: every write survives,
synced or not, so a commit protocol that syncs in the wrong order, or not at all, still passes.
Here an uninterrupted run is recorded instead: every call that changes a file goes through the
seam :data:`stochopt.offload.io.fs`, which the test replaces with :class:`RecordingFileSystem`.
It performs each call and also applies it to a model of the directory that knows what is
durable. After every prefix of the record (every crash point: after 0, 1, ..., n calls) the
model gives what a power loss leaves on disk; the test writes that into a fresh directory,
resumes from it and checks the result (the approach of LevelDB's fault-injection Env and of
CrashMonkey: record, drop what was not synced, recover, check).

Durability model (ext4-like and conservative):

* A file's contents, its size included (``write``, ``pwritev``, ``ftruncate``,
  ``posix_fallocate``), are durable only as of its last ``fsync`` or ``fdatasync``: a power
  loss reverts the file to what it held then (a file never synced is empty).
* A directory's entries (a file created, a rename, an unlink) are durable only as of the last
  ``fsync`` of the directory: a new file may vanish, a rename may be lost back to the old name,
  a removed file may reappear (with its synced contents).
* Entries not yet synced may also have reached the disk (a journal writes metadata in order,
  and may write it before the data: the zero-length files of delayed allocation). Each crash
  point is checked at both extremes: ``entries lost`` (the directory as of its last fsync) and
  ``entries kept`` (the directory as at the crash), file contents as of their last sync in both.
* A synced write is never torn; reads change nothing; the directory itself is durable (the test
  made it).

The oracle, for each crash point: let ``c`` be the number of the last step whose commit had
returned (the constructor commits step 0; ``c = -1`` before it returns). Resume must give
exactly step ``c`` or step ``c + 1`` (the step in flight, if its manifest switch became
durable): the parameters (restored from the fp32 master copies), every state tensor and the
step, bit for bit as the uninterrupted run had them then; and training on must end bit for bit
where the uninterrupted run ends. With nothing committed, resume must say that the directory
holds no state (``FileNotFoundError``), and a fresh start in it must work. A
:class:`~stochopt.errors.DamagedFileError` fails the test: under this model a correct protocol
always has an intact committed step to fall back to, so a damaged directory means it lost one
(damaged files proper are ``test_bad_input.py``'s).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from stochopt.offload import DiskOffload, io
from stochopt.optim import AdamW
from tests.offload.crash_worker import BUDGET, make_params, train

STEPS = 3  # steps after the initial commit: copy 1 written fresh, then both copies reused
#: what a power loss leaves: each file's name and durable contents, sorted by name
Disk = tuple[tuple[str, bytes], ...]


class _Inode:
    """A file: what a reader sees now, and what a power loss would leave of it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.synced = b""

    def resize(self, size: int) -> None:
        if size > len(self.data):
            self.data.extend(bytes(size - len(self.data)))
        else:
            del self.data[size:]

    def write(self, offset: int, data: bytes) -> None:
        self.resize(max(len(self.data), offset + len(data)))
        self.data[offset: offset + len(data)] = data


class RecordingFileSystem(io.FileSystem):
    """Does every call, applies it to the model of one directory and records after each call
    what a power loss would leave, at both extremes (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.names: dict[str, _Inode] = {}  # the directory now
        self.synced_names: dict[str, _Inode] = {}  # the directory as of its last fsync
        self.fds: dict[int, tuple[_Inode | None, list[int]]] = {}  # None: the directory
        self.calls: list[str] = []  # call i: what it did, for messages
        self.lost: list[Disk] = [()]  # lost[i]: after i calls, unsynced entries lost
        self.kept: list[Disk] = [()]  # kept[i]: after i calls, unsynced entries kept
        self.commits: list[int] = []  # commits[k]: the calls made when step k's commit returned
        self._lock = threading.Lock()  # the writer thread and the main thread both call

    def _name(self, path: str | os.PathLike[str]) -> str:
        path = Path(path)
        if path.parent != self.directory:
            raise AssertionError(f"the model covers {self.directory}, not {path}")
        return path.name

    def _did(self, call: str) -> None:
        self.calls.append(call)
        self.lost.append(tuple(sorted((n, f.synced) for n, f in self.synced_names.items())))
        self.kept.append(tuple(sorted((n, f.synced) for n, f in self.names.items())))

    def _file(self, fd: int) -> _Inode:
        inode = self.fds[fd][0]
        assert inode is not None, "a data call on the directory"
        return inode

    def _label(self, fd: int) -> str:
        inode = self.fds[fd][0]
        return next((n for n, f in self.names.items() if f is inode), "<the directory>")

    def open(self, path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        with self._lock:
            if Path(path) == self.directory:
                fd = super().open(path, flags, mode)
                self.fds[fd] = (None, [0])
                self._did("open the directory")
                return fd
            name = self._name(path)
            existed = os.path.lexists(path)
            try:
                fd = super().open(path, flags, mode)
            finally:  # an open that fails may still have created the file
                if not existed and os.path.lexists(path):
                    self.names[name] = _Inode()
            inode = self.names[name]
            if flags & os.O_TRUNC:
                inode.resize(0)
            self.fds[fd] = (inode, [0])
            self._did(f"open {name}" + (" (created)" if not existed else ""))
            return fd

    def close(self, fd: int) -> None:
        with self._lock:
            if fd not in self.fds:  # opened before the record began (a FileIO collected now)
                super().close(fd)
                return
            label = self._label(fd)
            super().close(fd)
            del self.fds[fd]
            self._did(f"close {label}")

    def write(self, fd: int, data: bytes) -> int:
        with self._lock:
            n = super().write(fd, data)
            position = self.fds[fd][1]
            self._file(fd).write(position[0], bytes(data[:n]))
            position[0] += n
            self._did(f"write {self._label(fd)}")
            return n

    def pwritev(self, fd: int, buffers: Sequence[memoryview], offset: int) -> int:
        with self._lock:
            n = super().pwritev(fd, buffers, offset)
            self._file(fd).write(offset, b"".join(bytes(b) for b in buffers)[:n])
            self._did(f"pwritev {self._label(fd)} at {offset}")
            return n

    def posix_fallocate(self, fd: int, offset: int, length: int) -> None:
        with self._lock:
            super().posix_fallocate(fd, offset, length)
            inode = self._file(fd)
            inode.resize(max(len(inode.data), offset + length))
            self._did(f"posix_fallocate {self._label(fd)}")

    def ftruncate(self, fd: int, length: int) -> None:
        with self._lock:
            super().ftruncate(fd, length)
            self._file(fd).resize(length)
            self._did(f"ftruncate {self._label(fd)}")

    def fsync(self, fd: int) -> None:
        with self._lock:
            super().fsync(fd)
            self._sync(fd, "fsync")

    def fdatasync(self, fd: int) -> None:
        with self._lock:
            super().fdatasync(fd)
            self._sync(fd, "fdatasync")

    def _sync(self, fd: int, call: str) -> None:
        inode = self.fds[fd][0]
        if inode is None:
            self.synced_names = dict(self.names)
        else:
            inode.synced = bytes(inode.data)
        self._did(f"{call} {self._label(fd)}")

    def replace(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        with self._lock:
            old, new = self._name(src), self._name(dst)
            super().replace(src, dst)
            self.names[new] = self.names.pop(old)
            self._did(f"replace {old} -> {new}")

    def unlink(self, path: str | os.PathLike[str]) -> None:
        with self._lock:
            name = self._name(path)
            super().unlink(path)
            del self.names[name]
            self._did(f"unlink {name}")

    def committed(self, at: int) -> int:
        """The last step whose commit had returned after ``at`` calls (-1: none)."""
        return sum(1 for n in self.commits if n <= at) - 1

    def check_against(self, directory: Path) -> None:
        """The model's present equals the real directory: no change escaped the seam."""
        real = {p.name: p.read_bytes() for p in directory.iterdir()}
        model = {n: bytes(f.data) for n, f in self.names.items()}
        assert real.keys() == model.keys(), "a file was created or removed outside io.fs"
        for name in real:
            assert real[name] == model[name], f"{name} was changed outside io.fs"


# ------------------------------------------------------------------ the recorded run
Snapshot = tuple[list[Tensor], dict[Any, Any]]  # parameters, the state dict's "state"


def _open(params: list[Tensor], directory: Path, resume: bool) -> tuple[AdamW, DiskOffload]:
    opt = AdamW(params, lr=1e-2)
    return opt, DiskOffload(opt, directory, memory_budget=BUDGET, master_weights=True,
                            resume=resume)


def _snapshot(params: list[Tensor], opt: AdamW) -> Snapshot:
    state = opt.state_dict()["state"]  # its steps are the optimizer's own tensors: copy them
    return ([p.detach().clone() for p in params],
            {k: {n: v.clone() for n, v in s.items()} for k, s in state.items()})


def _record(directory: Path,
            monkeypatch: pytest.MonkeyPatch) -> tuple[RecordingFileSystem, list[Snapshot]]:
    """Run STEPS steps from a fresh start through a recording file system; the record and
    the parameters and state after each commit (index k: step k)."""
    recorder = RecordingFileSystem(directory)
    with monkeypatch.context() as patch:
        patch.setattr(io, "fs", recorder)
        params = make_params()
        opt, offload = _open(params, directory, resume=False)
        snapshots = []
        for t in range(STEPS + 1):
            if t:
                train(opt, params, t - 1, t)
            recorder.commits.append(len(recorder.calls))
            recorder.check_against(directory)
            snapshots.append(_snapshot(params, opt))
        offload.close()
    recorder.check_against(directory)
    return recorder, snapshots


def _same(a: Snapshot, b: Snapshot) -> bool:
    """Bit for bit: every parameter, every state tensor (dtype included) and every step."""
    if any(not torch.equal(p, q) for p, q in zip(a[0], b[0])) or a[1].keys() != b[1].keys():
        return False
    return all(a[1][k].keys() == b[1][k].keys()
               and all(v.dtype == b[1][k][n].dtype and torch.equal(v, b[1][k][n])
                       for n, v in a[1][k].items()) for k in a[1])


def _resume(disk: Disk, committed: int, snapshots: list[Snapshot],
            directory: Path) -> str | None:
    """Resume from ``disk`` (written into ``directory``) and train on; what went wrong, if
    anything."""
    directory.mkdir(parents=True)
    for name, data in disk:
        (directory / name).write_bytes(data)
    try:
        return _check_resume(directory, committed, snapshots)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        shutil.rmtree(directory)


def _check_resume(directory: Path, committed: int, snapshots: list[Snapshot]) -> str | None:
    params = make_params()
    try:
        opt, offload = _open(params, directory, resume=True)
    except FileNotFoundError as error:
        if committed >= 0 or "holds no offloaded state" not in str(error):
            return f"step {committed} was committed, but resume says: {error}"
        opt, offload = _open(params, directory, resume=False)  # start afresh over the debris
    with offload:
        start = int(opt.state[params[0]]["step"])
        if start not in (committed, committed + 1):
            return (f"resumed at step {start}, but step {committed} was committed (a committed "
                    f"step lost)" if start < committed else f"resumed at step {start}")
        if not _same(_snapshot(params, opt), snapshots[start]):
            return f"resumed at step {start}, but its state is not step {start}'s (a mix)"
        train(opt, params, start, STEPS)
        if not _same(_snapshot(params, opt), snapshots[STEPS]):
            return f"resumed at step {start}, but training on ends elsewhere"
    return None


def _failures(recorder: RecordingFileSystem, snapshots: list[Snapshot],
              scratch: Path) -> tuple[list[str], int]:
    """Resume from every crash point, at both extremes; what failed, and how many distinct
    disks were resumed (crash points leaving the same disk, with the same step committed, have
    the same outcome and are resumed once)."""
    outcomes: dict[tuple[Disk, int], str | None] = {}
    failures = []
    for at in range(len(recorder.calls) + 1):
        committed = recorder.committed(at)
        for extreme, disk in (("entries lost", recorder.lost[at]),
                              ("entries kept", recorder.kept[at])):
            key = (disk, committed)
            if key not in outcomes:
                outcomes[key] = _resume(disk, committed, snapshots, scratch / str(len(outcomes)))
            if outcomes[key] is not None:
                last = recorder.calls[at - 1] if at else "nothing"
                failures.append(f"power lost after call {at} ({last}; step {committed} "
                                f"committed), {extreme}: {outcomes[key]}")
    return failures, len(outcomes)


# ------------------------------------------------------------------------------ tests
@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The tensors are tiny: torch's intra-op threads only add overhead (five times the CPU
    time on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_recorder_sees_every_call_that_changes_a_file() -> None:
    ours = {name for name in vars(RecordingFileSystem) if not name.startswith("_")}
    calls = {name for name in vars(io.FileSystem) if not name.startswith("_")}
    assert calls <= ours


def test_the_model_keeps_what_was_synced_and_nothing_else(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = RecordingFileSystem(tmp_path)
    monkeypatch.setattr(io, "fs", recorder)
    file = io.FileIO(tmp_path / "a.bin", "buffered")
    file.reserve(io.ALIGN)
    block = io.aligned_buffer(io.ALIGN)
    block.fill_(7)
    file.write(block, 0)
    created = len(recorder.calls)
    assert recorder.lost[created] == () and recorder.kept[created] == (("a.bin", b""),)
    file.sync()
    synced = (("a.bin", bytes([7]) * io.ALIGN),)
    assert recorder.lost[-1] == () and recorder.kept[-1] == synced  # the entry is not durable
    io.sync_directory(tmp_path)
    assert recorder.lost[-1] == synced
    block.fill_(9)
    file.write(block, 0)  # unsynced: a power loss keeps the 7s
    io.replace_durably(tmp_path / "b", b"new")
    file.close()
    assert recorder.lost[-1] == recorder.kept[-1] == (*synced, ("b", b"new"))
    io.replace_durably(tmp_path / "b", b"newer")
    renamed = len(recorder.calls) - 1 - recorder.calls[::-1].index("replace .b.tmp -> b")
    # before the directory's fsync the rename may be lost: b is the old file again
    assert dict(recorder.lost[renamed + 1])["b"] == b"new"
    assert dict(recorder.kept[renamed + 1])["b"] == b"newer"
    recorder.check_against(tmp_path)


def test_a_power_loss_at_any_point_resumes_a_committed_step_exactly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    recorder, snapshots = _record(directory, monkeypatch)
    reference = make_params()  # the recorded run is the in-memory run, bit for bit
    memory = AdamW(reference, lr=1e-2)
    train(memory, reference, 0, STEPS)
    assert _same(_snapshot(reference, memory), snapshots[STEPS])
    failures, resumed = _failures(recorder, snapshots, tmp_path / "crash")
    crashes = 2 * (len(recorder.calls) + 1)
    assert not failures, (f"{len(failures)} of {crashes} crash states fail:\n"
                          + "\n".join(failures[:12]))
    assert resumed > 4 * STEPS  # the disk left behind does change from point to point
