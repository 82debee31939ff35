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
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["ALIGN", "IO_MODES", "FileIO", "align_up", "aligned_buffer"]

ALIGN = 4096
IO_MODES = ("auto", "direct", "buffered")


def align_up(n: int, alignment: int = ALIGN) -> int:
    """The smallest multiple of ``alignment`` that is ``>= n``."""
    return -(-n // alignment) * alignment


def aligned_buffer(nbytes: int) -> Tensor:
    """A page-aligned uint8 tensor of ``align_up(nbytes)`` bytes (anonymous ``mmap`` memory)."""
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
        if mode not in IO_MODES:
            raise ValueError(f"io must be one of {IO_MODES}, got {mode!r}")
        self.path = path
        self.direct = False
        if mode != "buffered" and hasattr(os, "O_DIRECT"):
            try:
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
                self.direct = True
            except OSError as error:
                if mode == "direct" or error.errno != errno.EINVAL:
                    raise
        elif mode == "direct":
            raise OSError(errno.EINVAL, "this platform has no O_DIRECT", str(path))
        if not self.direct:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def reserve(self, nbytes: int) -> None:
        """Make the file ``nbytes`` long, allocating its blocks now where the filesystem can
        (so a full disk fails here, clearly, and not in the middle of a step)."""
        try:
            os.posix_fallocate(self._fd, 0, nbytes)
        except OSError as error:
            if error.errno != errno.EOPNOTSUPP and error.errno != errno.EINVAL:
                raise
            os.ftruncate(self._fd, nbytes)

    def read(self, buffer: Tensor, offset: int) -> None:
        """Fill ``buffer`` (aligned uint8, aligned length) from byte ``offset``."""
        view = memoryview(buffer.numpy())
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], offset + done)
            if n == 0:
                raise OSError(errno.EIO, f"short read at byte {offset + done}", str(self.path))
            done += n

    def write(self, buffer: Tensor, offset: int) -> None:
        """Write ``buffer`` (aligned uint8, aligned length) at byte ``offset``."""
        view = memoryview(buffer.numpy())
        done = 0
        while done < len(view):
            done += os.pwritev(self._fd, [view[done:]], offset + done)

    def sync(self) -> None:
        """Make every completed write durable (and drop it from the page cache if buffered)."""
        os.fdatasync(self._fd)
        if not self.direct and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()
