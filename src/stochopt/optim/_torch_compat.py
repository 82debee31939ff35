"""State dicts across ``torch.optim`` and stochopt, for optimizers of the same rule.

Into stochopt: a ``torch.optim.AdamW``, ``Adam`` (weight decay 0, or decoupled) or ``Adagrad``
state dict loads as it is with :meth:`~stochopt.optim.ElementwiseOptimizer.load_state_dict`
(torch's flags are dropped, and the state takes the loading optimizer's precision).

Out of stochopt: :func:`to_torch_state_dict` writes an optimizer's state in torch's layout
(8-bit or bf16 state as float32 values, torch's group flags, no engine settings), which
``torch.optim``'s ``load_state_dict`` accepts and continues the same trajectory from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from stochopt._checks import show
from stochopt.optim._storage import ABSMAX, STEP, StateStorage
from stochopt.optim._validate import ENGINE_KEYS

if TYPE_CHECKING:
    from stochopt.optim._engine import ElementwiseOptimizer

__all__ = ["to_torch_state_dict"]

#: the implementation flags torch's optimizers keep in their param groups
_FLAGS = ("foreach", "fused", "capturable", "differentiable", "decoupled_weight_decay")
#: the 8-bit classes' percentile-clipping history (``eightbit.HISTORY``), which torch has no use for
_CLIP_HISTORY = "gnorm_vec"


def to_torch_state_dict(optimizer: ElementwiseOptimizer) -> dict[str, Any]:
    """``optimizer``'s state dict as its ``torch.optim`` twin saves one (``AdamW`` and
    ``AdamW8bit`` as ``torch.optim.AdamW``, ``AdaGrad`` and ``AdaGrad8bit`` as
    ``torch.optim.Adagrad``), for that optimizer's ``load_state_dict``.

    State kept in 8 bits is dequantized and bf16 state upcast, both to float32 (torch then
    casts it to each parameter's dtype); the step count stays a float32 0-d tensor. The param
    groups keep the twin's hyperparameters (and any key not stochopt's, e.g. a scheduler's
    ``initial_lr``), lose the settings the twin has no use for (``state_precision``,
    ``block_size``, ``min_8bit_size``, and those of an 8-bit class such as
    ``percentile_clipping``, which the torch optimizer does not apply) and get the twin's
    implementation flags at torch's defaults (``foreach``, ``fused``, ...; an AdamW group says
    ``decoupled_weight_decay=True``, so it loads into ``torch.optim.Adam`` as the same rule
    too). Offloaded state is read from disk.

    Example:
        >>> from stochopt.optim import AdamW8bit
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = AdamW8bit(model.parameters(), lr=1e-2)
        >>> model(torch.randn(8, 4)).square().mean().backward()
        >>> opt.step()
        >>> twin = torch.optim.AdamW(model.parameters(), lr=1e-2)
        >>> twin.load_state_dict(to_torch_state_dict(opt))

    Raises:
        TypeError: ``optimizer`` is not a stochopt optimizer, or has no ``torch.optim`` twin.
    """
    from stochopt.optim._engine import ElementwiseOptimizer

    owner = "to_torch_state_dict"
    if not isinstance(optimizer, ElementwiseOptimizer):
        raise TypeError(f"{owner}: optimizer must be a stochopt optimizer, got {show(optimizer)}")
    twin = getattr(type(optimizer), "torch_twin", None)
    if twin is None:
        raise TypeError(f"{owner}: {type(optimizer).__name__} has no torch.optim twin (an "
                        f"optimizer of the same rule); AdamW, AdaGrad and their 8-bit variants "
                        f"have one")
    defaults = getattr(torch.optim, twin)([torch.zeros(1, requires_grad=True)]).defaults
    flags = {k: v for k, v in defaults.items() if k in _FLAGS}
    ours = {spec.name for spec in optimizer.hyperparameters} | set(ENGINE_KEYS)
    saved = optimizer.state_dict()
    groups = [{**{k: v for k, v in group.items() if k not in ours or k in defaults}, **flags}
              for group in saved["param_groups"]]
    blocks = {index: group["block_size"] for group in saved["param_groups"]
              for index in group["params"]}
    state = {index: _torch_state(optimizer, entry, blocks[index])
             for index, entry in saved["state"].items()}
    return {"state": state, "param_groups": groups}


def _torch_state(optimizer: ElementwiseOptimizer, entry: dict[str, Any],
                 block_size: int) -> dict[str, Any]:
    """One parameter's state with every tensor a float32 value (8-bit codes dequantized),
    without the percentile-clipping history."""
    storage = StateStorage(block_size, optimizer.nonnegative_states)
    out: dict[str, Any] = {}
    for name, value in entry.items():
        if name in (STEP, _CLIP_HISTORY) or name.endswith(ABSMAX):
            if name == STEP:
                out[STEP] = value.detach().clone().to(torch.float32)
            continue
        if storage.is_quantized(entry, name):
            out[name] = storage.load(entry, name)
        elif value.dtype in (torch.bfloat16, torch.float16):
            out[name] = value.detach().to(torch.float32)
        else:
            out[name] = value.detach().clone()
    return out
