"""What enters an optimizer, checked whole before anything changes (validate, then mutate).

* :func:`check_param_group`: a group for ``add_param_group`` (and the constructor): its
  parameters (tensors, leaves, floating point or complex, each in one place only) and every
  hyperparameter, against the optimizer's specs.
* :func:`checked_state_dict`: a state dict for ``load_state_dict``: that it is this optimizer's
  (its param groups carry this class's hyperparameters and no other stochopt optimizer's), the
  number of groups and of parameters per group, every hyperparameter value, and each state
  tensor's presence, shape and dtype against the parameters (8-bit codes with one block scale
  per block). It returns the groups and state to install; the optimizer is not touched.

A ``torch.optim`` state dict of the same rule (``torch.optim.AdamW`` into
:class:`~stochopt.optim.AdamW`, ``Adagrad`` into :class:`~stochopt.optim.AdaGrad`) loads: its
groups lack the engine's settings, which keep the values this optimizer was built with, and its
own flags (``foreach``, ``capturable``, ...) are dropped.

Where the state is kept is this optimizer's choice, not the state dict's: the storage settings
(``state_precision``, ``block_size``, ``min_8bit_size``) keep this optimizer's values, and the
loaded state is converted to them (fp32 state quantized into an 8-bit optimizer, 8-bit codes
dequantized into an fp32 or bf16 one, codes of another block size requantized). State saved
in the precision this optimizer keeps is copied exactly, so a resume is bit for bit.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt._distributed import is_dtensor
from stochopt.errors import UnsupportedError
from stochopt.optim._storage import (
    ABSMAX,
    STEP,
    StateStorage,
    compute_precision,
    precision_of,
    stored_dtype,
)

if TYPE_CHECKING:
    from stochopt.optim._engine import ElementwiseOptimizer

__all__ = ["ENGINE_KEYS", "check_group_settings", "check_param_group", "check_torch_flags",
           "checked_state_dict", "nonfinite_parameters", "param_views"]

#: group keys every stochopt optimizer has besides its hyperparameters
ENGINE_KEYS = ("maximize", "fused", "state_precision", "block_size", "min_8bit_size")
#: the engine's settings a ``torch.optim`` state dict lacks (kept from the constructor)
_ENGINE_ONLY = frozenset({"state_precision", "block_size", "min_8bit_size"})
#: ``torch.optim`` group flags that select torch's implementation, dropped on loading
_TORCH_ONLY = frozenset({"foreach", "capturable", "differentiable", "decoupled_weight_decay"})
_MAX_PROBLEMS = 6


def param_views(param: Tensor) -> Tensor:
    """The real view the rule sees of ``param`` (complex parameters as pairs of reals)."""
    return torch.view_as_real(param) if param.is_complex() else param


def nonfinite_parameters(group: Mapping[str, Any]) -> str:
    """Which parameters of ``group`` have a NaN or infinite gradient or value (for the
    messages of a ``nonfinite`` policy)."""
    def finite(t: Tensor) -> bool:
        t = t.coalesce().values() if t.is_sparse else t
        return bool(torch.isfinite(t).all())

    bad = [i for i, p in enumerate(group["params"])
           if p.grad is not None and not (finite(p.grad) and finite(p.detach()))]
    if bad:
        return f"parameters {bad} have a NaN or infinite gradient or value"
    return "from another rank's parameters, or an overflow"


def check_torch_flags(owner: str, fused: bool | None, foreach: Any = None,
                      capturable: Any = False, differentiable: Any = False) -> None:
    """Check the implementation flags of a ``torch.optim`` twin's signature, which select
    torch's code paths and change nothing in stochopt's: ``foreach`` (None, True or False:
    the engine chooses its kernels itself, ``fused`` picks the compiled path); ``capturable``
    and ``differentiable`` must be False (a step is neither safe to capture in a CUDA graph
    nor differentiable), and are refused when True rather than ignored."""
    for name, value, allowed in (("foreach", foreach, (None, True, False)),
                                 ("capturable", capturable, (False, True)),
                                 ("differentiable", differentiable, (False, True))):
        if not any(value is a for a in allowed):
            raise TypeError(f"{owner}: {name} must be {', '.join(map(str, allowed[:-1]))} or "
                            f"{allowed[-1]}, got {show(value)}")
    if foreach and fused:
        raise ValueError(f"{owner}: fused=True and foreach=True cannot be given together (as "
                         f"in torch.optim); pass one of them")
    if capturable:
        raise UnsupportedError(
            f"{owner}: capturable=True is not supported: a step builds its hyperparameter "
            f"tensors from Python numbers on the host, so it cannot be captured in a CUDA "
            f"graph. Leave capturable=False (the state, step count included, already lives on "
            f"the parameters' device), or use torch.optim's optimizer for graph capture")
    if differentiable:
        raise UnsupportedError(
            f"{owner}: differentiable=True is not supported: a step runs under torch.no_grad() "
            f"and updates the parameters in place, so no gradient flows through it. Leave "
            f"differentiable=False, or use torch.optim's optimizer to differentiate through "
            f"optimizer steps")


# ------------------------------------------------------------------------ add_param_group
def check_param_group(opt: ElementwiseOptimizer, param_group: Any) -> None:
    """Check a group for ``opt.add_param_group`` whole: raise (``TypeError``/``ValueError``
    naming the group, the parameter's position and the argument) or return with nothing
    changed but ``param_group["params"]`` made a list (as torch does)."""
    owner = type(opt).__name__
    index = len(opt.param_groups)
    if not isinstance(param_group, dict):
        raise TypeError(f"{owner}: a param group must be a dict with a 'params' entry, got "
                        f"{show(param_group)}")
    if "params" not in param_group:
        raise ValueError(f"{owner}: param group {index} has no 'params' entry (its keys: "
                         f"{sorted(map(str, param_group))})")
    params = param_group["params"]
    if isinstance(params, Tensor):
        params = [params]
    elif isinstance(params, set) or not hasattr(params, "__iter__"):
        raise TypeError(f"{owner}: the params of param group {index} must be a tensor or an "
                        f"ordered iterable (list, tuple) of tensors, got {show(params)}")
    param_group["params"] = params = list(params)
    _check_params(opt, owner, index, [p[1] if isinstance(p, tuple) and len(p) == 2 else p
                                      for p in params])
    check_group_settings(opt, owner, {**opt.defaults, **param_group})


def _check_params(opt: ElementwiseOptimizer, owner: str, index: int, params: list[Any]) -> None:
    where = {id(p): (g, i) for g, group in enumerate(opt.param_groups)
             for i, p in enumerate(group["params"])}
    seen: dict[int, int] = {}
    for i, p in enumerate(params):
        at = f"parameter {i} of param group {index}"
        if not isinstance(p, Tensor):
            raise TypeError(f"{owner}: {at} must be a tensor, got {show(p)}")
        if not (p.is_floating_point() or p.is_complex()):
            raise TypeError(f"{owner}: {at} has dtype {p.dtype}; only floating-point and "
                            f"complex tensors can be optimized (as in torch.optim)")
        if not (p.is_leaf or p.retains_grad):
            raise ValueError(f"{owner}: {at} is not a leaf tensor (it was computed from "
                             f"others); optimize the leaf, or .detach().requires_grad_() it")
        if id(p) in seen:
            raise ValueError(f"{owner}: {at} is parameter {seen[id(p)]} again; list each "
                             f"parameter once (it would be updated twice per step)")
        if id(p) in where:
            g, j = where[id(p)]
            raise ValueError(f"{owner}: {at} is already parameter {j} of param group {g}; a "
                             f"parameter belongs to one group")
        seen[id(p)] = i


def check_group_settings(opt: ElementwiseOptimizer, owner: str, group: Mapping[str, Any]) -> None:
    """Every hyperparameter and engine setting of ``group``, and the class's own cross-checks
    (:meth:`~stochopt.optim.ElementwiseOptimizer.check_group`)."""
    from stochopt.optim._engine import _ENGINE_SPECS, Reduction

    for spec in (*opt.hyperparameters, *_ENGINE_SPECS):
        if spec.name not in group:
            raise ValueError(f"{owner}: the param group has no {spec.name!r}")
        spec.check(owner, group[spec.name])
    if not (group["fused"] is None or isinstance(group["fused"], bool)):
        raise TypeError(f"{owner}: fused must be None, True or False, got {show(group['fused'])}")
    opt.check_group(owner, group)
    partitioned = opt.__dict__.get("_partitioned", False)
    if partitioned and opt.reduction(group) is Reduction.GLOBAL and opt.shard_group is None:
        raise UnsupportedError(
            f"{owner}: this param group's update reduces over all of its parameters, but "
            f"ZeroRedundancyOptimizer gives each rank only part of them; pass "
            f"shard_group='world' (or ZeRO's process group) so the statistic is summed "
            f"over ranks, or choose a per-tensor mode")


# ------------------------------------------------------------------------ load_state_dict
def checked_state_dict(opt: ElementwiseOptimizer, state_dict: Any
                       ) -> tuple[list[dict[str, Any]], dict[Tensor, dict[str, Any]]]:
    """The param groups and state that loading ``state_dict`` into ``opt`` installs, after
    checking all of it (``TypeError``/``ValueError`` naming what differs); ``opt`` is not
    changed and ``state_dict``'s tensors are copied, never aliased."""
    owner = f"{type(opt).__name__}.load_state_dict"
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{owner}: state_dict must be a dict with 'state' and 'param_groups', "
                        f"got {show(state_dict)}")
    missing = [k for k in ("state", "param_groups") if k not in state_dict]
    if missing:
        raise ValueError(f"{owner}: the state dict has no {' or '.join(map(repr, missing))} "
                         f"entry (its keys: {sorted(map(str, state_dict))}); it is not an "
                         f"optimizer state dict")
    saved, state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(saved, Sequence) or isinstance(saved, str) or not all(
            isinstance(g, Mapping) for g in saved):
        raise TypeError(f"{owner}: 'param_groups' must be a list of dicts, got {show(saved)}")
    if not isinstance(state, Mapping):
        raise TypeError(f"{owner}: 'state' must be a dict, got {show(state)}")
    if len(saved) != len(opt.param_groups):
        raise ValueError(f"{owner}: the state dict has {len(saved)} param groups, this "
                         f"optimizer {len(opt.param_groups)}")
    checked = [_checked_group(opt, owner, i, g) for i, g in enumerate(saved)]
    groups = [group for group, _ in checked]
    ids = _saved_ids(opt, owner, saved)
    return groups, _checked_state(opt, owner, groups, [size for _, size in checked], ids, state)


