"""The optimizer engine: an elementwise optimizer is written once, as its update rule.

A subclass of :class:`ElementwiseOptimizer` declares

* ``hyperparameters``: specs (:mod:`stochopt.optim._hyper`) that validate each param group;
* ``init_state(p, group)``: its state tensors for one parameter;
* ``coefficients(step, h)``: per-step scalars (bias corrections, step sizes) as 0-d tensors;
* ``update(p, g, state, c, h)``: the paper's equations on one parameter, returning the new
  parameter and the new state, as pure tensor code.

The engine owns everything else: param groups and lazy state, the step counter, closures,
``maximize``, tensor learning rates, complex parameters (as real views), sparse gradients,
low-precision parameters (the rule computes in at least float32), ``state_dict`` round trips,
and execution. The reference path runs the rule eagerly, tensor by tensor; the fused path runs
the *same* function under ``torch.compile``, one kernel per bucket of tensors, with
hyperparameters passed as tensors so that schedules never recompile.
"""

from __future__ import annotations

import enum
import functools
import types
import warnings
from collections import namedtuple
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from stochopt._distributed import all_reduce, built_by_zero, process_group
from stochopt.errors import FusedFallbackWarning, UnsupportedError
from stochopt.optim import _chunked
from stochopt.optim._hyper import Choice, Flag, Integer, Spec
from stochopt.optim._storage import (
    ABSMAX,
    PRECISIONS,
    STEP,
    StateStorage,
    compute_precision,
    precision_of,
)

__all__ = ["ElementwiseOptimizer", "Reduction"]


class Reduction(enum.Enum):
    """What an update reads beyond its own element: the optimizer's distribution contract."""

    ELEMENTWISE = "elementwise"  # separable per element: any shard may update alone
    ROW = "row"  # reduces over every dim but the first of a tensor
    TENSOR = "tensor"  # reduces over a whole tensor
    GLOBAL = "global"  # reduces over all parameters of a group (a collective when sharded)


@dataclass
class _Slot:
    """One parameter taking part in a step: the parameter, its real view, gradient (real
    view, negated under ``maximize``) and state."""

    param: Tensor
    p: Tensor
    g: Tensor
    state: dict[str, Tensor]


@functools.cache
def _namespace(names: tuple[str, ...]) -> type:
    return namedtuple("Coefficients", names)


def _apply(rule, storage, params, inputs, states, coefficient_type, coefficients, h) -> None:
    """Apply ``rule`` to each parameter in turn: load state, run the rule, store results.

    This one function is both paths: the reference path calls it eagerly, the fused path calls
    a ``torch.compile`` of it. ``inputs`` are the per-parameter tensors the rule reads besides
    the parameter (gradients, or curvature estimates); ``coefficients`` holds one vector per
    coefficient name, entry ``i`` belonging to parameter ``i``. A rule that returns ``None``
    for the parameter leaves it untouched.
    """
    for i, (p, x, state) in enumerate(zip(params, inputs, states)):
        c = coefficient_type(*(vector[i] for vector in coefficients))
        values = {name: storage.load(state, name) for name in storage.names(state)}
        new_p, new_values = rule(compute_precision(p), compute_precision(x), values, c, h)
        if new_p is not None:
            p.copy_(new_p)
        for name, value in new_values.items():
            storage.store(state, name, value)


def _apply_sparse(rule, storage, p, g, state, c, h) -> None:
    """The rule on the coordinates a sparse gradient touches (gather, apply, scatter)."""
    if any(storage.is_quantized(state, name) for name in storage.names(state)):
        raise UnsupportedError("sparse gradients need state that is not 8-bit quantized; use "
                               "state_precision='native' or 'bf16' for this parameter")
    g = g.coalesce()
    index = tuple(g.indices())  # sparse_dim tensors of shape (nnz,)
    names = [name for name in state if name != STEP]
    values = {name: compute_precision(state[name][index]) for name in names}
    new_p, new_values = rule(compute_precision(p[index]), compute_precision(g.values()),
                             values, c, h)
    p.index_put_(index, new_p.to(p.dtype))
    for name, value in new_values.items():
        state[name].index_put_(index, value.to(state[name].dtype))


