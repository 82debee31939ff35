"""What every online learner shares: argument checks and a resumable state."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from stochopt.online.domains import Domain

__all__ = ["Stateful", "check_gradient", "check_start"]


def check_start(owner: str, domain: Domain, x0: Tensor) -> None:
    """``x0`` is a floating-point point of ``domain``, shape ``(..., d)``."""
    if not isinstance(domain, Domain):
        raise TypeError(f"{owner}: domain must be a Domain (Ball, Box, Simplex, ...), got "
                        f"{domain!r}")
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        raise TypeError(f"{owner}: x0 must be a floating-point tensor, got {x0!r}")
    if x0.dim() == 0 or x0.shape[-1] != domain.dim:
        raise ValueError(f"{owner}: x0 must have shape (..., {domain.dim}), got "
                         f"{tuple(x0.shape)}")
    if not bool(domain.contains(x0).all()):
        raise ValueError(f"{owner}: x0 must lie in the domain, got {x0.tolist()}")


def check_gradient(owner: str, gradient: Tensor, like: Tensor) -> None:
    """``gradient`` has the shape of the learner's points."""
    if not isinstance(gradient, Tensor) or gradient.shape != like.shape:
        shape = tuple(gradient.shape) if isinstance(gradient, Tensor) else gradient
        raise ValueError(f"{owner}.update: gradient must have shape {tuple(like.shape)}, got "
                         f"{shape}")


class Stateful:
    """A learner whose state is the round ``t`` and the tensors named in ``_state_names``."""

    _state_names: tuple[str, ...] = ()
    t: int

    def state_dict(self) -> dict[str, Any]:
        """The round and the state tensors (copies)."""
        return {"t": self.t, **{k: getattr(self, k).clone() for k in self._state_names}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a learner built with the same arguments."""
        owner = type(self).__name__
        expected = {"t", *self._state_names}
        if set(state) != expected:
            raise ValueError(f"{owner}.load_state_dict: expected keys {sorted(expected)}, got "
                             f"{sorted(state)}")
        for k in self._state_names:
            if state[k].shape != getattr(self, k).shape:
                raise ValueError(f"{owner}.load_state_dict: {k} must have shape "
                                 f"{tuple(getattr(self, k).shape)}, got {tuple(state[k].shape)}")
        self.t = int(state["t"])
        for k in self._state_names:
            setattr(self, k, state[k].clone().to(getattr(self, k)))
