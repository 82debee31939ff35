"""Out-of-core optimizer state: files on a disk, streamed through a memory budget with the
reads, the update and the writes overlapped (Fuyou; Liao et al., 2024)."""

from __future__ import annotations

from stochopt.offload.disk import DiskOffload, parse_bytes
from stochopt.offload.io import FileIO
from stochopt.offload.pipeline import pipelined

__all__ = ["DiskOffload", "FileIO", "parse_bytes", "pipelined"]