def _private_compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile`` of a private copy of ``fn``: its cache and recompile limit are its own."""
    code = fn.__code__.replace()
    copy = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    # indices into the 8-bit tables are in range by construction (uint8 codes, clamped cells)
    return torch.compile(copy, fullgraph=True, options={"assert_indirect_indexing": False})


def _scalar_vector(values: list[Any], device: torch.device) -> Tensor:
    """Real hyperparameters (floats or 0-d tensors) as one float64 vector on ``device``."""
    dtype = torch.float32 if device.type == "mps" else torch.float64
    if any(isinstance(v, Tensor) for v in values):
        return torch.stack([torch.as_tensor(v, dtype=dtype).to(device).reshape(()) for v in values])
    return torch.tensor(values, dtype=dtype, device=device)


#: settings every optimizer has, validated like hyperparameters but never read by rules
_ENGINE_SPECS: tuple[Spec, ...] = (
    Flag("maximize"),
    Choice("state_precision", PRECISIONS),
    Integer("block_size", low=1),
    Integer("min_8bit_size", low=0),
)


class ElementwiseOptimizer(torch.optim.Optimizer):
    """Base of stochopt's optimizers; see the module docstring for what a subclass writes."""

    hyperparameters: ClassVar[tuple[Spec, ...]] = ()
    #: states that are never negative: 8-bit storage gives them the unsigned map
    nonnegative_states: ClassVar[frozenset[str]] = frozenset()
    #: group-level scalars computed each step by :meth:`group_statistics` (e.g. a global norm)
    statistics: ClassVar[tuple[str, ...]] = ()
    #: whether a step reads nothing but each parameter's gradient and state (so a parameter
    #: may be updated alone, e.g. during backward)
    steps_from_gradients_alone: ClassVar[bool] = True
    #: whether sparse gradients are applied (the rule must leave zero-gradient entries unchanged)
    supports_sparse: ClassVar[bool] = False
    _hyper_type: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = [name for spec in cls.hyperparameters for name in spec.fields()]
        cls._hyper_type = namedtuple(f"{cls.__name__}Hyperparameters", [*names, *cls.statistics])

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, maximize: bool,
                 fused: bool | None, state_precision: str = "native",
                 shard_group: Any = None) -> None:
        self.shard_group = shard_group  # sums group statistics over ranks holding other params
        self._partitioned = built_by_zero()  # this rank holds only part of the parameters
        self._storages: dict[int, StateStorage] = {}
        self._offload: Any = None  # a stochopt.offload.DiskOffload keeping the state on disk
        self._compiled: dict[str, Callable[..., Any]] = {}
        self._chunk_buffers: dict[str, Tensor] = {}  # the chunked 8-bit path's (see there)
        self._fused_failed = False
        engine = dict(maximize=maximize, fused=fused, state_precision=state_precision,
                      block_size=256, min_8bit_size=4096)
        super().__init__(params, {**defaults, **engine})

    # ----------------------------------------------------------------- what a subclass writes
    def init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        """Initial state tensors of parameter ``p`` (a real view), keyed by name."""
        raise NotImplementedError

    @staticmethod
    def coefficients(step: Tensor, h: Any) -> dict[str, Tensor]:
        """Per-step scalars from ``step`` (float64, any shape) and hyperparameters ``h``."""
        return {}

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """The update rule: new parameter and new state from ``p``, ``g`` and ``state``."""
        raise NotImplementedError

    def group_statistics(self, group: dict[str, Any], params: list[Tensor],
                         grads: list[Tensor]) -> dict[str, Tensor]:
        """Group-level scalars named in ``statistics``, computed before the update."""
        return {}

    def reduction(self, group: dict[str, Any]) -> Reduction:
        """The distribution contract of this group's update (elementwise by default)."""
        return Reduction.ELEMENTWISE

    def check_sparse_group(self, group: dict[str, Any]) -> None:
        """Raise if this group's settings cannot apply a sparse gradient."""

    def splittable(self, group: dict[str, Any]) -> bool:
        """Whether the update may run on any slice of a tensor's elements (out-of-core state
        streams such tensors in chunks; others are kept whole)."""
        return self.reduction(group) in (Reduction.ELEMENTWISE, Reduction.GLOBAL)

    # ---------------------------------------------------------------------- param groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_offload", None) is not None:
            raise UnsupportedError("cannot add a param group to an optimizer whose state is "
                                   "offloaded; build the DiskOffload after every group exists")
        super().add_param_group(param_group)
        self._check_group(self.param_groups[-1])

    def _check_group(self, group: dict[str, Any]) -> None:
        owner = type(self).__name__
        for spec in (*self.hyperparameters, *_ENGINE_SPECS):
            spec.check(owner, group[spec.name])
        if group["fused"] not in (None, True, False):
            raise TypeError(f"{owner}: fused must be None, True or False, got {group['fused']!r}")
        partitioned = self.__dict__.get("_partitioned", False)
        if partitioned and self.reduction(group) is Reduction.GLOBAL and self.shard_group is None:
            raise UnsupportedError(
                f"{owner}: this param group's update reduces over all of its parameters, but "
                f"ZeroRedundancyOptimizer gives each rank only part of them; pass "
                f"shard_group='world' (or ZeRO's process group) so the statistic is summed "
                f"over ranks, or choose a per-tensor mode")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict, copying its tensors (the source is never aliased) and keeping
        the dtype of quantized codes and scales (torch would cast them to the parameter's)."""
        state = {k: {name: v.clone() if isinstance(v, Tensor) else v for name, v in s.items()}
                 for k, s in state_dict["state"].items()}
        super().load_state_dict({**state_dict, "state": state})
        params = [p for group in self.param_groups for p in group["params"]]
        for index, saved in state.items():
            loaded = self.state[params[index]]
            for name, value in saved.items():
                keep = name.endswith(ABSMAX) or (isinstance(value, Tensor)
                                                 and not value.is_floating_point())
                if keep and isinstance(value, Tensor) and name != STEP:
                    loaded[name] = loaded[name].to(value.dtype)
        for group in self.param_groups:
            self._check_group(group)
        if self._offload is not None:
            self._offload.absorb()

    def state_dict(self) -> dict[str, Any]:
        """The state dict; offloaded state is read from disk into ordinary tensors (so the
        result loads into an in-memory optimizer, and needs the memory of the whole state)."""
        state_dict = super().state_dict()
        if self._offload is not None:
            params = [p for group in self.param_groups for p in group["params"]]
            state_dict["state"] = {
                index: {**saved, **self._offload.state_tensors(params[index])}
                for index, saved in state_dict["state"].items()}
        return state_dict

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_compiled", None)
        state.pop("_chunk_buffers", None)
        if not isinstance(state.get("shard_group"), str | None):
            state["shard_group"] = None  # process groups belong to one process
        if state.get("_offload") is not None:
            raise UnsupportedError("an optimizer with offloaded state cannot be pickled; save "
                                   "its state_dict() or resume from its directory")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_compiled", {})
        self.__dict__.setdefault("_chunk_buffers", {})
        self.__dict__.setdefault("_fused_failed", False)
        self.__dict__.setdefault("_storages", {})
        self.__dict__.setdefault("_offload", None)
        self.__dict__.setdefault("shard_group", None)
        self.__dict__.setdefault("_partitioned", False)

    # ------------------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` re-evaluates the loss (with grad on)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        done = self._offload.drain() if self._offload is not None else set()
        for index, group in enumerate(self.param_groups):
            slots = self._collect(index, group, skip=done)
            if slots:
                self._update_group(group, slots)
            elif self.shard_group is not None and self.statistics:
                self._statistics(group, [])  # other ranks need this rank's share of the sum
        self._finish_step()
        return loss

    def _finish_step(self) -> None:
        """Make the step durable where the state lives on disk."""
        if self._offload is not None:
            self._offload.commit()

    @torch.no_grad()
    def _step_parameter(self, param: Tensor) -> None:
        """Update one parameter now (offloaded updates during backward)."""
        for index, group in enumerate(self.param_groups):
            if any(p is param for p in group["params"]):
                slots = [s for s in self._collect(index, group) if s.param is param]
                self._update_group(group, slots)
                return

    def _collect(self, index: int, group: dict[str, Any],
                 skip: set[int] = frozenset()) -> list[_Slot]:
        slots = []
        for position, param in enumerate(group["params"]):
            grad = param.grad
            if grad is None or id(param) in skip:
                continue
            if grad.is_sparse:
                self._check_sparse(index, position, param, group)
            p = torch.view_as_real(param) if param.is_complex() else param
            g = torch.view_as_real(grad) if grad.is_complex() else grad
            if group["maximize"]:
                g = -g
            state = self.state[param]
            if not state:
                self._init_state(state, param, p, group)
            slots.append(_Slot(param, p, g, state))
        return slots

    def _check_sparse(self, index: int, position: int, param: Tensor,
                      group: dict[str, Any]) -> None:
        name = type(self).__name__
        where = f"parameter {position} of param group {index} (shape {tuple(param.shape)})"
        if not self.supports_sparse:
            capable = sorted(c.__name__ for c in _subclasses(ElementwiseOptimizer)
                             if c.supports_sparse)
            raise UnsupportedError(
                f"{name} does not support sparse gradients, but {where} has one. Use dense "
                f"gradients (e.g. nn.Embedding(..., sparse=False)) or an optimizer that "
                f"supports them: {', '.join(capable)}."
            )
        if param.is_complex():
            raise UnsupportedError(f"{name}: sparse gradients of complex {where} are not supported")
        self.check_sparse_group(group)

    def _storage_for(self, group: dict[str, Any]) -> StateStorage:
        block_size = group["block_size"]
        if block_size not in self._storages:
            self._storages[block_size] = StateStorage(block_size, self.nonnegative_states)
        return self._storages[block_size]

    def _init_state(self, state: dict[str, Tensor], param: Tensor, p: Tensor,
                    group: dict[str, Any]) -> None:
        state[STEP] = torch.zeros((), dtype=torch.float32, device=p.device)
        precision = precision_of(param, group["state_precision"])
        storage = self._storage_for(group)
        for name, value in self.init_state(p, group).items():
            storage.create(state, name, value, precision, group["min_8bit_size"])

    def _hyper(self, group: dict[str, Any], device: torch.device,
               statistics: dict[str, Tensor]) -> Any:
        """The namespace ``h`` the rule reads: reals as 0-d tensors, flags as Python values."""
        names, values, static = [], [], {}
        for spec in self.hyperparameters:
            for name, value in zip(spec.fields(), spec.split(group[spec.name])):
                if spec.static:
                    static[name] = value
                else:
                    names.append(name)
                    values.append(value)
        reals = dict(zip(names, _scalar_vector(values, device).unbind())) if values else {}
        stats = {name: value.to(device) for name, value in statistics.items()}
        return self._hyper_type(**reals, **static, **stats)

    def _statistics(self, group: dict[str, Any], slots: list[_Slot]) -> dict[str, Tensor]:
        """The group statistics (sums), added up over ``shard_group`` when there is one."""
        if slots:
            stats = self.group_statistics(group, [s.p for s in slots], [s.g for s in slots])
        else:
            stats = {name: torch.zeros((), dtype=torch.float64) for name in self.statistics}
        if self.shard_group is not None and stats:
            all_reduce([stats[name] for name in self.statistics], process_group(self.shard_group))
        return stats

    def _update_group(self, group: dict[str, Any], slots: list[_Slot]) -> None:
        statistics = self._statistics(group, slots)
        buckets: dict[tuple[torch.device, torch.dtype], list[_Slot]] = {}
        for slot in slots:
            buckets.setdefault((slot.p.device, slot.p.dtype), []).append(slot)
        for (device, _), bucket in buckets.items():
            steps = [slot.state[STEP] for slot in bucket]
            torch._foreach_add_(steps, 1)
            h = self._hyper(group, device, statistics)
            coefficients = self.coefficients(torch.stack(steps).to(torch.float64), h)
            names = tuple(coefficients)
            vectors = tuple(torch.broadcast_to(coefficients[n], (len(bucket),)) for n in names)
            self._run(self.update, group, device, bucket, [slot.g for slot in bucket],
                      _namespace(names), vectors, h)

    def _apply_rule(self, rule: Callable[..., Any], group: dict[str, Any], slots: list[_Slot],
                    inputs: list[Tensor]) -> None:
        """Run another rule of the optimizer (e.g. a curvature refresh) on ``slots``, reading
        ``inputs`` in place of the gradients; no step is counted and no coefficients are
        computed."""
        statistics = {name: torch.zeros((), dtype=torch.float64) for name in self.statistics}
        buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, slot in enumerate(slots):
            buckets.setdefault((slot.p.device, slot.p.dtype), []).append(i)
        for (device, _), members in buckets.items():
            h = self._hyper(group, device, statistics)
            self._run(rule, group, device, [slots[i] for i in members],
                      [inputs[i] for i in members], _namespace(()), (), h)

    def _run(self, rule: Callable[..., Any], group: dict[str, Any], device: torch.device,
             bucket: list[_Slot], inputs: list[Tensor], coefficient_type: type,
             vectors: tuple[Tensor, ...], h: Any) -> None:
        if self._offload is not None:
            if any(x.is_sparse for x in inputs):
                raise UnsupportedError(f"{type(self).__name__}: sparse gradients are not "
                                       f"supported with offloaded state; use dense gradients")
            self._offload.apply(functools.partial(self._execute, group, device),
                                [s.param for s in bucket], rule, self._storage_for(group),
                                [s.p for s in bucket], inputs, coefficient_type, vectors, h)
            return
        dense = [i for i, x in enumerate(inputs) if not x.is_sparse]
        for i in (i for i, x in enumerate(inputs) if x.is_sparse):
            c = coefficient_type(*(v[i] for v in vectors))
            _apply_sparse(rule, self._storage_for(group), bucket[i].p, inputs[i],
                          bucket[i].state, c, h)
        if not dense:
            return
        args = (rule, self._storage_for(group), [bucket[i].p for i in dense],
                [inputs[i] for i in dense], [bucket[i].state for i in dense],
                coefficient_type, tuple(v[dense] for v in vectors), h)
        self._execute(group, device, args)

    def _execute(self, group: dict[str, Any], device: torch.device, args: tuple[Any, ...]) -> None:
        """``_apply(*args)``, compiled where the group asks for the fused path (8-bit state on
        the CPU a chunk at a time, see :mod:`stochopt.optim._chunked`)."""
        if self._fused(group, device):
            storage, params, inputs, states = args[1:5]
            chunked = [i for i, member in enumerate(zip(params, inputs, states))
                       if _chunked.chunkable(storage, *member)]
            if chunked:
                _chunked.apply_chunked(self._chunk_step, self._chunk_buffers,
                                       *_members(args, chunked))
            rest = sorted(set(range(len(params))) - set(chunked))
            if not rest:
                return
            args = _members(args, rest)
            if not self._fused_failed and self._run_compiled(device, args):
                return
        _apply(*args)

    def _fused(self, group: dict[str, Any], device: torch.device) -> bool:
        fused = group["fused"]
        if fused is None:  # torch.optim's choice: fast kernels by default off the CPU
            fused = device.type == "cuda"
        return bool(fused) and not self._fused_failed

    def _run_compiled(self, device: torch.device, args: tuple[Any, ...]) -> bool:
        """Run the compiled path; on a compilation failure, warn once and report False."""
        compiled = self._compiled_for(device.type, _apply)
        rule, storage, params, inputs, states, *rest = args
        try:
            compiled(rule, storage, [_at_least_1d(p) for p in params],
                     [_at_least_1d(x) for x in inputs],
                     [{k: _at_least_1d(v) for k, v in s.items()} for s in states], *rest)
        except Exception as error:  # no C++ compiler, unsupported platform, inductor bug, ...
            self._compile_failed(error)
            return False
        return True

    def _chunk_step(self, *args: Any) -> tuple[tuple[str, ...], ...]:
        """:func:`~stochopt.optim._chunked.step_in_place` on one chunk, compiled unless that
        failed; a failure runs this chunk eagerly (compilation fails before anything is
        written, and earlier chunks are done, so nothing is updated twice). Chunks of
        different numbers of pieces get separate compilations (own recompile budgets)."""
        if not self._fused_failed:
            compiled = self._compiled_for(f"cpu-chunked-{len(args[1])}",
                                          _chunked.step_in_place)
            try:
                return compiled(*args)
            except Exception as error:
                self._compile_failed(error)
        return _chunked.step_in_place(*args)

    def _compiled_for(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The private compilation of ``fn`` kept under ``key``, made on first use."""
        if key not in self._compiled:
            self._compiled[key] = _private_compile(fn)
        return self._compiled[key]

    def _compile_failed(self, error: Exception) -> None:
        """Switch to the reference path for good, with one warning (out of memory re-raises)."""
        if isinstance(error, torch.OutOfMemoryError):
            raise error
        self._fused_failed = True
        warnings.warn(
            f"{type(self).__name__}: the fused path could not be compiled "
            f"({type(error).__name__}: {' '.join(str(error).split())[:300]}); "
            f"using the reference path, which computes the same update more slowly. "
            f"Pass fused=False to choose it explicitly.",
            FusedFallbackWarning,
            stacklevel=5,
        )


def _members(args: tuple[Any, ...], index: list[int]) -> tuple[Any, ...]:
    """``_apply``'s arguments for the parameters at ``index`` only."""
    rule, storage, params, inputs, states, coefficient_type, vectors, h = args
    return (rule, storage, [params[i] for i in index], [inputs[i] for i in index],
            [states[i] for i in index], coefficient_type,
            tuple(v[index] for v in vectors), h)


def _at_least_1d(t: Tensor) -> Tensor:
    """A 0-d tensor as a 1-element view of the same memory (other tensors unchanged).

    Works around a torch.compile bug (reproduced in torch 2.13 with ``backend="aot_eager"``):
    in-place updates of 0-d float64 CPU graph inputs are silently dropped.
    """
    return t.view(1) if t.ndim == 0 else t


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found
