r"""8-bit optimizers with bitsandbytes' arguments: each stochopt rule with 8-bit state.

Every stochopt optimizer takes ``state_precision="8bit"`` (Dettmers, Lewis, Shleifer &
Zettlemoyer, "8-bit Optimizers via Block-wise Quantization", ICLR 2022, arXiv:2110.02861);
these classes default to it and take bitsandbytes' keyword arguments, so that code written for
``bitsandbytes.optim.AdamW8bit`` (and ``Adagrad8bit``, here ``AdaGrad8bit``) runs unchanged,
positional order included:

* ``optim_bits``: ``8`` keeps block-wise 8-bit state (the default), ``32`` float32 state (the
  bits of the state, as for bitsandbytes' ``AdamW(optim_bits=...)``; its ``AdamW8bit`` keeps
  8-bit state whatever it is given: older releases ignore the argument, 0.50 accepts only its
  default, 32);
* ``min_8bit_size``: tensors of fewer values keep unquantized state (default 4096);
* ``percentile_clipping``: clip each tensor's gradient at a percentile of its last 100 norms
  (default 100: off); see :func:`percentile_clip`;
* ``block_wise``: ``True`` only (block-wise quantization; bitsandbytes' ``False`` used one
  scale per tensor, which the paper shows to be less stable);
* ``is_paged``: ``False`` only (paging state to host memory needs CUDA unified memory; out of
  core state is :class:`~stochopt.offload.DiskOffload`'s job);
* ``args``: ``None`` only (bitsandbytes' object overriding the keywords; pass them instead);
* ``block_size``: values per quantization block (default 256, bitsandbytes' for 8-bit Adam).

``block_size``, ``min_8bit_size`` and ``percentile_clipping`` are param-group settings (a group
may give its own); the rest choose the state's precision or are refused.

Non-finite values follow the optimizer each class extends, except that a NaN or infinite state
value is stored as 0 (it does not enter its block's scale, so the rest of the block is
unharmed); the parameter entry it came from is non-finite all the same. Under percentile
clipping a NaN or infinite gradient's norm enters its tensor's history, where it sorts last (the
threshold stays finite while fewer than ``100 - percentile_clipping`` of the norms kept are
non-finite), and the step's gradient stays non-finite, as in bitsandbytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt._distributed import is_dtensor
from stochopt.errors import UnsupportedError
from stochopt.optim._engine import Reduction
from stochopt.optim._hyper import Integer
from stochopt.optim.adabelief import AdaBelief
from stochopt.optim.adagrad import AdaGrad
from stochopt.optim.adamw import AdamW
from stochopt.optim.diffgrad import DiffGrad
from stochopt.optim.sophia import SophiaG

__all__ = ["AdaBelief8bit", "AdaGrad8bit", "AdamW8bit", "DiffGrad8bit", "SophiaG8bit",
           "percentile_clip"]

HISTORY = "gnorm_vec"  # the state holding the last squared gradient norms (bitsandbytes' name)
WINDOW = 100  # norms kept per tensor
PERCENTILE_CLIPPING = Integer("percentile_clipping", low=0, high=WINDOW)
T = TypeVar("T", bound=type)


def percentile_clip(g: Tensor, history: Tensor, step: Tensor,
                    percentile: int) -> tuple[Tensor, Tensor]:
    r"""bitsandbytes' percentile clipping of one tensor's gradient at step ``step``.

    With :math:`n_t = \lVert g_t \rVert_2^2` and :math:`H` the last 100 squared norms (ring
    buffer ``history``, filled with :math:`n_1` at step 1), :math:`p` = ``percentile``:

    .. math::
        H_{t \bmod 100} = n_t, \qquad c_t = \sqrt{H_{(p)}}, \qquad
        g_t \leftarrow g_t \min\left(1, \frac{c_t}{\sqrt{n_t}}\right)

    where :math:`H_{(p)}` is the :math:`(p+1)`-th smallest entry (``sorted(H)[p]``).

    Args:
        g: the gradient, any shape (in compute precision).
        history: ``(100,)`` squared norms of earlier steps.
        step: the step count :math:`t \ge 1` (a tensor).
        percentile: :math:`p` in ``[0, 99]``.

    Returns:
        The clipped gradient and the new history.

    References:
        bitsandbytes 0.43, ``functional.percentile_clipping`` and the CUDA kernel
        ``kPercentileClipping`` it calls (``Optimizer8bit.update_step`` keeps one history per
        parameter tensor and scales the gradient by the factor before the update). Later
        releases deprecated it; 0.50 has neither it nor ``block_wise``.
    """
    norm_sq = (g * g).sum().to(history.dtype)
    slot = torch.arange(WINDOW, device=history.device) == torch.remainder(step, WINDOW)
    history = torch.where(slot | (step == 1), norm_sq, history)
    clip, current = torch.sort(history).values[percentile].sqrt(), norm_sq.sqrt()
    scale = torch.where(current > clip, clip / current, torch.ones_like(current))
    return g * scale.to(g.dtype), history


def _with_step(coefficients: Callable[..., dict[str, Tensor]]) -> Callable[..., Any]:
    """The base rule's coefficients, and the step count (percentile clipping reads it)."""
    def with_step(step: Tensor, h: Any) -> dict[str, Tensor]:
        return {**coefficients(step, h), "step": step}
    return with_step


