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
and execution. The reference path runs the rule eagerly, tensor by tensor; by default it runs
it on the CPU once per pack of small parameters flattened together (elementwise rules,
:mod:`stochopt.optim._packed`), else once per list of tensors (:mod:`stochopt.optim._lifted`),
the same bits either way (but for the last place of a few functions); the fused path
runs the *same* function under ``torch.compile``, one graph per optimizer reused by every
param group and step (:mod:`stochopt.optim._fused`), with hyperparameters passed as tensors
so that schedules never recompile.

What enters is checked whole before anything changes (:mod:`stochopt.optim._validate`): the
constructor and ``add_param_group`` refuse a group with a bad hyperparameter or parameter
(integer, non-leaf, listed twice) and keep none of it; ``load_state_dict`` refuses another
optimizer's state dict, or one whose groups, hyperparameters or state tensors do not fit, and
changes nothing; ``step`` refuses what it cannot apply, and applies a group's ``nonfinite``
policy (where the optimizer offers one), before any parameter moves.
"""

from __future__ import annotations

import enum
import functools
import logging
import types
import warnings
from collections import defaultdict, namedtuple
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.fx.experimental import _config as fx_config

from stochopt._checks import show
from stochopt._distributed import all_reduce, built_by_zero, check_process_group, process_group
from stochopt.errors import FusedFallbackWarning, NonFiniteError, NonFiniteWarning, UnsupportedError
from stochopt.optim import _chunked, _fused, _lifted, _packed
from stochopt.optim._hyper import Choice, Flag, Integer, Spec
from stochopt.optim._storage import PRECISIONS, STEP, StateStorage, compute_precision, precision_of
from stochopt.optim._validate import (
    check_group_settings,
    check_param_group,
    checked_state_dict,
    nonfinite_parameters,
    param_views,
)

__all__ = ["ElementwiseOptimizer", "Reduction"]

_log = logging.getLogger(__name__)


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


_NAMESPACES: dict[tuple[str, ...], type] = {}


def _namespace(names: tuple[str, ...]) -> type:
    """The coefficients' namedtuple type for ``names``, made once (a plain dict, not
    ``functools.cache``: ``torch.compile(opt.step)`` warns about traced ``lru_cache``s)."""
    if names not in _NAMESPACES:
        _NAMESPACES[names] = namedtuple("Coefficients", names)
    return _NAMESPACES[names]


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
    return torch.tensor([float(v) for v in values], dtype=dtype, device=device)


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
    #: hyperparameters added after state dicts were first saved: a state dict without them
    #: loads, keeping this optimizer's values
    keys_added_later: ClassVar[frozenset[str]] = frozenset()
    #: hyperparameters this class adds to its base's that leave the rule unchanged at the value
    #: given (AdamW8bit's ``percentile_clipping=100``): a state dict holding one at that value
    #: loads into an optimizer without it
    neutral_settings: ClassVar[Mapping[str, Any]] = {}
    #: whether weight decay is decoupled, for the ``torch.optim`` twin whose state dict says so
    #: (``None``: the question does not arise)
    decoupled_weight_decay: ClassVar[bool | None] = None
    _hyper_type: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = [name for spec in cls.hyperparameters for name in spec.fields()]
        cls._hyper_type = namedtuple(f"{cls.__name__}Hyperparameters", [*names, *cls.statistics])

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, maximize: bool,
                 fused: bool | None, state_precision: str = "native",
                 shard_group: Any = None) -> None:
        # sums group statistics over ranks holding other params
        self.shard_group = check_process_group(type(self).__name__, "shard_group", shard_group)
        self._partitioned = built_by_zero()  # this rank holds only part of the parameters
        self._storages: dict[int, StateStorage] = {}
        self._offload: Any = None  # a stochopt.offload.DiskOffload keeping the state on disk
        self._compiled: dict[Any, Callable[..., Any]] = {}
        self._dummies: dict[Any, Any] = {}  # the fused path's bucket fillers (see _fused.pad)
        self._flat_cache = _fused.ViewCache()  # the fused path's flat views, kept between steps
        self._chunk_buffers: dict[str, Tensor] = {}  # the chunked 8-bit path's (see there)
        self._fused_failed = False
        engine = dict(maximize=maximize, fused=fused, state_precision=state_precision,
                      block_size=256, min_8bit_size=4096)
        if isinstance(params, set | frozenset | dict) or not hasattr(params, "__iter__"):
            raise TypeError(f"{type(self).__name__}: params must be an ordered iterable (list, "
                            f"tuple, generator) of tensors or of param-group dicts, got "
                            f"{show(params)}")
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

    def check_group(self, owner: str, group: Mapping[str, Any]) -> None:
        """Raise (naming ``owner``) if settings of ``group`` that are valid one by one are
        not together (each hyperparameter is already checked against its spec)."""

    def splittable(self, group: dict[str, Any]) -> bool:
        """Whether the update may run on any slice of a tensor's elements (out-of-core state
        streams such tensors in chunks; others are kept whole)."""
        return self.reduction(group) in (Reduction.ELEMENTWISE, Reduction.GLOBAL)

    # ---------------------------------------------------------------------- param groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, after checking all of it (its parameters: tensors, leaves,
        floating point or complex, in no other group; every hyperparameter): a group that
        raises is not added."""
        if getattr(self, "_offload", None) is not None:
            raise UnsupportedError("cannot add a param group to an optimizer whose state is "
                                   "offloaded; build the DiskOffload after every group exists")
        check_param_group(self, param_group)
        super().add_param_group(param_group)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_group_settings(self, type(self).__name__, group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict after checking all of it (:meth:`check_state_dict`): a state dict
        that raises changes nothing. Tensors are copied (the source is never aliased); state
        takes this optimizer's precision (8-bit codes and scales, bf16 or fp32 state: saved
        state of another precision is converted, see :mod:`stochopt.optim._validate`), where
        torch would cast it to the parameter's dtype. A ``torch.optim`` state dict of the same
        rule loads too, keeping this optimizer's engine settings (``state_precision``, ...)."""
        if isinstance(state_dict, Mapping):
            state_dict = dict(state_dict)  # shallow copy, as torch
            for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
                result = pre_hook(self, state_dict)
                state_dict = state_dict if result is None else result
        groups, state = self.check_state_dict(state_dict)
        if self._offload is not None:  # and what absorb() will move to disk
            index = {id(p): i for i, p in enumerate(p for g in groups for p in g["params"])}
            self._offload.check_state({index[id(p)]: s for p, s in state.items()})
        self.__setstate__({"state": defaultdict(dict, state), "param_groups": groups})
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)
        if self._offload is not None:
            self._offload.absorb()

    def check_state_dict(self, state_dict: Any
                         ) -> tuple[list[dict[str, Any]], dict[Tensor, dict[str, Any]]]:
        """Check ``state_dict`` whole against this optimizer (its class, the number of groups
        and parameters, every hyperparameter, each state tensor's presence, shape and dtype)
        and return the param groups and state that loading it installs; nothing is changed.
        Subclasses that save more extend it.

        Raises:
            TypeError, ValueError: naming what differs.
        """
        return checked_state_dict(self, state_dict)

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
        state.pop("_dummies", None)
        state.pop("_flat_cache", None)
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
        self.__dict__.setdefault("_dummies", {})
        self.__dict__.setdefault("_flat_cache", _fused.ViewCache())
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
        if closure is not None and not callable(closure):
            raise TypeError(f"{type(self).__name__}.step: closure must be a callable that "
                            f"returns the loss, or None, got {show(closure)}")
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        done = self._offload.drain() if self._offload is not None else set()
        statistics = [self._step_statistics(index, group, done)
                      for index, group in enumerate(self.param_groups)]
        for index, group in enumerate(self.param_groups):
            if statistics[index] is None:
                continue  # skipped: a non-finite statistic under nonfinite="skip"
            slots = self._collect(index, group, skip=done)
            if slots:
                self._update_group(group, slots, statistics[index])
        self._finish_step()
        return loss

    def _step_statistics(self, index: int, group: dict[str, Any],
                         skip: set[int]) -> dict[str, Tensor] | None:
        """What a step checks before it changes anything: that each gradient can be applied
        (sparse ones), the group statistics (summed over ``shard_group``: other ranks need
        this rank's share even when it has no gradient), and the group's non-finite policy:
        ``None`` skips the group."""
        params = []
        for position, param in enumerate(group["params"]):
            if param.grad is not None and id(param) not in skip:
                if param.grad.is_sparse:
                    self._check_sparse(index, position, param, group)
                params.append(param)
        if not self.statistics or (not params and self.shard_group is None):
            return {}
        views = [self._views(group, p) for p in params]
        stats = self._statistics(group, [p for p, _ in views], [g for _, g in views])
        policy = group.get("nonfinite", "propagate")
        if policy == "propagate" or all(bool(torch.isfinite(v).all()) for v in stats.values()):
            return stats
        where = (f"param group {index}'s {', '.join(self.statistics)} is not finite "
                 f"({nonfinite_parameters(group)})")
        if policy == "raise":
            raise NonFiniteError(f"{type(self).__name__}: {where}; nothing was changed "
                                 f"(nonfinite='raise'; 'skip' skips such steps, 'propagate' "
                                 f"lets the values through)")
        warnings.warn(f"{type(self).__name__}: skipped a step: {where}; the group's "
                      f"parameters, state and step count are unchanged (nonfinite='skip')",
                      NonFiniteWarning, stacklevel=4)
        return None

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

    @staticmethod
    def _views(group: dict[str, Any], param: Tensor) -> tuple[Tensor, Tensor]:
        """The parameter and gradient as the rule sees them: real views, the gradient
        negated under ``maximize``."""
        grad = param.grad
        g = torch.view_as_real(grad) if grad.is_complex() else grad
        return param_views(param), -g if group["maximize"] else g

    def _collect(self, index: int, group: dict[str, Any],
                 skip: set[int] = frozenset()) -> list[_Slot]:
        slots = []
        for position, param in enumerate(group["params"]):
            grad = param.grad
            if grad is None or id(param) in skip:
                continue
            if grad.is_sparse:
                self._check_sparse(index, position, param, group)
            p, g = self._views(group, param)
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

    def _statistics(self, group: dict[str, Any], params: list[Tensor],
                    grads: list[Tensor]) -> dict[str, Tensor]:
        """The group statistics (sums), added up over ``shard_group`` when there is one."""
        if params:
            stats = self.group_statistics(group, params, grads)
        else:
            stats = {name: torch.zeros((), dtype=torch.float64) for name in self.statistics}
        if self.shard_group is not None and stats:
            all_reduce([stats[name] for name in self.statistics], process_group(self.shard_group))
        return stats

    def _update_group(self, group: dict[str, Any], slots: list[_Slot],
                      statistics: dict[str, Tensor] | None = None) -> None:
        if statistics is None:
            statistics = self._statistics(group, [s.p for s in slots], [s.g for s in slots])
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
        the CPU a chunk at a time, see :mod:`stochopt.optim._chunked`; the rest in buckets,
        see :mod:`stochopt.optim._fused`), else on packs (:mod:`stochopt.optim._packed`),
        on lists (:mod:`stochopt.optim._lifted`) or tensor by tensor. Inside the caller's own
        ``torch.compile`` (of ``opt.step``, say) the rule is traced tensor by tensor into the
        caller's graph."""
        if self._fused(group, device) and not torch.compiler.is_compiling():
            storage, params, inputs, states = args[1:5]
            chunked = [i for i, member in enumerate(zip(params, inputs, states))
                       if _chunked.chunkable(storage, *member)]
            if chunked:
                _chunked.apply_chunked(self._chunk_step, self._chunk_buffers,
                                       *_members(args, chunked))
            rest = sorted(set(range(len(params))) - set(chunked))
            if not rest:
                return
            self._run_compiled(device, _members(args, rest), self.splittable(group))
            return
        if torch.compiler.is_compiling():
            _apply(*args)
            return
        scalars = [i for i, p in enumerate(args[2]) if p.ndim == 0]  # promote unlike lists
        if scalars:
            _apply(*_members(args, scalars))
            if len(scalars) == len(args[2]):
                return
            args = _members(args, [i for i, p in enumerate(args[2]) if p.ndim != 0])
        if not (_packed.apply_packed(*args) or _lifted.apply_lifted(*args)):
            _apply(*args)

    def _fused(self, group: dict[str, Any], device: torch.device) -> bool:
        fused = group["fused"]
        if fused is None:  # torch.optim's choice: fast kernels by default off the CPU
            fused = device.type == "cuda"
        return bool(fused) and not self._fused_failed

    def _run_compiled(self, device: torch.device, args: tuple[Any, ...],
                      splittable: bool) -> None:
        """Run ``_apply(*args)`` on the compiled path: the bucketed graphs of
        :mod:`stochopt.optim._fused` where they serve, one graph over the list of the others
        (tensor subclasses, 8-bit state), eagerly those of fewer than two values. After a
        compilation failure (warned once), every bucket not yet run is run eagerly."""
        rule, storage, params, inputs, states, coefficient_type, _, h = args
        buckets, rest = _fused.plan(rule, storage, params, inputs, states, h,
                                    coefficient_type, splittable, self._flat_cache)
        for bucket in buckets:
            if self._fused_failed or not self._run_bucket(bucket, args):
                _apply(*_members(args, bucket.members))
        tiny = [i for i in rest if params[i].numel() < 2]
        listed = [i for i in rest if params[i].numel() >= 2]
        if tiny:
            _apply(*_members(args, tiny))  # a compiled call costs more than it saves here
        if listed and (self._fused_failed or not self._run_list(device, _members(args, listed))):
            _apply(*_members(args, listed))

    def _run_bucket(self, bucket: _fused.Bucket, args: tuple[Any, ...]) -> bool:
        """One bucket through its layout's graph; on a compilation failure, warn once and
        report False (compilation fails before anything is written)."""
        rule, storage, _, _, _, coefficient_type, vectors, h = args
        first = bucket.key not in self._compiled
        compiled = self._compiled_for(bucket.key, _apply)
        _fused.pad(bucket, self._dummies)
        if first:
            _fused.mark_dynamic(bucket)  # traced now: every size a symbol
        index = bucket.members + bucket.members[-1:] * (len(bucket.params) - len(bucket.members))
        call = functools.partial(compiled, rule, storage, bucket.params, bucket.inputs,
                                 bucket.states, coefficient_type,
                                 tuple(v[index] for v in vectors), h)
        try:
            if not first:
                call()
                return True
            # no "duck" sizes: parameters that happen to be of equal size when traced must
            # not be assumed equal in later buckets
            with fx_config.patch(use_duck_shape=not bucket.flat):
                call()
        except Exception as error:  # no C++ compiler, unsupported platform, inductor bug, ...
            self._compile_failed(error)
            return False
        return True

    def _run_list(self, device: torch.device, args: tuple[Any, ...]) -> bool:
        """One graph over the whole list (unrolled over it: recompiled when it changes);
        on a compilation failure, warn once and report False."""
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
            _log.info("%s: compiling the fused step%s (one-time: seconds, less with torch "
                      "inductor's on-disk cache warm; every param group and step reuses it)",
                      type(self).__name__, " for another layout" if self._compiled else "")
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
