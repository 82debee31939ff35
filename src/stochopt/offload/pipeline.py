"""The pipelined loop: read chunk i+1, update chunk i and write chunk i-1 at the same time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import TypeVar

__all__ = ["pipelined"]

Job = TypeVar("Job")
Buffer = TypeVar("Buffer")


def pipelined(jobs: Sequence[Job], read: Callable[[Job, Buffer], None],
              compute: Callable[[Job, Buffer], None], write: Callable[[Job, Buffer], None],
              buffers: Sequence[Buffer], reader: Executor, writer: Executor) -> None:
    """``read``, ``compute`` then ``write`` each job, the three stages overlapped.

    Job ``i`` uses buffer ``i % len(buffers)``; with three buffers the reader fills job i+1's
    while the caller's thread computes job i and the writer drains job i-1's, the schedule of
    DeepSpeed's pipelined swapper and of Fuyou. A buffer is refilled only after its previous
    write has finished, so no job ever sees another's bytes. Every stage runs to completion or
    failure before this returns; the first error is raised.
    """
    if not isinstance(jobs, Sequence) or not isinstance(buffers, Sequence):
        raise TypeError(f"pipelined: jobs and buffers must be sequences, got "
                        f"{type(jobs).__name__} and {type(buffers).__name__}")
    depth = len(buffers)
    if depth < 1:
        raise ValueError(f"pipelined: buffers must hold at least one buffer set, got {depth}")
    for name, stage in (("read", read), ("compute", compute), ("write", write)):
        if not callable(stage):
            raise TypeError(f"pipelined: {name} must be callable, got {stage!r}")
    for name, pool in (("reader", reader), ("writer", writer)):
        if not isinstance(pool, Executor):
            raise TypeError(f"pipelined: {name} must be a concurrent.futures.Executor, got "
                            f"{pool!r}")
    reads: dict[int, Future[None]] = {}
    writes: dict[int, Future[None]] = {}

    def start_read(i: int) -> None:
        if i - depth in writes:  # the buffer is free once its last write is done
            writes.pop(i - depth).result()
        reads[i] = reader.submit(read, jobs[i], buffers[i % depth])

    try:
        if jobs:
            start_read(0)
        for i in range(len(jobs)):
            if i + 1 < len(jobs) and depth > 1:
                start_read(i + 1)
            reads.pop(i).result()
            compute(jobs[i], buffers[i % depth])
            writes[i] = writer.submit(write, jobs[i], buffers[i % depth])
            if depth == 1:
                writes.pop(i).result()
                if i + 1 < len(jobs):
                    start_read(i + 1)
    finally:
        errors = [f.exception() for f in (*reads.values(), *writes.values())]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