def _clipped(update: Callable[..., Any]) -> Callable[..., Any]:
    """The base rule on the gradient clipped by :func:`percentile_clip` (when it is on)."""
    def clipped(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
                h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        if h.percentile_clipping >= WINDOW:
            return update(p, g, state, c, h)
        g, history = percentile_clip(g, state[HISTORY], c.step, h.percentile_clipping)
        new_p, new_state = update(p, g, state, c, h)
        return new_p, {**new_state, HISTORY: history}
    return clipped


def _settings(owner: str, optim_bits: Any, args: Any, min_8bit_size: Any,
              percentile_clipping: Any, block_wise: Any, is_paged: Any,
              block_size: Any) -> tuple[str, dict[str, Any]]:
    """The state precision and param-group settings bitsandbytes' arguments ask for; the
    settings themselves are checked with every group by the engine."""
    if isinstance(optim_bits, bool) or not isinstance(optim_bits, int):
        raise TypeError(f"{owner}: optim_bits must be 8 or 32, got {show(optim_bits)}")
    if optim_bits not in (8, 32):
        raise ValueError(f"{owner}: optim_bits must be 8 (8-bit block-wise state) or 32 "
                         f"(float32 state), got {optim_bits!r}")
    if args is not None:
        raise TypeError(f"{owner}: args must be None, got {show(args)}; pass bitsandbytes' "
                        f"settings as keywords (optim_bits, min_8bit_size, percentile_clipping, "
                        f"block_wise)")
    for name, value, supported in (("block_wise", block_wise, True), ("is_paged", is_paged, False)):
        if not isinstance(value, bool):
            raise TypeError(f"{owner}: {name} must be True or False, got {show(value)}")
        if value is not supported:
            reason = ("state is quantized block by block only (one scale per tensor, "
                      "bitsandbytes' block_wise=False, is less stable)" if name == "block_wise"
                      else "paging state to host memory needs CUDA unified memory; keep "
                      "state out of core with stochopt.offload.DiskOffload")
            raise UnsupportedError(f"{owner}: {name}={value} is not supported: {reason}; pass "
                                   f"{name}={supported}")
    settings = dict(block_size=block_size, min_8bit_size=min_8bit_size,
                    percentile_clipping=percentile_clipping)
    return ("8bit" if optim_bits == 8 else "fp32"), settings


def _grouped(params: Any, settings: Mapping[str, Any]) -> Any:
    """``params`` with ``settings`` as each param group's defaults (a group's own values win),
    as ``torch.optim`` fills a group from ``defaults``; what is no list of parameters or
    groups passes unchanged, for the engine to refuse."""
    if isinstance(params, Tensor | set | frozenset | dict | str) or not isinstance(
            params, Iterable):
        return params
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        return [{"params": groups, **settings}]
    return [{**settings, **g} if isinstance(g, dict) else g for g in groups]


def _with_percentile_clipping(cls: type[T]) -> type[T]:
    """Give an 8-bit class (whose body adds :data:`PERCENTILE_CLIPPING` to its base's
    hyperparameters) percentile clipping: the base rule on the clipped gradient, the norm
    history as one more state, the per-tensor reduction and the checks. Its base stays
    ``cls.__mro__[1]``."""
    base = cls.__mro__[1]
    if PERCENTILE_CLIPPING not in cls.hyperparameters:
        raise TypeError(f"{cls.__name__} must list PERCENTILE_CLIPPING in its hyperparameters")

    def init_state(self: Any, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        state = base.init_state(self, p, group)
        if group["percentile_clipping"] < WINDOW:  # as bitsandbytes: float32 (float64 params)
            dtype = torch.promote_types(p.dtype, torch.float32)
            state[HISTORY] = torch.zeros(WINDOW, dtype=dtype, device=p.device)
        return state

    def reduction(self: Any, group: dict[str, Any]) -> Reduction:
        reduction = base.reduction(self, group)
        if group["percentile_clipping"] >= WINDOW or reduction is not Reduction.ELEMENTWISE:
            return reduction
        return Reduction.TENSOR  # the norm is over the whole tensor: never split it

    def check_group(self: Any, owner: str, group: Mapping[str, Any]) -> None:
        base.check_group(self, owner, group)
        _check_clipping(owner, group)

    def check_sparse_group(self: Any, group: dict[str, Any]) -> None:
        base.check_sparse_group(self, group)
        if group["percentile_clipping"] < WINDOW:
            raise UnsupportedError(f"{cls.__name__}: percentile_clipping="
                                   f"{group['percentile_clipping']} needs dense gradients (it "
                                   f"reads each tensor's whole gradient norm)")

    cls.keys_added_later = base.keys_added_later | {PERCENTILE_CLIPPING.name}
    cls.neutral_settings = {PERCENTILE_CLIPPING.name: WINDOW}  # off: the base's rule
    cls.coefficients = staticmethod(_with_step(base.coefficients))
    cls.update = staticmethod(_clipped(base.update))
    for method in (init_state, reduction, check_group, check_sparse_group):
        method.__qualname__ = f"{cls.__name__}.{method.__name__}"
        setattr(cls, method.__name__, method)
    return cls


def _check_clipping(owner: str, group: Mapping[str, Any]) -> None:
    """Refuse percentile clipping where its norm history would be quantized, or where the
    gradient is sharded (DTensor)."""
    percentile = group["percentile_clipping"]
    if percentile >= WINDOW:
        return
    if group["state_precision"] == "8bit" and group["min_8bit_size"] <= WINDOW:
        raise ValueError(f"{owner}: percentile_clipping={percentile} keeps the last {WINDOW} "
                         f"gradient norms of each tensor, which min_8bit_size="
                         f"{group['min_8bit_size']} would quantize; use min_8bit_size > "
                         f"{WINDOW} (bitsandbytes keeps them in float32)")
    if any(is_dtensor(p) for p in group.get("params", ())):
        raise UnsupportedError(f"{owner}: percentile_clipping={percentile} is not supported "
                               f"with DTensor (FSDP2) parameters; use percentile_clipping=100 "
                               f"or clip gradients before the step")


@_with_percentile_clipping
class AdamW8bit(AdamW):
    """:class:`AdamW` with 8-bit block-wise state, in ``bitsandbytes.optim.AdamW8bit``'s
    signature (positional order included) plus ``torch.optim.AdamW``'s keyword flags; see the
    module docstring for bitsandbytes' arguments."""

    hyperparameters = (*AdamW.hyperparameters, PERCENTILE_CLIPPING)

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, optim_bits: int = 8,
                 args: Any = None, min_8bit_size: int = 4096, percentile_clipping: int = 100,
                 block_wise: bool = True, is_paged: bool = False, *, block_size: int = 256,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        precision, settings = _settings("AdamW8bit", optim_bits, args, min_8bit_size,
                                        percentile_clipping, block_wise, is_paged, block_size)
        super().__init__(_grouped(params, settings), lr=lr, betas=betas, eps=eps,
                         weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                         foreach=foreach, capturable=capturable, differentiable=differentiable,
                         fused=fused, state_precision=precision)
        self.defaults.update(settings)


@_with_percentile_clipping
class AdaGrad8bit(AdaGrad):
    """:class:`AdaGrad` with 8-bit block-wise state, in ``bitsandbytes.optim.Adagrad8bit``'s
    signature (positional order included; ``lr_decay`` and ``initial_accumulator_value`` may
    be non-zero here); see the module docstring for bitsandbytes' arguments.

    Note:
        bitsandbytes' 8-bit AdaGrad kernel scales the gradient by the percentile-clipping
        factor where it adds it to the sum of squares but not in the parameter update; here
        the rule receives the clipped gradient, as every other optimizer's does.
    """

    hyperparameters = (*AdaGrad.hyperparameters, PERCENTILE_CLIPPING)

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, optim_bits: int = 8, args: Any = None,
                 min_8bit_size: int = 4096, percentile_clipping: int = 100,
                 block_wise: bool = True, is_paged: bool = False, *, block_size: int = 256,
                 maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        precision, settings = _settings("AdaGrad8bit", optim_bits, args, min_8bit_size,
                                        percentile_clipping, block_wise, is_paged, block_size)
        super().__init__(_grouped(params, settings), lr=lr, lr_decay=lr_decay,
                         weight_decay=weight_decay,
                         initial_accumulator_value=initial_accumulator_value, eps=eps,
                         foreach=foreach, maximize=maximize, differentiable=differentiable,
                         fused=fused, state_precision=precision)
        self.defaults.update(settings)


@_with_percentile_clipping
class AdaBelief8bit(AdaBelief):
    """:class:`AdaBelief` with 8-bit block-wise state and bitsandbytes' keyword arguments (see
    the module docstring)."""

    hyperparameters = (*AdaBelief.hyperparameters, PERCENTILE_CLIPPING)

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-3, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-16,
                 weight_decay: float = 0.0, amsgrad: bool = False, weight_decouple: bool = True,
                 fixed_decay: bool = False, rectify: bool = True, degenerated_to_sgd: bool = True,
                 optim_bits: int = 8, args: Any = None, min_8bit_size: int = 4096,
                 percentile_clipping: int = 100, block_wise: bool = True,
                 is_paged: bool = False, block_size: int = 256, maximize: bool = False,
                 fused: bool | None = None) -> None:
        precision, settings = _settings("AdaBelief8bit", optim_bits, args, min_8bit_size,
                                        percentile_clipping, block_wise, is_paged, block_size)
        super().__init__(_grouped(params, settings), lr=lr, betas=betas, eps=eps,
                         weight_decay=weight_decay, amsgrad=amsgrad,
                         weight_decouple=weight_decouple, fixed_decay=fixed_decay,
                         rectify=rectify, degenerated_to_sgd=degenerated_to_sgd,
                         state_precision=precision, maximize=maximize, fused=fused)
        self.defaults.update(settings)


@_with_percentile_clipping
class DiffGrad8bit(DiffGrad):
    """:class:`DiffGrad` with 8-bit block-wise state and bitsandbytes' keyword arguments (see
    the module docstring; with percentile clipping the previous gradient it keeps is the
    clipped one)."""

    hyperparameters = (*DiffGrad.hyperparameters, PERCENTILE_CLIPPING)

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-3, *,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, optim_bits: int = 8, args: Any = None,
                 min_8bit_size: int = 4096, percentile_clipping: int = 100,
                 block_wise: bool = True, is_paged: bool = False, block_size: int = 256,
                 maximize: bool = False, fused: bool | None = None) -> None:
        precision, settings = _settings("DiffGrad8bit", optim_bits, args, min_8bit_size,
                                        percentile_clipping, block_wise, is_paged, block_size)
        super().__init__(_grouped(params, settings), lr=lr, betas=betas, eps=eps,
                         weight_decay=weight_decay, state_precision=precision,
                         maximize=maximize, fused=fused)
        self.defaults.update(settings)


