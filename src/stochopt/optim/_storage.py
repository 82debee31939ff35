"""How an optimizer's state tensors are kept between steps (the engine's storage seam).

The engine never touches state tensors directly while stepping: it asks a storage to
``load`` each one into compute precision, hands the values to the update rule, and asks the
storage to ``store`` the results. A storage may therefore keep state in another dtype, in
quantized blocks or on disk without any change to an optimizer's rule; all of its methods are
traceable by ``torch.compile``, so load, rule and store fuse into one pass on the fused path.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

__all__ = ["NativeStorage", "StateStorage", "compute_precision"]

STEP = "step"


def compute_precision(t: Tensor) -> Tensor:
    """``t`` in the precision rules compute in: at least float32 (half types are upcast)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class StateStorage(Protocol):
    """The interface between the engine and where state lives."""

    def create(self, state: dict[str, Tensor], name: str, value: Tensor) -> None:
        """Keep ``value`` (the rule's initial state) under ``name`` in ``state``."""

    def names(self, state: dict[str, Tensor]) -> list[str]:
        """The rule's state names held in ``state``, in creation order."""
        ...

    def load(self, state: dict[str, Tensor], name: str) -> Tensor:
        """The state ``name`` in compute precision, shaped as the rule created it."""
        ...

    def store(self, state: dict[str, Tensor], name: str, value: Tensor) -> None:
        """Write the rule's new value of ``name`` back into ``state``."""


class NativeStorage:
    """State kept as plain tensors of the parameter's dtype (the default)."""

    def create(self, state: dict[str, Tensor], name: str, value: Tensor) -> None:
        state[name] = value

    def names(self, state: dict[str, Tensor]) -> list[str]:
        return [name for name in state if name != STEP]

    def load(self, state: dict[str, Tensor], name: str) -> Tensor:
        return compute_precision(state[name])

    def store(self, state: dict[str, Tensor], name: str, value: Tensor) -> None:
        state[name].copy_(value)