def _checked_group(opt: ElementwiseOptimizer, owner: str, index: int,
                   saved: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """Saved group ``index`` as it will be installed (hyperparameters checked, torch.optim's
    flags dropped, the storage settings this optimizer's), holding this group's params; and
    the block size of the saved 8-bit codes (to read them)."""
    current = opt.param_groups[index]
    where = f"{owner}: param group {index}"
    params = saved.get("params")
    if not isinstance(params, Sequence) or isinstance(params, str):
        raise ValueError(f"{where} has no list of 'params', got {show(params)}")
    if len(params) != len(current["params"]):
        raise ValueError(f"{where} has {len(params)} parameters in the state dict, "
                         f"{len(current['params'])} in this optimizer")
    own = {spec.name for spec in opt.hyperparameters} | set(ENGINE_KEYS)
    group = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
    from_torch = _ENGINE_ONLY.isdisjoint(group) and not _TORCH_ONLY.isdisjoint(group)
    if not _TORCH_ONLY.isdisjoint(group):  # saved by torch.optim (of stochopt state or its own)
        _check_torch_group(opt, where, group)
        group = {k: v for k, v in group.items() if k not in _TORCH_ONLY}
    if from_torch:
        group.update({k: current[k] for k in (*_ENGINE_ONLY, "fused")})
    for key in opt.keys_added_later:
        group.setdefault(key, current[key])
    for key, neutral in _neutral_settings().items():  # e.g. AdamW8bit's into AdamW
        if key not in own and type(group.get(key)) is type(neutral) and group[key] == neutral:
            del group[key]
    missing = sorted(own - set(group))
    foreign = sorted(set(group) & (_stochopt_keys() - own))
    if missing or foreign:
        raise ValueError(_not_ours(opt, where, missing, foreign, set(group), from_torch))
    check_group_settings(opt, where, group)
    saved_block_size = group["block_size"]
    group.update({k: current[k] for k in _ENGINE_ONLY})  # loaded state is converted to them
    group["params"] = current["params"]
    if "param_names" in current and "param_names" not in group:
        group["param_names"] = current["param_names"]
    return group, saved_block_size


def _check_torch_group(opt: ElementwiseOptimizer, where: str, group: dict[str, Any]) -> None:
    """Refuse a torch.optim group whose rule differs from this optimizer's."""
    decoupled = group.get("decoupled_weight_decay")
    if (decoupled is not None and opt.decoupled_weight_decay is not None
            and bool(decoupled) != opt.decoupled_weight_decay
            and group.get("weight_decay", 0) != 0):
        kind = "decoupled" if decoupled else "L2 (coupled)"
        raise ValueError(f"{where} comes from a torch.optim optimizer with {kind} weight decay, "
                         f"which {type(opt).__name__} does not apply; load it into the "
                         f"optimizer of the same rule")


def _stochopt_keys() -> set[str]:
    from stochopt.optim._engine import ElementwiseOptimizer, _subclasses

    return {spec.name for cls in _subclasses(ElementwiseOptimizer)
            for spec in cls.hyperparameters}


def _neutral_settings() -> dict[str, Any]:
    from stochopt.optim._engine import ElementwiseOptimizer, _subclasses

    return {k: v for cls in _subclasses(ElementwiseOptimizer)
            for k, v in cls.neutral_settings.items()}


def _not_ours(opt: ElementwiseOptimizer, where: str, missing: list[str], foreign: list[str],
              keys: set[str], from_torch: bool) -> str:
    from stochopt.optim._engine import ElementwiseOptimizer, _subclasses

    name = type(opt).__name__
    parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
        [f"has {', '.join(foreign)}"] if foreign else [])
    if not foreign and set(missing) <= _ENGINE_ONLY:
        return (f"{where} {parts[0]}: the state dict is incomplete; load a state dict "
                f"saved by {name}.state_dict()")
    stochopt = _stochopt_keys() & keys
    likely = [c.__name__ for c in _subclasses(ElementwiseOptimizer)
              if c.hyperparameters and not c.__name__.startswith("_")
              and stochopt == {s.name for s in c.hyperparameters}]
    origin = (" (it looks like another torch.optim optimizer's)" if from_torch
              else f" (it looks like {likely[0]}'s)" if likely else "")
    return (f"{where} {' and '.join(parts)}: it is not a state dict of {name}{origin}; load "
            f"it into the optimizer that saved it")


