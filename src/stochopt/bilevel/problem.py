r"""Bilevel problems and their stochastic oracles.

.. math::
    \min_x \; \Phi(x) = f(x, y^*(x)) \quad \text{s.t.} \quad
    y^*(x) = \arg\min_y g(x, y)

A problem supplies the two objectives on a sampled batch; every method here reads it only
through the oracles below (first derivatives, and for the implicit methods Hessian- and
Jacobian-vector products of :math:`g`), which autograd derives and :attr:`calls` counts, so
methods compare by oracle cost. ``x`` and ``y`` are flat float tensors; a problem built on a
``torch.nn.Module`` maps them to its parameters (see :class:`FlatParameters`). A multi-block
problem has ``m`` lower levels :math:`g_i(x, y_i)` with their own upper terms
:math:`f_i(x, y_i)`, :math:`\Phi = \frac1m \sum_i f_i(x, y_i^*(x))`; ``y`` is then ``(m, d_y)``
and the oracles take a block index.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["BilevelProblem", "FlatParameters", "MultiBlockProblem"]


class BilevelProblem:
    """Upper objective ``f``, lower objective ``g`` and batch sampling; oracles by autograd.

    Subclasses write :meth:`f`, :meth:`g` and :meth:`sample`; ``batch=None`` means the exact
    (full) objective where a problem has one.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()  # oracle evaluations by kind

    # ------------------------------------------------------------------ what a problem writes
    def f(self, x: Tensor, y: Tensor, batch: Any = None) -> Tensor:
        raise NotImplementedError

    def g(self, x: Tensor, y: Tensor, batch: Any = None) -> Tensor:
        raise NotImplementedError

    def sample(self, level: str, generator: torch.Generator, size: int | None = None) -> Any:
        """A batch for the ``"upper"`` or ``"lower"`` objective (``size`` samples)."""
        return None

    # ------------------------------------------------------------------------- oracles
    def grad_f(self, x: Tensor, y: Tensor, batch: Any = None) -> tuple[Tensor, Tensor]:
        """:math:`(\\nabla_x f, \\nabla_y f)` on ``batch``."""
        self.calls["grad_f"] += 1
        return _grads(lambda a, b: self.f(a, b, batch), x, y)

    def grad_g(self, x: Tensor, y: Tensor, batch: Any = None) -> tuple[Tensor, Tensor]:
        """:math:`(\\nabla_x g, \\nabla_y g)` on ``batch``."""
        self.calls["grad_g"] += 1
        return _grads(lambda a, b: self.g(a, b, batch), x, y)

    def grad_y_g(self, x: Tensor, y: Tensor, batch: Any = None) -> Tensor:
        """:math:`\\nabla_y g` alone (one gradient oracle)."""
        self.calls["grad_g"] += 1
        y = y.detach().requires_grad_()
        with torch.enable_grad():
            return torch.autograd.grad(self.g(x.detach(), y, batch), y)[0]

    def hvp_jvp_g(self, x: Tensor, y: Tensor, v: Tensor,
                  batch: Any = None) -> tuple[Tensor, Tensor]:
        """:math:`(\\nabla^2_{yy} g\\, v, \\; \\nabla^2_{xy} g\\, v)` on one batch: the
        Hessian- and the cross-Jacobian-vector product, by one double backward."""
        self.calls["hvp"] += 1
        x, y = x.detach().requires_grad_(), y.detach().requires_grad_()
        with torch.enable_grad():
            gy = torch.autograd.grad(self.g(x, y, batch), y, create_graph=True)[0]
            hy, hx = torch.autograd.grad((gy * v.detach()).sum(), (y, x), allow_unused=True)
        return _zero_if_none(hy, y), _zero_if_none(hx, x)

    def hessian_yy_g(self, x: Tensor, y: Tensor, batch: Any = None) -> Tensor:
        """The full :math:`\\nabla^2_{yy} g` (small lower levels only), ``(d_y, d_y)``."""
        self.calls["hessian"] += 1
        return torch.autograd.functional.hessian(lambda b: self.g(x.detach(), b, batch),
                                                 y.detach())

    def jacobian_xy_g(self, x: Tensor, y: Tensor, batch: Any = None) -> Tensor:
        """The full :math:`\\nabla^2_{xy} g = \\partial_x \\nabla_y g`, ``(d_x, d_y)``."""
        self.calls["jacobian"] += 1

        def grad_y(a: Tensor) -> Tensor:
            b = y.detach().requires_grad_()
            with torch.enable_grad():
                return torch.autograd.grad(self.g(a, b, batch), b, create_graph=True)[0]

        return torch.autograd.functional.jacobian(grad_y, x.detach()).T


class MultiBlockProblem(BilevelProblem):
    r"""``m`` lower-level problems sharing ``x``: ``f(x, y, batch)`` and ``g`` take one block's
    ``y_i`` and a batch that names the block (``batch.block``), so every oracle above is the
    oracle of one block. :math:`\Phi(x) = \frac1m \sum_i f_i(x, y_i^*(x))`."""

    m: int

    def sample_block(self, block: int, level: str, generator: torch.Generator,
                     size: int | None = None) -> Any:
        raise NotImplementedError


class FlatParameters:
    """A module's parameters as one flat vector: ``call(flat, *inputs)`` runs the module with
    the parameters the vector holds (``torch.func.functional_call``), so a module's weights can
    be a bilevel variable."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.names = [name for name, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.sizes = [math.prod(s) for s in self.shapes]

    def flatten(self, tensors: Iterable[Tensor] | None = None) -> Tensor:
        tensors = self.module.parameters() if tensors is None else tensors
        return torch.cat([t.detach().reshape(-1) for t in tensors])

    def call(self, flat: Tensor, *inputs: Any) -> Any:
        parts = flat.split(self.sizes)
        params = {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes)}
        return torch.func.functional_call(self.module, params, inputs)


def _grads(fn: Any, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = x.detach().requires_grad_(), y.detach().requires_grad_()
    with torch.enable_grad():
        gx, gy = torch.autograd.grad(fn(x, y), (x, y), allow_unused=True)
    return _zero_if_none(gx, x), _zero_if_none(gy, y)


def _zero_if_none(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g.detach()
