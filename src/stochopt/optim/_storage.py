"""How an optimizer's state tensors are kept between steps (the engine's storage seam).

The engine never touches state tensors directly while stepping: it asks the storage to
``load`` each one into compute precision, hands the values to the update rule, and asks it to
``store`` the results. So state can live in another dtype or in 8-bit blocks with no change to
any optimizer's rule, and because every method here is traceable by ``torch.compile``, load,
rule and store fuse into one pass on the fused path. 8-bit state on the CPU is the exception:
there ``load`` and ``store`` call native kernels (see :mod:`stochopt.quant._native`) around
the compiled rule, a chunk of the parameter at a time (:mod:`stochopt.optim._chunked`): three
passes that beat one pass of the code ``torch.compile`` generates for the table look-ups
(docs/performance.md, issue #5).

Precisions (per param group, ``state_precision``; a parameter may override it with
:func:`override_state_precision`):

* ``"native"``: the parameter's dtype (the default);
* ``"fp32"``: float32 whatever the parameter's dtype (e.g. bf16 parameters, fp32 state);
* ``"bf16"``: bfloat16 tensors (2 bytes per value);
* ``"8bit"``: block-wise dynamic quantization (Dettmers et al., 2022): uint8 codes plus one
  float32 absmax per block (``block_size`` values, default 256), the signed map for states
  that can be negative and the unsigned one for states an optimizer declares non-negative.
  Tensors with fewer than ``min_8bit_size`` values (default 4096) stay native.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt._distributed import is_dtensor
from stochopt.errors import UnsupportedError
from stochopt.quant import DynamicQuantizer

__all__ = ["PRECISIONS", "StateStorage", "compute_precision", "override_state_precision",
           "stored_dtype"]

STEP = "step"
ABSMAX = ".absmax"  # suffix of the per-block scales of a quantized state
PRECISIONS = ("native", "fp32", "bf16", "8bit")
_OVERRIDE = "_stochopt_state_precision"


def compute_precision(t: Tensor) -> Tensor:
    """``t`` in the precision rules compute in: at least float32 (half types are upcast)."""
    target = _COMPUTE_DTYPES.get(t.dtype)  # a lookup: called for every tensor of every step
    if target is None:
        target = torch.promote_types(t.dtype, torch.float32)
    return t if target == t.dtype else t.to(target)


#: the floating dtypes' compute dtypes, looked up rather than promoted; never changed, since
#: compiled rules guard on the contents of the dicts they read
_COMPUTE_DTYPES: dict[torch.dtype, torch.dtype] = {
    dtype: torch.promote_types(dtype, torch.float32)
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


def override_state_precision(param: Tensor, precision: str) -> Tensor:
    """Keep ``param``'s optimizer state in ``precision`` whatever its group says (e.g. an
    embedding that should keep 32-bit state under an 8-bit optimizer); returns ``param``.

    Raises:
        TypeError: ``param`` is not a tensor, or ``precision`` not a string.
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    owner = "override_state_precision"
    allowed = ", ".join(repr(p) for p in PRECISIONS)
    if not isinstance(param, Tensor):
        raise TypeError(f"{owner}: param must be a tensor (a parameter), got {show(param)}")
    if not isinstance(precision, str):
        raise TypeError(f"{owner}: precision must be one of {allowed}, got {show(precision)}")
    if precision not in PRECISIONS:
        raise ValueError(f"{owner}: precision must be one of {allowed}, got {precision!r}")
    setattr(param, _OVERRIDE, precision)
    return param


def precision_of(param: Tensor, group_precision: str) -> str:
    return getattr(param, _OVERRIDE, group_precision)


def stored_dtype(value: Tensor, precision: str, min_8bit_size: int) -> torch.dtype:
    """The dtype :meth:`StateStorage.create` keeps an initial state ``value`` in:
    ``torch.uint8`` for 8-bit codes (with a float32 ``.absmax`` of one value per block)."""
    if not value.is_floating_point():
        return value.dtype
    if precision == "8bit" and value.numel() >= min_8bit_size:
        return torch.uint8
    return {"bf16": torch.bfloat16, "fp32": torch.float32}.get(precision, value.dtype)


