"""Optimizer state on disk, streamed through a small memory budget (Liao et al., 2024).

:class:`DiskOffload` moves the state of any stochopt optimizer (and optionally fp32 master
copies of the parameters) into files, and runs each step as a pipeline over chunks: while the
update rule runs on chunk i, chunk i+1 is read and chunk i-1 written. The rule is the
optimizer's own ``update``, applied by the engine's ``_apply`` to each chunk, so the step is
the in-memory step bit for bit; the step is synchronous (no stale updates).

Crash safety: every stored tensor has two copies (files ``<name>.0.bin`` and ``<name>.1.bin``).
A step reads a parameter's committed copy and writes the other; when every chunk of the step
is written and synced, ``manifest.json`` is replaced atomically to point at the new copies. A
process killed at any moment leaves the manifest naming a complete, untouched copy of the last
completed step, which ``DiskOffload(..., resume=True)`` reopens (and, with master weights,
copies back into the parameters). The price is twice the state's size on disk, not extra I/O.

References:
    Liao, Huang, Lin, Wang, Hou, Sun, Zhu, Chen, "Adding NVMe SSDs to Enable and Accelerate
    100B Model Fine-tuning on a Single GPU", 2024, arXiv:2403.06504 (Fuyou; LoHan in v2).
    DeepSpeed ZeRO-Infinity's pipelined optimizer swapper (read i+1 / update i / write i-1).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochopt._io import write_text_atomic
from stochopt.errors import UnsupportedError
from stochopt.offload.io import IO_MODES, FileIO, align_up, aligned_buffer
from stochopt.offload.layout import Job, ParamLayout, Stored, granularity
from stochopt.offload.pipeline import pipelined

__all__ = ["DiskOffload", "parse_bytes"]

MANIFEST = "manifest.json"
MASTER = "master"
_FORMAT = 1
_PROBE = 1 << 16  # elements of the probe chunk: a multiple of any power-of-two block size
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20,
          "GIB": 2**30, "K": 2**10, "M": 2**20, "G": 2**30}


def parse_bytes(value: int | str, name: str = "memory_budget") -> int:
    """Bytes from an int or a string such as ``"512MiB"``, ``"2GB"``; errors name ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} must be an int (bytes) or a string like '256MiB', got {value!r}")
    if isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        number = text.rstrip("KMGIB")
        unit = text[len(number):] or "B"
        try:
            value = int(float(number) * _UNITS[unit])
        except (KeyError, ValueError):
            raise ValueError(f"{name} must look like '256MiB' or '2GB', got {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be > 0 bytes, got {value}")
    return value