def _saved_ids(opt: ElementwiseOptimizer, owner: str,
               saved: Sequence[Mapping[str, Any]]) -> dict[Any, tuple[int, int]]:
    """The saved parameter ids, each mapped to its (group, position)."""
    ids: dict[Any, tuple[int, int]] = {}
    for g, group in enumerate(saved):
        for i, k in enumerate(group["params"]):
            try:
                hash(k)
            except TypeError:
                raise ValueError(f"{owner}: param group {g} lists {show(k)} as parameter {i}; "
                                 f"parameter ids must be integers") from None
            if k in ids:
                raise ValueError(f"{owner}: parameter id {k!r} is listed twice (param group "
                                 f"{ids[k][0]} and {g})")
            ids[k] = (g, i)
    return ids


def _checked_state(opt: ElementwiseOptimizer, owner: str, groups: list[dict[str, Any]],
                   block_sizes: list[int], ids: dict[Any, tuple[int, int]],
                   state: Mapping[Any, Any]) -> dict[Tensor, dict[str, Any]]:
    problems: list[str] = []
    loaded: dict[Tensor, dict[str, Any]] = {}
    for k, entry in state.items():
        if k not in ids:
            problems.append(f"state entry {k!r} belongs to no parameter of the param groups")
            continue
        g, i = ids[k]
        param = groups[g]["params"][i]
        at = f"parameter {i} of param group {g} (shape {tuple(param.shape)})"
        result = _checked_entry(opt, param, groups[g], block_sizes[g], entry, at, problems)
        if result is not None:
            loaded[param] = result
    if problems:
        shown = problems[:_MAX_PROBLEMS]
        more = len(problems) - len(shown)
        raise ValueError(f"{owner}: the state dict does not fit this optimizer's parameters: "
                         + "; ".join(shown) + (f"; and {more} more" if more else ""))
    return loaded


