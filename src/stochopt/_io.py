"""Files written atomically and read defensively.

Writes: a reader sees the old file or the new one, never a partial one. Reads: a file that is
truncated, not valid JSON or not shaped as expected raises
:class:`~stochopt.errors.DamagedFileError` naming the file, what is wrong and how to recover,
never a bare ``KeyError`` or ``JSONDecodeError``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stochopt.errors import DamagedFileError

__all__ = ["damaged", "read_json", "require_fields", "write_text_atomic"]

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either the old or the new file, never a partial
    one: write a temporary file in the same directory, fsync it, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are ordinary files
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def damaged(path: Path | str, what: str, problem: str, recover: str) -> DamagedFileError:
    """The error for a damaged file: ``"<what> <path> is damaged: <problem>; <recover>"``."""
    return DamagedFileError(path, f"{what} {path} is damaged: {problem}; {recover}")


def read_json(path: Path | str, *, what: str, recover: str, kind: type = dict) -> Any:
    """The JSON value in ``path``, which must be a ``kind`` (a dict by default).

    Args:
        path: the file.
        what: what the file is, for messages (e.g. ``"run record"``).
        recover: how the user recovers, for messages (e.g. ``"delete it and run again"``).
        kind: the type the top-level value must have.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        DamagedFileError: the file is not UTF-8 JSON, or its top-level value is not a ``kind``.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise damaged(path, what, "it is a directory, not a file", recover) from None
    except UnicodeDecodeError as error:
        raise damaged(path, what, f"it is not UTF-8 text ({error.reason})", recover) from None
    except (json.JSONDecodeError, RecursionError) as error:
        problem = (f"it is not valid JSON ({error.msg} at line {error.lineno}, column "
                   f"{error.colno}; the file may be truncated)"
                   if isinstance(error, json.JSONDecodeError) else "it is nested too deeply")
        raise damaged(path, what, problem, recover) from None
    if not isinstance(value, kind):
        raise damaged(path, what, f"it holds a JSON {type(value).__name__}, not a "
                      f"{kind.__name__}", recover)
    return value


def require_fields(data: Mapping[str, Any], path: Path | str, what: str, recover: str,
                   **fields: type | tuple[type, ...]) -> None:
    """Check that ``data`` (read from ``path``) has each of ``fields`` with the given type(s);
    otherwise raise :class:`DamagedFileError` naming the first missing or mistyped entry.
    ``bool`` never counts as an ``int`` or ``float``."""
    for key, types in fields.items():
        if key not in data:
            raise damaged(path, what, f"it has no {key!r} entry", recover)
        value = data[key]
        allowed = types if isinstance(types, tuple) else (types,)
        wrong_bool = isinstance(value, bool) and bool not in allowed
        if wrong_bool or not isinstance(value, allowed):
            names = " or ".join(t.__name__ for t in allowed)
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise damaged(path, what, f"its {key!r} entry is {shown}, expected {names}",
                          recover)