class DiskOffload:
    """Keep ``optimizer``'s state in files under ``directory``, stepping through ``memory_budget``.

    Args:
        optimizer: any stochopt optimizer (its param groups are fixed from here on).
        directory: an existing directory on the disk that will hold the state (twice).
        memory_budget: bytes (or a string such as ``"256MiB"``) for the I/O buffers: three
            buffer sets of one chunk each (default ``"256MiB"``).
        master_weights: also keep a float32 master copy of every parameter on disk; the rule
            updates the master and the parameter receives it rounded to its own dtype (the
            mixed-precision recipe of ZeRO-Offload and Fuyou); ``state_precision="native"``
            then means float32 like the master (default False).
        io: ``"direct"`` (``O_DIRECT``), ``"buffered"`` or ``"auto"`` (direct where the
            filesystem allows it) (default ``"auto"``).
        resume: reopen the state a previous run left in ``directory`` (its last completed
            step) instead of starting fresh (default False).

    Example:
        >>> import tempfile
        >>> from stochopt.optim import AdamW
        >>> model = torch.nn.Linear(512, 512)
        >>> opt = AdamW(model.parameters(), lr=1e-3)
        >>> offload = DiskOffload(opt, tempfile.mkdtemp(), memory_budget="1MiB")
        >>> model(torch.randn(8, 512)).square().mean().backward()
        >>> opt.step()  # reads, updates and writes the state chunk by chunk
        >>> offload.close()
    """

    buffers = 3  # read i+1, update i, write i-1
    file_type: type[FileIO] = FileIO  # the I/O of one file (tests substitute slow or failing I/O)

    def __init__(self, optimizer: Any, directory: str | os.PathLike[str], *,
                 memory_budget: int | str = "256MiB", master_weights: bool = False,
                 io: str = "auto", resume: bool = False) -> None:
        from stochopt.optim._engine import ElementwiseOptimizer

        if not isinstance(optimizer, ElementwiseOptimizer):
            raise TypeError(f"optimizer must be a stochopt optimizer, got "
                            f"{type(optimizer).__name__}")
        previous = getattr(optimizer, "_offload", None)
        if previous is not None and previous._lock is not None:
            raise ValueError("optimizer already offloads its state; close() that DiskOffload first")
        if io not in IO_MODES:
            raise ValueError(f"io must be one of {IO_MODES}, got {io!r}")
        self.optimizer, self.master_weights, self.io = optimizer, bool(master_weights), io
        self.directory = _checked_directory(directory)
        self.memory_budget = parse_bytes(memory_budget)
        self._lock: int | None = _lock(self.directory)
        try:
            self._attach(resume)
        except BaseException:
            os.close(self._lock)
            self._lock = None
            raise
        optimizer._offload = self

    def _attach(self, resume: bool) -> None:
        optimizer = self.optimizer
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        self._index = {id(p): k for k, p in enumerate(self._params)}
        self.layouts = [self._describe(i, g, p) for i, (g, p) in enumerate(self._owners())]
        for layout in self.layouts:
            layout.chunks = self._plan(layout)
        self._buffers = [aligned_buffer(self._buffer_bytes()) for _ in range(self.buffers)]
        manifest = self.directory / MANIFEST
        if resume != manifest.exists():
            _refuse(self.directory, resume)
        self._files = self._open_files(create=not resume)
        self._committed = [0] * len(self.layouts)
        self._pending: set[int] = set()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="stochopt-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="stochopt-write")
        self._early: dict[int, Future[None]] = {}
        self._hooks: list[Any] = []
        if resume:
            self._resume(json.loads(manifest.read_text()))
        else:
            self._initialize()

    # ------------------------------------------------------------------------ layout
    def _owners(self) -> Iterator[tuple[int, Tensor]]:
        for g, group in enumerate(self.optimizer.param_groups):
            for p in group["params"]:
                yield g, p

    def _describe(self, index: int, g: int, param: Tensor) -> ParamLayout:
        """Stored tensors of ``param``, from its rule's initial state of a probe chunk."""
        if param.is_sparse or param.layout != torch.strided:
            raise UnsupportedError(f"parameter {index} is not a dense tensor; offload needs one")
        p = _real(param)
        group = self.optimizer.param_groups[g]
        split = self.optimizer.splittable(group) and p.is_contiguous() and p.ndim > 0 < p.numel()
        layout = ParamLayout(index, g, tuple(p.shape), p.dtype, split)
        if split:  # a probe chunk gives each stored tensor's elements per parameter element
            probe = p.new_zeros(_PROBE)
            for name, value in self._create(param, probe, group).items():
                ratio, rest = divmod(_PROBE, max(value.numel(), 1))
                layout.split &= rest == 0 and value.ndim == 1
                shape = tuple(p.shape) if ratio == 1 else (-(-p.numel() // ratio),)
                layout.stored.append(Stored(name, value.dtype, shape, ratio))
        if not layout.split:  # kept whole: the state exactly as the rule creates it
            layout.stored = [Stored(n, v.dtype, tuple(v.shape)) for n, v in
                             self._create(param, p.detach(), group).items()]
        return layout

    def _create(self, param: Tensor, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        """The stored form of the rule's initial state (and master copy) for ``p``."""
        from stochopt.optim._storage import precision_of

        precision = precision_of(param, group["state_precision"])
        if precision == "8bit" and _real(param).numel() < group["min_8bit_size"]:
            precision = "native"  # decided on the whole tensor, as the in-memory engine does
        if precision == "native" and self.master_weights:
            precision = "fp32"  # native to the master copy the rule updates
        storage, created = self.optimizer._storage_for(group), {}
        for name, value in self.optimizer.init_state(p, group).items():
            storage.create(created, name, value, precision, 0)
        if self.master_weights:
            created[MASTER] = p.to(torch.promote_types(p.dtype, torch.float32), copy=True)
        return created

    def _plan(self, layout: ParamLayout) -> list[tuple[int, int]]:
        """``layout``'s chunks: the whole tensor, or the most elements a buffer set holds."""
        per_set = self.memory_budget // self.buffers
        if not layout.split:
            whole = sum(s.nbytes for s in layout.stored)
            if whole > per_set:
                raise ValueError(
                    f"memory_budget must hold {self.buffers} copies of parameter "
                    f"{layout.index}'s state (shape {layout.shape}; its update needs the whole "
                    f"tensor, {whole} bytes): >= {self.buffers * whole} bytes, got "
                    f"{self.memory_budget}")
            return [(0, layout.numel)]
        if layout.chunk_bytes(0, layout.numel) <= per_set:
            return [(0, layout.numel)]
        step = granularity(layout.stored)
        per_element = sum(s.itemsize / s.ratio for s in layout.stored)
        chunk = int(per_set // (per_element * step)) * step
        if chunk == 0:
            need = math.ceil(self.buffers * per_element * step)
            raise ValueError(f"memory_budget must hold {self.buffers} chunks of at least {step} "
                             f"elements of parameter {layout.index} (>= {need} bytes), got "
                             f"{self.memory_budget}")
        return [(a, min(a + chunk, layout.numel)) for a in range(0, layout.numel, chunk)]

    def _buffer_bytes(self) -> int:
        return max((layout.chunk_bytes(a, b) for layout in self.layouts
                    for a, b in layout.chunks), default=0)

    # ------------------------------------------------------------------------ files
    def _open_files(self, create: bool) -> dict[tuple[str, int], FileIO]:
        sizes: dict[str, int] = {}
        for layout in self.layouts:
            for s in layout.stored:
                s.offset = sizes.get(s.name, 0)
                sizes[s.name] = s.offset + s.nbytes
        if create:
            need = 2 * sum(sizes.values())
            free = shutil.disk_usage(self.directory).free
            if need > free:
                raise OSError(errno.ENOSPC, f"directory {str(self.directory)!r} has {free} bytes "
                              f"free; the offloaded state needs {need} (two copies of "
                              f"{need // 2} bytes)")
        files = {}
        for name, size in sizes.items():
            for copy in (0, 1):
                path = self.directory / f"{name}.{copy}.bin"
                if not create and not path.exists():
                    raise FileNotFoundError(f"resume: state file {str(path)!r} is missing")
                files[name, copy] = self.file_type(path, self.io)
                if create:
                    _reserve(files[name, copy], size, path)
        return files

    def _read(self, job: Job, buffer: Tensor, copy: int | None = None) -> None:
        """Fill ``buffer`` with ``job``'s slices (of the copy this step reads by default)."""
        index = job.param.index
        if copy is None:
            copy = 1 - self._committed[index] if index in self._pending else self._committed[index]
        for s, view, first in self._slices(job, buffer):
            self._files[s.name, copy].read(view, s.offset + first * s.itemsize)

    def _write(self, job: Job, buffer: Tensor, copy: int | None = None) -> None:
        """Write ``job``'s slices from ``buffer`` (to the copy this step writes by default)."""
        copy = 1 - self._committed[job.param.index] if copy is None else copy
        for s, view, first in self._slices(job, buffer):
            self._files[s.name, copy].write(view, s.offset + first * s.itemsize)

    def _slices(self, job: Job, buffer: Tensor) -> Iterator[tuple[Stored, Tensor, int]]:
        """Each stored tensor's aligned byte slice of ``buffer`` and its first element."""
        at = 0
        for s in job.param.stored:
            first, stop = s.span(job.start, job.stop) if job.param.split else (0, s.numel)
            nbytes = align_up((stop - first) * s.itemsize)
            yield s, buffer[at: at + nbytes], first
            at += nbytes

    def _views(self, job: Job, buffer: Tensor) -> dict[str, Tensor]:
        """The stored tensors of ``job`` as typed, shaped views into ``buffer``."""
        views = {}
        for s, raw, first in self._slices(job, buffer):
            stop = s.span(job.start, job.stop)[1] if job.param.split else s.numel
            typed = raw.view(s.dtype)[: stop - first]
            views[s.name] = typed if job.param.split else typed.view(s.shape)
        return views

    # ------------------------------------------------------------------------ the step
    def apply(self, execute: Callable[[tuple[Any, ...]], None], owners: list[Tensor],
              rule: Callable[..., Any], storage: Any, params: list[Tensor], inputs: list[Tensor],
              coefficient_type: type, vectors: tuple[Tensor, ...], h: Any) -> None:
        """The engine's ``_apply`` over disk-resident state: ``params[i]`` (the real view of
        parameter ``owners[i]``) reads ``inputs[i]``; ``execute`` runs ``_apply`` (eager or
        compiled) on one chunk. Every chunk of every parameter goes through the pipeline."""
        self._check_open()
        indices = [self._index[id(param)] for param in owners]
        h = type(h)(*(v.cpu() if isinstance(v, Tensor) else v for v in h))
        vectors = tuple(v.cpu() for v in vectors)
        jobs = [Job(self.layouts[k], a, b) for k in indices for a, b in self.layouts[k].chunks]
        where = {k: i for i, k in enumerate(indices)}

        def compute(job: Job, buffer: Tensor) -> None:
            i = where[job.param.index]
            views = self._views(job, buffer)
            master = views.pop(MASTER, None)
            target = _chunk_of(params[i], job)
            p = master if master is not None else target.cpu()
            x = _chunk_of(inputs[i], job).cpu()
            c = tuple(v[i: i + 1] for v in vectors)
            execute((rule, storage, [p], [x], [views], coefficient_type, c, h))
            if p is not target:
                target.copy_(p)

        pipelined(jobs, self._read, compute, self._write, self._buffers, self._reader,
                  self._writer)
        self._pending.update(indices)

    def io_pass(self) -> None:
        """Read and write every chunk once without updating: what the disk costs a step."""
        jobs = [Job(layout, a, b) for layout in self.layouts for a, b in layout.chunks]
        pipelined(jobs, self._read, lambda job, buffer: None, self._write, self._buffers,
                  self._reader, self._writer)
        self._pending.update(layout.index for layout in self.layouts)

    def commit(self) -> None:
        """Make the step durable: sync the new copies, then switch the manifest to them."""
        if not self._pending:
            return
        written = {(s.name, 1 - self._committed[k]) for k in self._pending
                   for s in self.layouts[k].stored}
        for key in sorted(written):
            self._files[key].sync()
        for k in self._pending:
            self._committed[k] = 1 - self._committed[k]
        self._pending.clear()
        self._write_manifest()

    def _write_manifest(self) -> None:
        steps = [float(self.optimizer.state[p]["step"]) for p in self._params]
        manifest = {"format": _FORMAT, "optimizer": type(self.optimizer).__name__,
                    "master_weights": self.master_weights, "copies": self._committed,
                    "steps": steps, "params": [layout.describe() for layout in self.layouts]}
        write_text_atomic(self.directory / MANIFEST, json.dumps(manifest) + "\n")
        _fsync_directory(self.directory)

    # ------------------------------------------------------------- set-up and resume
    def _initialize(self) -> None:
        """Write every parameter's initial state (or the state it already has) as copy 0."""
        self._committed = [1] * len(self.layouts)  # the first commit flips them to copy 0
        self.absorb()

    def _fill(self, job: Job, values: dict[str, Tensor], copy: int | None = None) -> None:
        """Write ``values`` (each stored tensor's slice for ``job``) through a buffer."""
        buffer = self._buffers[0]
        views = self._views(job, buffer)
        if set(views) != set(values):
            raise ValueError(f"parameter {job.param.index}: state has {sorted(values)}, the "
                             f"offloaded layout expects {sorted(views)}")
        for name, view in views.items():
            view.copy_(values[name].reshape(view.shape))
        self._write(job, buffer, copy)

    def _resume(self, manifest: dict[str, Any]) -> None:
        expected = {"format": _FORMAT, "optimizer": type(self.optimizer).__name__,
                    "master_weights": self.master_weights,
                    "params": [layout.describe() for layout in self.layouts]}
        for key, value in expected.items():
            if manifest.get(key) != value:
                raise ValueError(f"resume: {str(self.directory)!r} holds state with {key}="
                                 f"{_short(manifest.get(key))}, but this optimizer has "
                                 f"{key}={_short(value)}; resume with the same optimizer, "
                                 f"parameters and settings, or use an empty directory")
        self._committed = [int(c) for c in manifest["copies"]]
        for param, step in zip(self._params, manifest["steps"]):
            self.optimizer.state[param] = {
                "step": torch.tensor(float(step), dtype=torch.float32, device=param.device)}
        if self.master_weights:
            with torch.no_grad():
                for layout, param in zip(self.layouts, self._params):
                    _real(param).copy_(self._materialize(layout)[MASTER].view(layout.shape))

    def _materialize(self, layout: ParamLayout) -> dict[str, Tensor]:
        """Every stored tensor of one parameter, read whole (from the committed copy)."""
        full = {s.name: torch.empty(s.shape, dtype=s.dtype) for s in layout.stored}
        buffer = self._buffers[0]
        for a, b in layout.chunks:
            job = Job(layout, a, b)
            self._read(job, buffer, copy=self._committed[layout.index])
            for s, (name, view) in zip(layout.stored, self._views(job, buffer).items()):
                first, stop = s.span(a, b) if layout.split else (0, s.numel)
                full[name].view(-1)[first:stop] = view.reshape(-1)
        return full

    # ------------------------------------------------------------ state_dict support
    def state_tensors(self, param: Tensor) -> dict[str, Tensor]:
        """``param``'s optimizer state read from disk, shaped as the in-memory engine keeps it."""
        self._check_open()
        tensors = self._materialize(self.layouts[self._index[id(param)]])
        tensors.pop(MASTER, None)
        return {name: t.to(param.device) for name, t in tensors.items()}

    def absorb(self) -> None:
        """Move state the optimizer holds in memory (e.g. after ``load_state_dict``) to disk
        as a new committed step; master weights are taken from the parameters."""
        self._check_open()
        for layout, param in zip(self.layouts, self._params):
            state = self.optimizer.state[param]
            held = {name: v for name, v in state.items() if name != "step"}
            group = self.optimizer.param_groups[layout.group]
            for a, b in layout.chunks:
                job = Job(layout, a, b)
                p = _chunk_of(_real(param).detach(), job)
                values = (_slice_values(layout, job, held, p, self.master_weights) if held
                          else self._create(param, p, group))
                self._fill(job, values)
            step = state.get("step", torch.zeros((), dtype=torch.float32, device=param.device))
            self.optimizer.state[param] = {"step": step}
        self._pending = set(range(len(self.layouts)))
        self.commit()

    # ------------------------------------------------------ updates during backward
    @contextlib.contextmanager
    def update_during_backward(self) -> Iterator[None]:
        """Update each parameter as soon as its gradient is final, while backward goes on.

        Use it around the last backward before ``optimizer.step()``; ``step()`` then waits
        for these updates and runs the parameters that had none. Updates use the final
        gradients of this backward: nothing is stale. Needs an optimizer whose update needs no
        group-wide statistic and whose step reads only gradients (not curvature estimates).

        Example:
            >>> with offload.update_during_backward():  # doctest: +SKIP
            ...     loss.backward()
            >>> opt.step()  # doctest: +SKIP
        """
        opt = self.optimizer
        if opt.statistics or not opt.steps_from_gradients_alone:
            needs = (f"group statistics {opt.statistics}" if opt.statistics
                     else "curvature estimates")
            raise UnsupportedError(
                f"{type(opt).__name__} cannot update during backward: its step needs {needs} "
                f"before any parameter is updated; call opt.step() after backward instead")
        if self._hooks:
            raise RuntimeError("update_during_backward() is already active")
        self._check_open()
        self._updater = getattr(self, "_updater", None) or ThreadPoolExecutor(
            1, thread_name_prefix="stochopt-update")
        self._hooks = [p.register_post_accumulate_grad_hook(self._grad_ready)
                       for p in self._params if p.requires_grad]
        try:
            yield
        finally:
            for hook in self._hooks:
                hook.remove()
            self._hooks = []

    def _grad_ready(self, param: Tensor) -> None:
        k = self._index[id(param)]
        self._early[k] = self._updater.submit(self.optimizer._step_parameter, param)

    def drain(self) -> set[int]:
        """Wait for the updates started during backward; the ids of the parameters updated."""
        early, self._early = self._early, {}
        errors = [future.exception() for future in early.values()]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return {id(self._params[k]) for k in early}

    # ------------------------------------------------------------------ lifetime
    def _check_open(self) -> None:
        if self._lock is None:
            raise RuntimeError(f"this DiskOffload of {str(self.directory)!r} is closed; reopen "
                               f"the state with DiskOffload(optimizer, directory, resume=True)")

    def close(self) -> None:
        """Finish pending work, close the files and release the directory. The optimizer then
        refuses to step until a new ``DiskOffload(..., resume=True)`` reopens its state."""
        if self._lock is None:
            return
        try:
            self.drain()
        finally:
            for pool in (self._reader, self._writer, getattr(self, "_updater", None)):
                if pool is not None:
                    pool.shutdown(wait=True)
            for file in self._files.values():
                file.close()
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> DiskOffload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _slice_values(layout: ParamLayout, job: Job, held: dict[str, Tensor], p: Tensor,
                  master: bool) -> dict[str, Tensor]:
    """The stored slices of ``job`` cut from whole state tensors ``held``."""
    values = {}
    for s in layout.stored:
        if s.name == MASTER and master:
            values[MASTER] = p.to(s.dtype)
            continue
        if s.name not in held or held[s.name].numel() != s.numel:
            found = {n: tuple(v.shape) for n, v in held.items()}
            raise ValueError(f"parameter {layout.index}: the optimizer's state {found} does not "
                             f"match the offloaded layout ({s.name!r} with {s.numel} values)")
        first, stop = s.span(job.start, job.stop) if layout.split else (0, s.numel)
        values[s.name] = held[s.name].detach().reshape(-1)[first:stop].cpu().to(s.dtype)
    return values


def _real(param: Tensor) -> Tensor:
    return torch.view_as_real(param) if param.is_complex() else param


def _chunk_of(t: Tensor, job: Job) -> Tensor:
    """``job``'s elements of a parameter-shaped tensor: a flat slice, or the whole tensor."""
    return t.reshape(-1)[job.start: job.stop] if job.param.split else t


def _checked_directory(directory: str | os.PathLike[str]) -> Path:
    path = Path(directory)
    if not path.exists():
        raise FileNotFoundError(f"directory {str(path)!r} does not exist; create it on the disk "
                                f"that should hold the optimizer state")
    if not path.is_dir():
        raise NotADirectoryError(f"directory {str(path)!r} is not a directory")
    if not os.access(path, os.W_OK):
        raise PermissionError(f"directory {str(path)!r} is not writable")
    return path


def _lock(directory: Path) -> int:
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(f"directory {str(directory)!r} is in use by another DiskOffload "
                           f"(in this or another process); close it or choose another "
                           f"directory") from None
    return fd


def _refuse(directory: Path, resume: bool) -> None:
    if resume:
        raise FileNotFoundError(f"resume=True but {str(directory)!r} holds no offloaded state "
                                f"({MANIFEST} is missing)")
    raise FileExistsError(f"{str(directory)!r} already holds offloaded state ({MANIFEST}); "
                          f"pass resume=True to continue that run, or use an empty directory")


def _reserve(file: FileIO, nbytes: int, path: Path) -> None:
    try:
        file.reserve(nbytes)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left for {nbytes} bytes of optimizer state "
                          f"in {str(path)!r}") from error
        raise


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."
