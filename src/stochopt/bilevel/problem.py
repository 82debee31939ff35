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

from stochopt._checks import check_int, show

__all__ = ["BilevelProblem", "FlatParameters", "MultiBlockProblem", "check_batch",
           "check_sample"]

LEVELS = ("upper", "lower")
_UNSET: Any = object()  # an argument not given (None is a wrong one)


def check_sample(owner: str, level: str, generator: torch.Generator, size: int | None, *,
                 levels: tuple[str, ...] = LEVELS) -> None:
    """A sampler's arguments: ``level`` one of ``levels``, ``generator`` a
    ``torch.Generator``, ``size`` an integer >= 1 or None."""
    if level not in levels:
        raise ValueError(f"{owner}: level must be one of {levels}, got {show(level)}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be a torch.Generator, got {show(generator)}")
    if size is not None:
        check_int(owner, "size", size, low=1)


def check_batch(problem: BilevelProblem, where: str, x: Tensor, y: Tensor, batch: object,
                kind: type) -> None:
    """An objective's arguments: points of the problem's dimensions and a batch that is
    None or of the ``kind`` its ``sample`` returns."""
    problem.check_point(where, x, y)
    if batch is not None and not isinstance(batch, kind):
        raise TypeError(f"{type(problem).__name__}.{where}: batch must be None or come from "
                        f"sample, got {show(batch)}")


class BilevelProblem:
    """Upper objective ``f``, lower objective ``g`` and batch sampling; oracles by autograd.

    Subclasses write :meth:`f`, :meth:`g` and :meth:`sample`; ``batch=None`` means the exact
    (full) objective where a problem has one. A problem that knows its dimensions and dtype
    sets :attr:`dim_x`, :attr:`dim_y` and :attr:`dtype`: the oracles and the solvers then check
    points against them (a ``ValueError`` naming the argument and the expected shape).
    """

    #: the dimension of ``x``, where the problem fixes it
    dim_x: int | None = None
    #: the dimension of ``y`` (of one block's ``y_i`` for a multi-block problem)
    dim_y: int | None = None
    #: the dtype of the problem's data, where it has one
    dtype: torch.dtype | None = None

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
        self.check_point("grad_f", x, y)
        self.calls["grad_f"] += 1
        return _grads(lambda a, b: self.value("f", a, b, batch), x, y)

    def grad_g(self, x: Tensor, y: Tensor, batch: Any = None) -> tuple[Tensor, Tensor]:
        """:math:`(\\nabla_x g, \\nabla_y g)` on ``batch``."""
        self.check_point("grad_g", x, y)
        self.calls["grad_g"] += 1
        return _grads(lambda a, b: self.value("g", a, b, batch), x, y)

    def grad_y_g(self, x: Tensor, y: Tensor, batch: Any = None) -> Tensor:
        """:math:`\\nabla_y g` alone (one gradient oracle)."""
        self.check_point("grad_y_g", x, y)
        self.calls["grad_g"] += 1
        y = y.detach().requires_grad_()
        with torch.enable_grad():
            return torch.autograd.grad(self.value("g", x.detach(), y, batch), y)[0]

    def hvp_jvp_g(self, x: Tensor, y: Tensor, v: Tensor,
                  batch: Any = None) -> tuple[Tensor, Tensor]:
        """:math:`(\\nabla^2_{yy} g\\, v, \\; \\nabla^2_{xy} g\\, v)` on one batch: the
        Hessian- and the cross-Jacobian-vector product, by one double backward."""
        self.check_point("hvp_jvp_g", x, y)
        if not isinstance(v, Tensor) or v.shape != y.shape:
            raise ValueError(f"{type(self).__name__}.hvp_jvp_g: v must have the shape of y, "
                             f"{tuple(y.shape)}, got {show(v)}")
        self.calls["hvp"] += 1
        x, y = x.detach().requires_grad_(), y.detach().requires_grad_()
        with torch.enable_grad():
            gy = torch.autograd.grad(self.value("g", x, y, batch), y, create_graph=True)[0]
            hy, hx = torch.autograd.grad((gy * v.detach()).sum(), (y, x), allow_unused=True)
        return _zero_if_none(hy, y), _zero_if_none(hx, x)

    def hessian_yy_g(self, x: Tensor, y: Tensor, batch: Any = None) -> Tensor:
        """The full :math:`\\nabla^2_{yy} g` (small lower levels only), ``(d_y, d_y)``."""
        self.check_point("hessian_yy_g", x, y)
        self.calls["hessian"] += 1
        x = x.detach()
        return torch.autograd.functional.hessian(lambda b: self.value("g", x, b, batch),
                                                 y.detach())

    def jacobian_xy_g(self, x: Tensor, y: Tensor, batch: Any = None) -> Tensor:
        """The full :math:`\\nabla^2_{xy} g = \\partial_x \\nabla_y g`, ``(d_x, d_y)``."""
        self.check_point("jacobian_xy_g", x, y)
        self.calls["jacobian"] += 1

        def grad_y(a: Tensor) -> Tensor:
            b = y.detach().requires_grad_()
            with torch.enable_grad():
                value = self.value("g", a, b, batch)
                return torch.autograd.grad(value, b, create_graph=True)[0]

        return torch.autograd.functional.jacobian(grad_y, x.detach()).T

    # ------------------------------------------------------------------------- checks
    def value(self, which: str, x: Tensor, y: Tensor, batch: Any = None) -> Tensor:
        """``f`` or ``g`` (``which``) at ``(x, y)`` on ``batch``, checked to be one value
        (the oracles differentiate it)."""
        out = (self.f if which == "f" else self.g)(x, y, batch)
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise ValueError(f"{type(self).__name__}.{which} must return one value (a 0-d "
                             f"tensor), got {show(out)}")
        return out

    def check_point(self, where: str, x: Any = _UNSET, y: Any = _UNSET) -> None:
        """``x`` and ``y``, those given, are 1-d tensors of the problem's dimensions: a
        ``ValueError`` (``TypeError`` for a non-tensor) naming ``where`` otherwise."""
        owner = f"{type(self).__name__}.{where}"
        for name, value, dim in (("x", x, self.dim_x), ("y", y, self.dim_y)):
            if value is _UNSET:
                continue
            if not isinstance(value, Tensor):
                raise TypeError(f"{owner}: {name} must be a tensor, got {show(value)}")
            if value.ndim != 1 or (dim is not None and value.shape[0] != dim):
                want = "d" if dim is None else str(dim)
                raise ValueError(f"{owner}: {name} must have shape ({want},), got "
                                 f"{tuple(value.shape)}")


