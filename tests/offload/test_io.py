"""File I/O: aligned buffers, direct I/O where the filesystem has it, buffered elsewhere."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from stochopt.offload.io import ALIGN, FileIO, align_up, aligned_buffer


def test_aligned_buffers() -> None:
    buffer = aligned_buffer(5000)
    assert buffer.dtype == torch.uint8 and buffer.numel() == 8192
    assert buffer.data_ptr() % ALIGN == 0
    assert align_up(0) == 0 and align_up(1) == ALIGN and align_up(ALIGN) == ALIGN


@pytest.mark.parametrize("mode", ["auto", "buffered"])
def test_round_trip_at_offsets(tmp_path: Path, mode: str) -> None:
    file = FileIO(tmp_path / "state.bin", mode)
    file.reserve(4 * ALIGN)
    out = aligned_buffer(2 * ALIGN)
    out.copy_(torch.arange(2 * ALIGN) % 251)
    file.write(out, ALIGN)
    file.sync()
    back = aligned_buffer(2 * ALIGN)
    file.read(back, ALIGN)
    assert torch.equal(back, out)
    file.close()
    assert os.path.getsize(tmp_path / "state.bin") == 4 * ALIGN


def test_reading_past_the_end_is_an_error(tmp_path: Path) -> None:
    file = FileIO(tmp_path / "state.bin", "buffered")
    file.reserve(ALIGN)
    with pytest.raises(OSError, match="short read at byte 4096"):
        file.read(aligned_buffer(ALIGN), ALIGN)


def test_a_filesystem_without_direct_io_falls_back_to_buffered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Filesystems that refuse O_DIRECT answer EINVAL at open: auto mode goes buffered,
    direct mode reports the error."""
    real_open = os.open

    def no_direct(path: object, flags: int, *args: object) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    file = FileIO(tmp_path / "state.bin", "auto")
    assert not file.direct
    file.reserve(ALIGN)
    file.write(aligned_buffer(ALIGN), 0)
    file.sync()
    file.close()
    with pytest.raises(OSError, match="Invalid argument"):
        FileIO(tmp_path / "state.bin", "direct")


def test_bad_mode() -> None:
    with pytest.raises(ValueError,
                       match=r"FileIO: mode must be one of \('auto', 'direct', 'buffered'\)"):
        FileIO(Path("x"), "fast")
