"""The arguments of :class:`~stochopt.offload.DiskOffload`, checked where they enter: each
error names the argument, shows the bad value and says what is allowed."""

from __future__ import annotations

import decimal
import errno
import fcntl
import numbers
import os
from pathlib import Path
from typing import Any

from stochopt._checks import show
from stochopt.offload import io
from stochopt.offload.io import IO_MODES

__all__ = ["OWNER", "check_flag", "check_io", "check_optimizer", "checked_directory", "lock",
           "parse_bytes"]

OWNER = "DiskOffload"
_MAX_BYTES = 2**63 - 1
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20,
          "GIB": 2**30, "K": 2**10, "M": 2**20, "G": 2**30}


def parse_bytes(value: int | str, name: str = "memory_budget") -> int:
    """Bytes from an int or a string such as ``"512MiB"``, ``"2GB"`` (a fraction of a byte is
    dropped); errors name ``name``.

    Raises:
        TypeError: ``value`` is neither an integer nor a string.
        ValueError: the string is not a number and a unit, or the bytes are not in
            ``[1, 2**63 - 1]``.
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise TypeError(f"{name} must be an int (bytes) or a string like '256MiB', got "
                        f"{show(value)}")
    amount: int | decimal.Decimal = int(value) if isinstance(value, numbers.Integral) else 0
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        number = text.rstrip("KMGIB")
        unit = text[len(number):] or "B"
        try:
            amount = decimal.Decimal(number) * _UNITS[unit]
        except (KeyError, decimal.DecimalException):
            raise ValueError(f"{name} must look like '256MiB' or '2GB', got {value!r}") from None
        if not amount.is_finite():
            raise ValueError(f"{name} must be a finite number of bytes, got {value!r}")
    if amount < 1:
        raise ValueError(f"{name} must be > 0 bytes, got {value!r}")
    if amount > _MAX_BYTES:
        raise ValueError(f"{name} must be at most 2**63 - 1 bytes, got {value!r}")
    return int(amount)


def check_optimizer(optimizer: Any) -> None:
    from stochopt.optim._engine import ElementwiseOptimizer

    if not isinstance(optimizer, ElementwiseOptimizer):
        raise TypeError(f"{OWNER}: optimizer must be a stochopt optimizer, got "
                        f"{type(optimizer).__name__}")
    previous = getattr(optimizer, "_offload", None)
    if previous is not None and previous._lock is not None:
        raise ValueError(f"{OWNER}: optimizer already offloads its state (to "
                         f"{str(previous.directory)!r}); close() that DiskOffload first")


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{OWNER}: {name} must be True or False, got {show(value)}")
    return value


def check_io(io: Any) -> str:
    if not isinstance(io, str) or io not in IO_MODES:
        kind = ValueError if isinstance(io, str) else TypeError
        raise kind(f"{OWNER}: io must be one of {IO_MODES}, got {show(io)}")
    return io


def checked_directory(directory: Any) -> Path:
    if not isinstance(directory, str | os.PathLike):
        raise TypeError(f"{OWNER}: directory must be a path (a str or os.PathLike), got "
                        f"{show(directory)}")
    raw = os.fspath(directory)
    if not isinstance(raw, str):
        raise TypeError(f"{OWNER}: directory must be a path of str, got {show(raw)}")
    if not raw.strip():
        raise ValueError(f"{OWNER}: directory must name a directory, got {raw!r}")
    path = Path(raw)
    if not path.exists():
        raise FileNotFoundError(f"{OWNER}: directory {raw!r} does not exist; create it on the "
                                f"disk that should hold the optimizer state")
    if not path.is_dir():
        raise NotADirectoryError(f"{OWNER}: directory {raw!r} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{OWNER}: directory {raw!r} is not writable")
    return path


def lock(directory: Path) -> int:
    fd = io.fs.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        io.fs.close(fd)
        raise OSError(errno.EBUSY, f"{OWNER}: directory {str(directory)!r} is in use by "
                      f"another DiskOffload (in this or another process); close() it, or drop it "
                      f"and its optimizer (which releases it), or choose another directory"
                      ) from None
    return fd