class MultiBlockProblem(BilevelProblem):
    r"""``m`` lower-level problems sharing ``x``: ``f(x, y, batch)`` and ``g`` take one block's
    ``y_i`` and a batch that names the block (``batch.block``), so every oracle above is the
    oracle of one block. :math:`\Phi(x) = \frac1m \sum_i f_i(x, y_i^*(x))`."""

    m: int

    def check_block(self, where: str, block: int) -> None:
        """``block`` is an integer in ``[0, m)``."""
        check_int(f"{type(self).__name__}.{where}", "block", block, low=0, high=self.m - 1)

    def sample_block(self, block: int, level: str, generator: torch.Generator,
                     size: int | None = None) -> Any:
        raise NotImplementedError


class FlatParameters:
    """A module's parameters as one flat vector: ``call(flat, *inputs)`` runs the module with
    the parameters the vector holds (``torch.func.functional_call``), so a module's weights can
    be a bilevel variable."""

    def __init__(self, module: nn.Module) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"FlatParameters: module must be a torch.nn.Module, got "
                            f"{show(module)}")
        self.module = module
        self.names = [name for name, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.sizes = [math.prod(s) for s in self.shapes]

    def flatten(self, tensors: Iterable[Tensor] | None = None) -> Tensor:
        tensors = self.module.parameters() if tensors is None else tensors
        return torch.cat([t.detach().reshape(-1) for t in tensors])

    @property
    def size(self) -> int:
        """The length of the flat vector."""
        return sum(self.sizes)

    def call(self, flat: Tensor, *inputs: Any) -> Any:
        if not isinstance(flat, Tensor) or flat.shape != (self.size,):
            raise ValueError(f"FlatParameters.call: flat must have shape ({self.size},), got "
                             f"{show(flat)}")
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