@_with_percentile_clipping
class SophiaG8bit(SophiaG):
    """:class:`SophiaG` with 8-bit block-wise state and bitsandbytes' keyword arguments (see
    the module docstring; percentile clipping clips the gradient of the update, not the
    Gauss-Newton-Bartlett estimate)."""

    hyperparameters = (*SophiaG.hyperparameters, PERCENTILE_CLIPPING)

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-4, *,
                 betas: tuple[float, float] = (0.965, 0.99), rho: float = 0.04,
                 weight_decay: float = 0.1, eps: float = 1e-15, update_period: int = 10,
                 label_grad_clip: float = math.inf, seed: int = 0, optim_bits: int = 8,
                 args: Any = None, min_8bit_size: int = 4096, percentile_clipping: int = 100,
                 block_wise: bool = True, is_paged: bool = False, block_size: int = 256,
                 maximize: bool = False, fused: bool | None = None,
                 process_group: Any = None) -> None:
        precision, settings = _settings("SophiaG8bit", optim_bits, args, min_8bit_size,
                                        percentile_clipping, block_wise, is_paged, block_size)
        super().__init__(_grouped(params, settings), lr=lr, betas=betas, rho=rho,
                         weight_decay=weight_decay, eps=eps, update_period=update_period,
                         label_grad_clip=label_grad_clip, seed=seed, state_precision=precision,
                         maximize=maximize, fused=fused, process_group=process_group)
        self.defaults.update(settings)
