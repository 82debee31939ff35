"""File I/O for out-of-core state: aligned buffers, direct I/O with a buffered fallback.

Direct I/O (``O_DIRECT``) moves bytes between the device and our buffers without the page
cache, so a step's reads and writes cost what the disk costs and do not evict the rest of
memory. It requires buffer addresses, file offsets and lengths aligned to the device's logical
block; every region here is aligned to :data:`ALIGN` bytes (4096, the largest common logical
block). Filesystems without direct I/O (tmpfs, some overlays) refuse ``O_DIRECT`` with
``EINVAL``; ``mode="auto"`` then falls back to buffered I/O, made durable by ``fdatasync`` and
kept out of the page cache with ``posix_fadvise(DONTNEED)``.

``os.preadv``/``os.pwritev`` release the GIL, so reads, writes and the update's tensor
operations run truly in parallel from Python threads.

Every call of offload that changes a file (creates, sizes, writes, syncs, renames or removes
it) goes through the module-level :data:`fs`, a :class:`FileSystem` whose methods are the ``os``
functions themselves: a test swaps it for one that records each call and replays power losses
(``tests/offload/test_power_loss.py``). Reads do not: they change nothing a crash could lose.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, show

__all__ = ["ALIGN", "IO_MODES", "FileIO", "FileSystem", "align_up", "aligned_buffer", "fs",
           "replace_durably", "sync_directory"]

ALIGN = 4096
IO_MODES = ("auto", "direct", "buffered")


class FileSystem:
    """The calls that change files, each the ``os`` function of the same name (looked up when
    called). Offload makes them through :data:`fs` only, so a test that replaces ``fs`` sees
    every change it makes to the disk, in order."""

    def open(self, path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        return os.open(path, flags, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def pwritev(self, fd: int, buffers: Sequence[memoryview], offset: int) -> int:
        return os.pwritev(fd, buffers, offset)

    def posix_fallocate(self, fd: int, offset: int, length: int) -> None:
        os.posix_fallocate(fd, offset, length)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def replace(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        os.replace(src, dst)

    def unlink(self, path: str | os.PathLike[str]) -> None:
        os.unlink(path)


#: the file system offload changes files through (a test may replace it)
fs = FileSystem()


def sync_directory(directory: Path) -> None:
    """Make ``directory``'s entries durable: the files created, renamed or removed in it."""
    fd = fs.open(directory, os.O_RDONLY)
    try:
        fs.fsync(fd)
    finally:
        fs.close(fd)


