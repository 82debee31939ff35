"""The pipeline schedule: every job is read, computed and written once, in order, never
sharing a buffer with a job in flight; errors surface after everything in flight is done."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from stochopt.offload import pipelined


def _run(n: int, depth: int, fail_at: int | None = None) -> list[tuple[str, int, int]]:
    events: list[tuple[str, int, int]] = []
    owner: dict[int, int] = {}  # buffer -> job holding it
    lock = threading.Lock()

    def stage(name: str):
        def run(job: int, buffer: int) -> None:
            with lock:
                if name == "read":
                    assert buffer not in owner, f"buffer {buffer} reused while in use"
                    owner[buffer] = job
                assert owner[buffer] == job
                events.append((name, job, buffer))
            time.sleep(0.005 if name == "compute" else 0.001)
            if name == "compute" and job == fail_at:
                raise RuntimeError(f"update of job {job} failed")
            if name == "write":
                with lock:
                    del owner[buffer]
        return run

    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        pipelined(list(range(n)), stage("read"), stage("compute"), stage("write"),
                  list(range(depth)), reader, writer)
    return events


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_each_job_passes_each_stage_once_in_order(depth: int) -> None:
    events = _run(10, depth)
    for name in ("read", "compute", "write"):
        assert [job for stage, job, _ in events if stage == name] == list(range(10))
    for job in range(10):
        order = [events.index((stage, job, job % depth)) for stage in ("read", "compute", "write")]
        assert order == sorted(order)


def test_reads_run_ahead_of_the_update() -> None:
    events = _run(6, 3)
    # read 1 is queued before update 0 starts, so it runs during it, before write 0
    assert events.index(("read", 1, 1)) < events.index(("write", 0, 0))


def test_an_error_surfaces_after_work_in_flight_finishes() -> None:
    with pytest.raises(RuntimeError, match="update of job 4 failed"):
        _run(10, 3, fail_at=4)


def test_no_buffers_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one buffer set"):
        pipelined([1], print, print, print, [], None, None)  # type: ignore[arg-type]