def _expected(opt: ElementwiseOptimizer, param: Tensor, group: dict[str, Any]
              ) -> dict[str, Tensor]:
    """The initial state the rule would create for ``param``, on the meta device (no
    memory), or for real where ``init_state`` cannot run on meta tensors."""
    p = param_views(param)
    try:
        return opt.init_state(torch.empty(p.shape, dtype=p.dtype, device="meta"), group)
    except Exception:  # an init_state that reads values: build it for real
        return opt.init_state(p.detach(), group)


def _checked_entry(opt: ElementwiseOptimizer, param: Tensor, group: dict[str, Any],
                   saved_block_size: int, entry: Any, at: str,
                   problems: list[str]) -> dict[str, Any] | None:
    """One parameter's saved state as it will be installed (in the precision ``group``
    keeps it in); problems are appended."""
    if not isinstance(entry, Mapping):
        problems.append(f"the state of {at} is {show(entry)}, not a dict")
        return None
    if not entry:
        return {}
    expected = _expected(opt, param, group)
    names = set(expected)
    scales = {name + ABSMAX for name in names}
    extra = sorted(str(k) for k in entry if k != STEP and k not in names and k not in scales)
    lacking = sorted(n for n in names if n not in entry) + ([STEP] if STEP not in entry else [])
    if extra or lacking:
        problems.append(f"the state of {at} " + " and ".join(
            ([f"lacks {', '.join(lacking)}"] if lacking else [])
            + ([f"has {', '.join(extra)}, which {type(opt).__name__} does not keep"]
               if extra else [])))
        return None
    before = len(problems)
    out: dict[str, Any] = {STEP: _checked_step(entry[STEP], param, at, problems)}
    precision = precision_of(param, group["state_precision"])
    for name, init in expected.items():
        out.update(_checked_tensor(opt, name, init, entry, param, at, problems,
                                   stored_dtype(init, precision, group["min_8bit_size"]),
                                   saved_block_size, group["block_size"]))
    return out if len(problems) == before else None