def replace_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` by a file holding ``data``, atomically (a crash or a power loss leaves
    the old file or the new one, never a mix) and durably (once this returns, the new one
    survives a power loss): write ``.<name>.tmp`` beside it and fsync it, rename it over
    ``path``, then fsync the directory, which makes the rename durable. Only one writer may
    use the directory at a time (offload holds its lock)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view, done = memoryview(data), 0
            while done < len(view):
                done += fs.write(fd, view[done:])
            fs.fsync(fd)
        finally:
            fs.close(fd)
        fs.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            fs.unlink(tmp)
        raise
    sync_directory(path.parent)


def align_up(n: int, alignment: int = ALIGN) -> int:
    """The smallest multiple of ``alignment`` (>= 1) that is ``>= n``."""
    if alignment < 1:
        raise ValueError(f"align_up: alignment must be >= 1, got {alignment!r}")
    return -(-n // alignment) * alignment


def aligned_buffer(nbytes: int) -> Tensor:
    """A page-aligned uint8 tensor of ``align_up(nbytes)`` bytes (anonymous ``mmap`` memory)."""
    nbytes = check_int("aligned_buffer", "nbytes", nbytes, low=0)
    memory = mmap.mmap(-1, max(align_up(nbytes), ALIGN))
    return torch.frombuffer(memory, dtype=torch.uint8)


class FileIO:
    """Positional reads and writes of aligned byte ranges of one file.

    Args:
        path: the file (created if missing).
        mode: ``"direct"`` (``O_DIRECT``; an error if the filesystem refuses it), ``"buffered"``
            or ``"auto"`` (direct where possible, else buffered).
    """

    def __init__(self, path: Path, mode: str = "auto") -> None:
        if not isinstance(path, str | os.PathLike) or not isinstance(os.fspath(path), str):
            raise TypeError(f"FileIO: path must be a path (a str or os.PathLike), got "
                            f"{show(path)}")
        if not isinstance(mode, str) or mode not in IO_MODES:
            kind = ValueError if isinstance(mode, str) else TypeError
            raise kind(f"FileIO: mode must be one of {IO_MODES}, got {show(mode)}")
        self.path = path = Path(path)
        self._fd = -1
        self.direct = False
        if mode != "buffered" and hasattr(os, "O_DIRECT"):
            try:
                self._fd = fs.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
                self.direct = True
            except OSError as error:
                if mode == "direct" or error.errno != errno.EINVAL:
                    raise
        elif mode == "direct":
            raise OSError(errno.EINVAL, "this platform has no O_DIRECT", str(path))
        if not self.direct:
            self._fd = fs.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def reserve(self, nbytes: int) -> None:
        """Make the file ``nbytes`` long, allocating its blocks now where the filesystem can
        (so a full disk fails here, clearly, and not in the middle of a step)."""
        nbytes = check_int("FileIO.reserve", "nbytes", nbytes, low=0)
        self._check_open()
        try:
            fs.posix_fallocate(self._fd, 0, nbytes)
        except OSError as error:
            if error.errno != errno.EOPNOTSUPP and error.errno != errno.EINVAL:
                raise
            fs.ftruncate(self._fd, nbytes)

    def read(self, buffer: Tensor, offset: int) -> None:
        """Fill ``buffer`` (aligned uint8, aligned length) from byte ``offset``."""
        view = memoryview(self._checked(buffer, offset, "read").numpy())
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], offset + done)
            if n == 0:
                raise OSError(errno.EIO, f"short read at byte {offset + done}", str(self.path))
            done += n

    def write(self, buffer: Tensor, offset: int) -> None:
        """Write ``buffer`` (aligned uint8, aligned length) at byte ``offset``."""
        view = memoryview(self._checked(buffer, offset, "write").numpy())
        done = 0
        while done < len(view):
            done += fs.pwritev(self._fd, [view[done:]], offset + done)

    def _checked(self, buffer: Any, offset: Any, method: str) -> Tensor:
        """``buffer`` if it is a 1-d contiguous CPU uint8 tensor and ``offset`` a byte offset
        >= 0 (with direct I/O, both and the length aligned to :data:`ALIGN`)."""
        owner = f"FileIO.{method}"
        usable = (isinstance(buffer, Tensor) and buffer.dtype == torch.uint8 and buffer.ndim == 1
                  and buffer.device.type == "cpu" and buffer.is_contiguous())
        if not usable:
            raise TypeError(f"{owner}: buffer must be a 1-d contiguous CPU uint8 tensor, got "
                            f"{show(buffer)}")
        offset = check_int(owner, "offset", offset, low=0)
        self._check_open()
        aligned = (offset % ALIGN == 0 and buffer.numel() % ALIGN == 0
                   and buffer.data_ptr() % ALIGN == 0)
        if self.direct and not aligned:
            raise ValueError(f"{owner}: direct I/O on {str(self.path)!r} needs the offset, the "
                             f"buffer's address and its length aligned to {ALIGN} bytes, got "
                             f"offset {offset} and {buffer.numel()} bytes")
        return buffer

    def _check_open(self) -> None:
        if self._fd < 0:
            raise ValueError(f"FileIO: {str(self.path)!r} is closed")

    def sync(self) -> None:
        """Make every completed write durable (and drop it from the page cache if buffered)."""
        self._check_open()
        fs.fdatasync(self._fd)
        if not self.direct and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        if self._fd >= 0:
            fs.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()
