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
A power loss, which also drops what was written but not synced, leaves the same (tested call by
call in ``tests/offload/test_power_loss.py``): the files are created and sized durably (each
synced) before the first commit; a commit syncs the new copies, then writes the manifest to a
temporary file, syncs it, renames it over ``manifest.json`` and syncs the directory.

Validate, then mutate: the constructor checks its arguments, the layout against the memory
budget, and either the optimizer's in-memory state (a fresh start) or the manifest and state
files (a resume: class, parameters, shapes, every entry, every file's size) before it writes a
byte or touches the optimizer; when it raises, the optimizer, the directory and its lock are
as they were (an empty ``.lock`` file may remain). A damaged manifest or state file raises
:class:`~stochopt.errors.DamagedFileError` naming the file, what is wrong and how to recover.

Lifetime: the directory stays locked until :meth:`DiskOffload.close`, or until the DiskOffload
or its optimizer is garbage-collected (a ``weakref.finalize`` then stops the threads, closes
the files and the lock, leaving the last committed step, as a kill would). The optimizer holds
its DiskOffload and the DiskOffload only a weak reference back, so no reference cycle delays
this: re-running a notebook cell ``opt = AdamW(...); off = DiskOffload(opt, d, resume=...)``
drops the old optimizer, which releases the directory before the new DiskOffload locks it.

References:
    Liao, Huang, Lin, Wang, Hou, Sun, Zhu, Chen, "Adding NVMe SSDs to Enable and Accelerate
    100B Model Fine-tuning on a Single GPU", 2024, arXiv:2403.06504 (Fuyou; LoHan in v2).
    DeepSpeed ZeRO-Infinity's pipelined optimizer swapper (read i+1 / update i / write i-1).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt.errors import UnsupportedError
from stochopt.offload import io
from stochopt.offload._args import (
    OWNER,
    check_flag,
    check_io,
    check_optimizer,
    checked_directory,
    lock,
    parse_bytes,
)
from stochopt.offload.io import FileIO, align_up, aligned_buffer
from stochopt.offload.layout import (
    MASTER,
    Held,
    Job,
    ParamLayout,
    Stored,
    check_held,
    granularity,
    place,
    slice_values,
)
from stochopt.offload.manifest import (
    MANIFEST,
    check_match,
    check_state_files,
    read_manifest,
    write_manifest,
)
from stochopt.offload.pipeline import pipelined

__all__ = ["DiskOffload", "parse_bytes"]

_PROBE = 1 << 16  # elements of the probe chunk: a multiple of any power-of-two block size


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
            step) instead of starting fresh (default False). The manifest must record the
            same optimizer class, parameters (count, shapes, dtypes) and stored state.

    Raises:
        TypeError, ValueError: an argument is of the wrong kind or value (the message names
            it), or the budget cannot hold a chunk, or the optimizer's in-memory state does
            not fit its layout, or ``directory`` holds another optimizer's state.
        OSError: ``directory`` is missing, not a directory, not writable, in use by another
            DiskOffload, or its disk too small; ``resume`` does not match whether it holds
            state (``FileNotFoundError`` / ``FileExistsError``).
        DamagedFileError: on resume, the manifest or a state file is truncated or corrupt.

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
        check_optimizer(optimizer)
        self._optimizer = weakref.ref(optimizer)  # the optimizer holds this DiskOffload
        self.master_weights = check_flag("master_weights", master_weights)
        resume = check_flag("resume", resume)
        self.io = check_io(io)
        self.directory = checked_directory(directory)
        self.memory_budget = parse_bytes(memory_budget, f"{OWNER}: memory_budget")
        self._params = [p for g in optimizer.param_groups for p in g["params"]]
        self._index = {id(p): k for k, p in enumerate(self._params)}
        self.layouts = [self._describe(i, g, p) for i, (g, p) in enumerate(self._owners())]
        for layout in self.layouts:
            layout.chunks = self._plan(layout)
        self._sizes = place(self.layouts)
        held = None if resume else self._held()  # checked before anything is written
        self._files: dict[tuple[str, int], FileIO] = {}
        self._committed = [0] * len(self.layouts)
        self._pending: set[int] = set()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="stochopt-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="stochopt-write")
        self._updater: ThreadPoolExecutor | None = None
        self._early: dict[int, Future[None]] = {}
        self._hooks: list[Any] = []
        self._resources = _Resources([self._reader, self._writer], self._files)
        self._resources.lock = lock(self.directory)
        # released when this DiskOffload or its optimizer is collected without close()
        self._finalizers = [weakref.finalize(owner, self._resources.release, False)
                            for owner in (self, optimizer)]
        try:
            self._buffers = [aligned_buffer(self._buffer_bytes()) for _ in range(self.buffers)]
            if held is None:
                self._resume()
            else:
                self._start(held)
        except BaseException:
            self._release()
            raise
        optimizer._offload = self

    @property
    def optimizer(self) -> Any:
        """The optimizer whose state this DiskOffload keeps."""
        optimizer = self._optimizer()
        if optimizer is None:
            raise ValueError(f"{OWNER}: the optimizer of this DiskOffload of "
                             f"{str(self.directory)!r} was garbage-collected, which closed it; "
                             f"keep a reference to the optimizer while you use it")
        return optimizer

    @property
    def _lock(self) -> int | None:
        """The descriptor holding the directory's lock; ``None`` once released."""
        return self._resources.lock

    # ------------------------------------------------------------------------ layout
    def _owners(self) -> Iterator[tuple[int, Tensor]]:
        for g, group in enumerate(self.optimizer.param_groups):
            for p in group["params"]:
                yield g, p

    def _describe(self, index: int, g: int, param: Tensor) -> ParamLayout:
        """Stored tensors of ``param``, from its rule's initial state of a probe chunk."""
        if param.is_sparse or param.layout != torch.strided:
            raise UnsupportedError(f"{OWNER}: parameter {index} is not a dense tensor; offload "
                                   f"needs one")
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
        """The stored form of the rule's initial state (and master copy) for ``p``, a chunk of
        ``param`` or all of it. As in memory, a state of fewer than ``min_8bit_size`` values
        (counted over the whole tensor) is not quantized."""
        from stochopt.optim._storage import precision_of

        precision = precision_of(param, group["state_precision"])
        whole = _real(param).numel()
        storage, created = self.optimizer._storage_for(group), {}
        for name, value in self.optimizer.init_state(p, group).items():
            size = value.numel() * whole // p.numel() if p.numel() else value.numel()
            chosen = precision
            if chosen == "8bit" and size < group["min_8bit_size"]:
                chosen = "native"
            if chosen == "native" and self.master_weights:
                chosen = "fp32"  # native to the master copy the rule updates
            storage.create(created, name, value, chosen, 0)
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
                    f"{OWNER}: memory_budget must hold {self.buffers} copies of parameter "
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
            raise ValueError(f"{OWNER}: memory_budget must hold {self.buffers} chunks of at "
                             f"least {step} elements of parameter {layout.index} (>= {need} "
                             f"bytes), got {self.memory_budget}")
        return [(a, min(a + chunk, layout.numel)) for a in range(0, layout.numel, chunk)]

    def _buffer_bytes(self) -> int:
        return max((layout.chunk_bytes(a, b) for layout in self.layouts
                    for a, b in layout.chunks), default=0)

    def _held(self) -> list[Held]:
        """The state the optimizer holds in memory for each parameter, checked against its
        layout (names, tensors, shapes, dtypes, the step); nothing is changed."""
        states = self.optimizer.state
        return [check_held(layout, states.get(param, {}), self.master_weights,
                           type(self.optimizer).__name__) for layout, param in
                zip(self.layouts, self._params)]

    def _layout_of(self, param: Any, method: str) -> ParamLayout:
        """The layout of ``param``, which must be one of the optimizer's parameters."""
        if not isinstance(param, Tensor):
            raise TypeError(f"{OWNER}.{method}: param must be a tensor, got {show(param)}")
        k = self._index.get(id(param))
        if k is None or self._params[k] is not param:
            raise ValueError(f"{OWNER}.{method}: param ({show(param)}) is not one of the "
                             f"offloaded optimizer's parameters (were its param groups "
                             f"changed after the DiskOffload was built?)")
        return self.layouts[k]

    # ------------------------------------------------------------------------ files
    def _path(self, name: str, copy: int) -> Path:
        return self.directory / f"{name}.{copy}.bin"

    def _open_files(self, reserve: bool) -> None:
        """Open both copies of every state file (creating and sizing them if ``reserve``)."""
        for name, size in self._sizes.items():
            for copy in (0, 1):
                path = self._path(name, copy)
                self._files[name, copy] = self.file_type(path, self.io)
                if reserve:  # and make the size durable: resume checks both copies' sizes
                    _reserve(self._files[name, copy], size, path)
                    self._files[name, copy].sync()

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
        indices = [self._layout_of(param, "apply").index for param in owners]
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
        self._check_open()
        jobs = [Job(layout, a, b) for layout in self.layouts for a, b in layout.chunks]
        pipelined(jobs, self._read, lambda job, buffer: None, self._write, self._buffers,
                  self._reader, self._writer)
        self._pending.update(layout.index for layout in self.layouts)

    def commit(self) -> None:
        """Make the step durable: sync the new copies, then switch the manifest to them."""
        self._check_open()
        if self._pending:
            self._commit([float(self.optimizer.state.get(p, {}).get("step", 0.0))
                          for p in self._params])

    def _commit(self, steps: list[float]) -> None:
        """Commit the pending parameters at ``steps``; if it raises, nothing has switched."""
        copies = [1 - c if k in self._pending else c for k, c in enumerate(self._committed)]
        written = {(s.name, copies[k]) for k in self._pending for s in self.layouts[k].stored}
        for key in sorted(written):
            self._files[key].sync()
        write_manifest(self.directory, type(self.optimizer).__name__, self.master_weights,
                       copies, steps, [layout.describe() for layout in self.layouts])
        self._committed = copies
        self._pending.clear()

    # ------------------------------------------------------------- set-up and resume
    def _start(self, held: list[Held]) -> None:
        """Create the state files and write the optimizer's state (its rule's initial state
        where it holds none) as copy 0; on failure, remove the files this created."""
        _refuse_existing(self.directory)
        need = 2 * sum(self._sizes.values())
        free = shutil.disk_usage(self.directory).free
        if need > free:
            raise OSError(errno.ENOSPC, f"{OWNER}: directory {str(self.directory)!r} has {free} "
                          f"bytes free; the offloaded state needs {need} (two copies of "
                          f"{need // 2} bytes)")
        paths = [self._path(name, copy) for name in self._sizes for copy in (0, 1)]
        created = [path for path in (*paths, self.directory / MANIFEST) if not path.exists()]
        try:
            self._open_files(reserve=True)
            self._committed = [1] * len(self.layouts)  # the first commit flips them to copy 0
            self._store(held)
        except BaseException:
            for path in created:
                with contextlib.suppress(FileNotFoundError):
                    io.fs.unlink(path)
            raise

    def _fill(self, job: Job, values: dict[str, Tensor]) -> None:
        """Write ``values`` (each stored tensor's slice for ``job``) through a buffer."""
        buffer = self._buffers[0]
        for name, view in self._views(job, buffer).items():
            view.copy_(values[name].reshape(view.shape))
        self._write(job, buffer)

    def _resume(self) -> None:
        """Reopen the last completed step: check the manifest against this optimizer and the
        state files against the manifest, then (only then) restore steps and masters."""
        if not (self.directory / MANIFEST).exists():
            raise FileNotFoundError(f"{OWNER}: resume=True but {str(self.directory)!r} holds no "
                                    f"offloaded state ({MANIFEST} is missing)")
        manifest = read_manifest(self.directory)
        check_match(manifest, self.directory, type(self.optimizer).__name__,
                    self.master_weights, [layout.describe() for layout in self.layouts])
        check_state_files({self._path(name, copy): size for name, size in self._sizes.items()
                           for copy in (0, 1)}, manifest.path)
        self._open_files(reserve=False)
        self._committed = list(manifest.copies)
        if self.master_weights:  # nothing left to refuse: copy the masters into the params
            with torch.no_grad():
                for layout, param in zip(self.layouts, self._params):
                    _real(param).copy_(self._materialize(layout)[MASTER].view(layout.shape))
        for param, step in zip(self._params, manifest.steps):
            self.optimizer.state[param] = {
                "step": torch.tensor(step, dtype=torch.float32, device=param.device)}

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
        tensors = self._materialize(self._layout_of(param, "state_tensors"))
        tensors.pop(MASTER, None)
        return {name: t.to(param.device) for name, t in tensors.items()}

    def absorb(self) -> None:
        """Move state the optimizer holds in memory (e.g. after ``load_state_dict``) to disk
        as a new committed step; master weights are taken from the parameters. Every
        parameter's state is checked first; if it raises, the optimizer and the committed
        state on disk are as they were."""
        self._check_open()
        self._store(self._held())

    def check_state(self, state: Mapping[int, Mapping[str, Any]]) -> None:
        """Check the ``"state"`` of a state dict (parameter index -> its state) against the
        offloaded layout, as :meth:`absorb` checks the state after ``load_state_dict``;
        changes nothing. A parameter with no entry gets its rule's initial state.

        Raises:
            TypeError, ValueError: naming the parameter and the state entry at fault.
        """
        self._check_open()
        if not isinstance(state, Mapping):
            raise TypeError(f"{OWNER}.check_state: state must be a dict, got {show(state)}")
        n = len(self.layouts)
        for key in state:
            if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < n:
                raise ValueError(f"{OWNER}.check_state: state has an entry for parameter "
                                 f"{key!r}, the optimizer's parameters are 0 to {n - 1}")
        for k, layout in enumerate(self.layouts):
            check_held(layout, state.get(k, {}), self.master_weights,
                       type(self.optimizer).__name__)

    def _store(self, held: list[Held]) -> None:
        """Write ``held`` (checked) as a new committed step, then keep only the steps in
        memory."""
        for (values, _), layout, param in zip(held, self.layouts, self._params):
            group = self.optimizer.param_groups[layout.group]
            for a, b in layout.chunks:
                job = Job(layout, a, b)
                p = _chunk_of(_real(param).detach(), job)
                self._fill(job, slice_values(layout, job, values, p, self.master_weights)
                           if values else self._create(param, p, group))
        steps = [_step_tensor(step, param) for (_, step), param in zip(held, self._params)]
        pending, self._pending = self._pending, set(range(len(self.layouts)))
        try:
            self._commit([float(step) for step in steps])
        except BaseException:
            self._pending = pending
            raise
        for param, step in zip(self._params, steps):
            self.optimizer.state[param] = {"step": step}

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
        self._check_open()
        opt = self.optimizer
        if opt.statistics or not opt.steps_from_gradients_alone:
            needs = (f"group statistics {opt.statistics}" if opt.statistics
                     else "curvature estimates")
            raise UnsupportedError(
                f"{type(opt).__name__} cannot update during backward: its step needs {needs} "
                f"before any parameter is updated; call opt.step() after backward instead")
        if self._hooks:
            raise ValueError(f"{OWNER}: update_during_backward() is already active; do not "
                             f"nest it")
        if self._updater is None:
            self._updater = ThreadPoolExecutor(1, thread_name_prefix="stochopt-update")
            self._resources.pools.append(self._updater)
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
            raise ValueError(f"{OWNER}: this DiskOffload of {str(self.directory)!r} is closed; "
                             f"reopen the state with DiskOffload(optimizer, directory, "
                             f"resume=True)")

    def close(self) -> None:
        """Finish pending work, close the files and release the directory. The optimizer then
        refuses to step until a new ``DiskOffload(..., resume=True)`` reopens its state."""
        if self._lock is None:
            return
        try:
            self.drain()
        finally:
            self._release()

    def _release(self) -> None:
        """Stop the threads, close the files and unlock the directory."""
        self._resources.release(wait=True)
        for finalizer in self._finalizers:
            finalizer.detach()

    def __enter__(self) -> DiskOffload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Resources:
    """What a DiskOffload holds beyond memory: its threads, open files and the directory's
    lock. It never refers to the DiskOffload or its optimizer, so the ``weakref.finalize``
    that releases it when either is collected keeps neither alive."""

    def __init__(self, pools: list[ThreadPoolExecutor], files: dict[Any, FileIO]) -> None:
        self.pools = pools
        self.files = files  # the DiskOffload's own dict: files opened later are closed too
        self.lock: int | None = None

    def release(self, wait: bool) -> None:
        """Stop the threads, close the files, then unlock (once; later calls do nothing).
        Collected unclosed, nothing is in flight (a queued read, write or update holds the
        DiskOffload or its optimizer), so the finalizer need not wait, and must not: it may run
        on one of these threads."""
        for pool in self.pools:
            pool.shutdown(wait=wait)
        for file in self.files.values():
            file.close()
        if self.lock is not None:
            fd, self.lock = self.lock, None
            io.fs.close(fd)


def _real(param: Tensor) -> Tensor:
    return torch.view_as_real(param) if param.is_complex() else param


def _chunk_of(t: Tensor, job: Job) -> Tensor:
    """``job``'s elements of a parameter-shaped tensor: a flat slice, or the whole tensor."""
    return t.reshape(-1)[job.start: job.stop] if job.param.split else t


def _step_tensor(step: Any, param: Tensor) -> Tensor:
    """A checked step as the engine keeps it: a float32 tensor (0 where there was none)."""
    if isinstance(step, Tensor):
        return step
    value = 0.0 if step is None else float(step)
    return torch.tensor(value, dtype=torch.float32, device=param.device)


def _refuse_existing(directory: Path) -> None:
    if (directory / MANIFEST).exists():
        raise FileExistsError(f"{OWNER}: {str(directory)!r} already holds offloaded state "
                              f"({MANIFEST}); pass resume=True to continue that run, or use an "
                              f"empty directory")


def _reserve(file: FileIO, nbytes: int, path: Path) -> None:
    try:
        file.reserve(nbytes)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left for {nbytes} bytes of optimizer state "
                          f"in {str(path)!r}") from error
        raise