def _checked_step(value: Any, param: Tensor, at: str, problems: list[str]) -> Tensor | None:
    """The step count as the engine keeps it: a float32 0-d tensor on the parameter's device."""
    if isinstance(value, Tensor) and value.numel() == 1 and not (
            value.is_complex() or value.dtype == torch.bool):
        number = float(value.detach().cpu().reshape(()))
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    else:
        problems.append(f"the step of {at} must be a number, got {show(value)}")
        return None
    if not (math.isfinite(number) and number >= 0 and number == int(number)):
        problems.append(f"the step of {at} must be a whole number >= 0, got {number!r}")
        return None
    return torch.tensor(number, dtype=torch.float32, device=param.device)


def _checked_tensor(opt: ElementwiseOptimizer, name: str, init: Tensor,
                    entry: Mapping[str, Any], param: Tensor, at: str, problems: list[str],
                    dtype: torch.dtype, block_size: int, new_block_size: int
                    ) -> dict[str, Tensor]:
    """State ``name`` (and its block scales if it is 8-bit, in blocks of ``block_size``)
    checked against the initial state ``init`` the rule would create, copied to the
    parameter's device and kept as ``dtype`` (``torch.uint8``: 8-bit codes in blocks of
    ``new_block_size``)."""
    value, scales = entry[name], entry.get(name + ABSMAX)
    shape = tuple(init.shape)
    if not isinstance(value, Tensor):
        problems.append(f"state {name!r} of {at} must be a tensor, got {show(value)}")
        return {}
    if tuple(value.shape) != shape:
        problems.append(f"state {name!r} of {at} has shape {tuple(value.shape)}, expected "
                        f"{shape}")
        return {}
    if scales is None:
        if not value.is_floating_point():
            problems.append(f"state {name!r} of {at} has dtype {value.dtype}"
                            + (" (8-bit codes) but no block scales "
                               f"{name + ABSMAX!r}" if value.dtype == torch.uint8 else
                               ", expected a floating-point dtype"))
            return {}
        return _converted(opt, name, value, param.device, dtype, new_block_size)
    if value.dtype != torch.uint8:
        problems.append(f"state {name!r} of {at} has block scales but dtype {value.dtype}, "
                        f"expected the 8-bit codes' torch.uint8")
        return {}
    blocks = -(-value.numel() // block_size)
    if not isinstance(scales, Tensor) or not scales.is_floating_point() or scales.ndim != 1 or (
            scales.numel() != blocks and not is_dtensor(scales)):
        problems.append(f"block scales {name + ABSMAX!r} of {at} must be a 1-d floating "
                        f"tensor of {blocks} values (one per block of {block_size}), got "
                        f"{show(scales)}")
        return {}
    local = scales.to_local() if is_dtensor(scales) else scales
    if local.numel() and not bool(((local >= 0) & torch.isfinite(local)).all()):
        problems.append(f"block scales {name + ABSMAX!r} of {at} must be finite and >= 0")
        return {}
    codes = {name: _copy(value, param.device, torch.uint8),
             name + ABSMAX: _copy(scales, param.device, torch.float32)}
    if dtype == torch.uint8 and block_size == new_block_size:
        return codes  # kept as saved: bit for bit
    values = StateStorage(block_size, opt.nonnegative_states).load(codes, name)
    return _converted(opt, name, values, param.device, dtype, new_block_size)


def _converted(opt: ElementwiseOptimizer, name: str, values: Tensor, device: torch.device,
               dtype: torch.dtype, block_size: int) -> dict[str, Tensor]:
    """Floating-point state ``values`` as this optimizer keeps state ``name``: a copy in
    ``dtype``, or (``torch.uint8``) quantized into 8-bit codes and block scales."""
    if dtype != torch.uint8:
        return {name: _copy(values, device, dtype)}
    state: dict[str, Tensor] = {}
    StateStorage(block_size, opt.nonnegative_states).create(
        state, name, compute_precision(values.detach().to(device)), "8bit", min_8bit_size=0)
    return state


def _copy(value: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``value`` on ``device`` in ``dtype``, never sharing memory with it."""
    if value.dtype == dtype and value.device == device:
        return value.detach().clone()
    return value.detach().to(device=device, dtype=dtype)
