"""What every online learner shares: argument checks and a resumable state.

Non-finite values: a learner refuses a gradient with a NaN or infinite entry (a
``ValueError`` before anything changes), since one such gradient would make every later point
NaN; the environment or the caller decides what to do with it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt.online.domains import Domain, all_finite

__all__ = ["Stateful", "check_gradient", "check_in_domain", "check_nonnegative",
           "check_positive_definite", "check_start", "check_update"]


def check_start(owner: str, domain: Domain, x0: Tensor) -> None:
    """``x0`` is a floating-point point of ``domain``, shape ``(..., d)``."""
    if not isinstance(domain, Domain):
        raise TypeError(f"{owner}: domain must be a Domain (Ball, Box, Simplex, ...), got "
                        f"{show(domain)}")
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        raise TypeError(f"{owner}: x0 must be a floating-point tensor, got {show(x0)}")
    if x0.dim() == 0 or x0.shape[-1] != domain.dim:
        raise ValueError(f"{owner}: x0 must have shape (..., {domain.dim}), got "
                         f"{tuple(x0.shape)}")
    if not bool(domain.contains(x0).all()):
        raise ValueError(f"{owner}: x0 must lie in the domain, got {x0.tolist()}")


def check_gradient(owner: str, gradient: Tensor, like: Tensor, *,
                   finite: bool = True) -> Tensor:
    """``gradient`` has the shape of the learner's points and floating-point entries, finite
    if ``finite`` (else :func:`check_update` checks that); returns it in their dtype."""
    if not isinstance(gradient, Tensor) or gradient.shape != like.shape:
        shape = tuple(gradient.shape) if isinstance(gradient, Tensor) else show(gradient)
        raise ValueError(f"{owner}.update: gradient must have shape {tuple(like.shape)}, got "
                         f"{shape}")
    if not gradient.is_floating_point():
        raise TypeError(f"{owner}.update: gradient must be a floating-point tensor, got dtype "
                        f"{gradient.dtype}")
    if finite and not all_finite(gradient):
        raise _not_finite(owner)
    return gradient.to(like)


def _not_finite(owner: str) -> ValueError:
    return ValueError(f"{owner}.update: gradient must be finite, got a NaN or infinite entry")


def check_update(owner: str, gradient: Tensor, *results: Tensor,
                 too_large: str = "the learner's state would not be finite") -> None:
    """Before an update stores anything: the user's ``gradient`` (as passed to ``update``) is
    finite, and so are the ``results`` the update computed from it (its new state, the point it
    projects), which a finite but huge gradient can overflow.

    The ``results`` must include one that is not finite wherever the gradient is not (the new
    sum of squared errors does), so that the usual case costs one host synchronization per
    result (:func:`~stochopt.online.domains.all_finite`'s sums); only when a sum is not finite
    are the tensors checked one by one, to tell a NaN or infinite gradient from one too large.
    """
    total = 0.0
    for r in results:
        total += r.sum().item()
    if math.isfinite(total):
        return
    if not all_finite(gradient):
        raise _not_finite(owner)
    if not all(all_finite(r) for r in results):
        raise ValueError(f"{owner}.update: gradient too large: {too_large}")


class Stateful:
    """A learner whose state is the round ``t`` and the tensors named in ``_state_names``."""

    _state_names: tuple[str, ...] = ()
    t: int

    def state_dict(self) -> dict[str, Any]:
        """The round and the state tensors (copies)."""
        return {"t": self.t, **{k: getattr(self, k).clone() for k in self._state_names}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` of a learner built with the same arguments.

        Everything is checked before anything changes: the keys, the round (an integer
        >= 1), each tensor's type, shape, dtype and finiteness, and what the learner needs of
        its state (:meth:`_check_state`: points in the domain, a non-negative variation, ...).
        """
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping):
            raise TypeError(f"{owner}: state must be a mapping, got {show(state)}")
        expected = {"t", *self._state_names}
        if set(state) != expected:
            raise ValueError(f"{owner}: expected keys {sorted(expected)}, got "
                             f"{sorted(map(str, state))}")
        t = state["t"]
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 1:
            raise ValueError(f"{owner}: t must be an integer >= 1, got {show(t)}")
        for k in self._state_names:
            _check_entry(owner, k, state[k], getattr(self, k))
        self._check_state(owner, state)
        self.t = int(t)
        for k in self._state_names:
            setattr(self, k, state[k].detach().clone().to(getattr(self, k)))

    def _check_state(self, owner: str, state: Mapping[str, Any]) -> None:
        """What a learner needs of a state whose entries have the right shapes (override)."""


def _check_entry(owner: str, name: str, value: Any, current: Tensor) -> None:
    """A state tensor: a tensor of ``current``'s shape and dtype, with finite entries."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{owner}: {name} must be a tensor, got {show(value)}")
    if value.shape != current.shape:
        raise ValueError(f"{owner}: {name} must have shape {tuple(current.shape)}, got "
                         f"{tuple(value.shape)}")
    if value.dtype != current.dtype:
        raise TypeError(f"{owner}: {name} must have dtype {current.dtype}, got {value.dtype}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{owner}: {name} must be finite, got a NaN or infinite entry")


def check_in_domain(owner: str, name: str, domain: Domain, x: Tensor) -> None:
    """A state's point lies in the domain (to the tolerance of ``contains``)."""
    if not bool(domain.contains(x).all()):
        raise ValueError(f"{owner}: {name} must lie in the domain")


def check_nonnegative(owner: str, name: str, x: Tensor) -> None:
    """A state's sum of squares is >= 0."""
    if not bool((x >= 0).all()):
        raise ValueError(f"{owner}: {name} must be >= 0 (a sum of squared norms), got "
                         f"{x.tolist() if x.numel() <= 8 else show(x)}")


def check_positive_definite(owner: str, name: str, A: Tensor) -> None:
    """A state's matrix (batch) is symmetric positive definite."""
    scale = float(A.abs().amax()) if A.numel() else 0.0
    symmetric = A.numel() == 0 or float((A - A.mT).abs().amax()) <= 1e-10 * scale
    if not symmetric or bool(torch.linalg.cholesky_ex(A).info.any()) or math.isnan(scale):
        raise ValueError(f"{owner}: {name} must be symmetric positive definite")