class StateStorage:
    """Native, bf16 and 8-bit block-wise state behind one interface.

    Args:
        block_size: values per quantization block.
        unsigned: names of states that are never negative (they use the unsigned map).
    """

    def __init__(self, block_size: int = 256, unsigned: frozenset[str] = frozenset()) -> None:
        self.block_size = block_size
        self.unsigned = unsigned
        self._quantizers: dict[tuple[bool, torch.device], DynamicQuantizer] = {}

    def signed(self, name: str) -> bool:
        """Whether state ``name`` is quantized with the signed map (it may be negative)."""
        return name not in self.unsigned

    def _quantizer(self, name: str, device: torch.device) -> DynamicQuantizer:
        key = (self.signed(name), device)
        if key not in self._quantizers:
            self._quantizers[key] = DynamicQuantizer(key[0], self.block_size, device)
        return self._quantizers[key]

    def create(self, state: dict[str, Tensor], name: str, value: Tensor, precision: str,
               min_8bit_size: int) -> None:
        """Keep ``value`` (the rule's initial state) under ``name`` in ``precision``. A
        sharded DTensor is quantized shard by shard: its blocks never straddle two ranks."""
        kept_as = stored_dtype(value, precision, min_8bit_size)
        if kept_as == torch.uint8:
            codes, absmax = self._quantizer(name, value.device).quantize(_local(value))
            state[name], state[name + ABSMAX] = _like(codes, value), _blocks(absmax, value)
        else:
            state[name] = value.to(kept_as)

    def blocks(self, numel: int) -> int:
        """The number of quantization blocks (absmax values) of a state of ``numel`` values."""
        return -(-numel // self.block_size)

    def names(self, state: dict[str, Tensor]) -> list[str]:
        """The rule's state names held in ``state``, in creation order."""
        return [name for name in state if name != STEP and not name.endswith(ABSMAX)]

    def is_quantized(self, state: dict[str, Tensor], name: str) -> bool:
        return name + ABSMAX in state

    def load(self, state: dict[str, Tensor], name: str) -> Tensor:
        """The state ``name`` in compute precision, shaped as the rule created it."""
        if self.is_quantized(state, name):
            codes = state[name]
            values = self._quantizer(name, codes.device).dequantize(
                _local(codes), _local(state[name + ABSMAX]))
            return _like(values, codes)
        return compute_precision(state[name])

    def store(self, state: dict[str, Tensor], name: str, value: Tensor) -> None:
        """Write the rule's new value of ``name`` back into ``state``."""
        if self.is_quantized(state, name):
            target = state[name]
            if is_dtensor(target) and value.placements != target.placements:
                value = value.redistribute(target.device_mesh, target.placements)
            self._quantizer(name, value.device).quantize_into(
                _local(value), _local(target), _local(state[name + ABSMAX]))
        else:
            state[name].copy_(value)


def _local(t: Tensor) -> Tensor:
    """This rank's shard of a DTensor; any other tensor as it is."""
    return t.to_local() if is_dtensor(t) else t


def _like(local: Tensor, like: Tensor) -> Tensor:
    """``local`` (this rank's shard) as a DTensor laid out like ``like``, if that is one."""
    if not is_dtensor(like):
        return local
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(local, like.device_mesh, like.placements, shape=like.shape,
                              stride=like.stride(), run_check=False)


def _blocks(absmax: Tensor, like: Tensor) -> Tensor:
    """The per-block scales of a sharded DTensor's local shard, as a DTensor sharded along
    its only dim (each rank's scales are those of its own blocks)."""
    if not is_dtensor(like):
        return absmax
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, Shard

    mesh = like.device_mesh
    if mesh.ndim != 1:
        raise UnsupportedError("8-bit state of DTensors needs a 1-d device mesh, got "
                               f"{mesh.ndim} dims")
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(mesh.size())]
    dist.all_gather(sizes, torch.tensor([absmax.numel()]), group=mesh.get_group())
    total = int(sum(int(n) for n in sizes))
    return DTensor.from_local(absmax, mesh, [Shard(0)], shape=(total,), stride=(1,),
                              run_check=False)
