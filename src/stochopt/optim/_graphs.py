"""What a curvature step needs from the model's autograd graph, and the forward that gives it.

Hutchinson estimators differentiate the gradient's graph (a double backward); the
Gauss-Newton-Bartlett estimator takes two backward passes through the logits' graph (the
first keeps it). Some graphs allow neither, and torch says so only deep inside the step:

* the fused ``scaled_dot_product_attention`` kernels (flash, memory-efficient, cuDNN, the CPU
  flash kernel ``nn.TransformerEncoderLayer`` and ``nn.MultiheadAttention`` use) have no
  double backward; the math kernel has one;
* ``torch.compile``'d code (aot_autograd's ``CompiledFunction``) has no double backward;
* a compiled graph whose backward was first run without ``retain_graph`` (its default
  *donated buffers*: saved activations the backward overwrites) cannot be run backward twice.

:func:`curvature_forward` runs a forward where torch allows what the estimator needs;
:func:`check_twice_differentiable`, :func:`check_gradient_graphs` and :func:`check_retainable`
find the rest before anything changes and name the fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from stochopt.errors import UnsupportedError

__all__ = ["check_gradient_graphs", "check_retainable", "check_twice_differentiable",
           "curvature_forward"]

#: autograd nodes of the fused attention kernels, whose backward has no derivative
FUSED_ATTENTION = frozenset({
    "ScaledDotProductFlashAttentionForCpuBackward0", "ScaledDotProductFlashAttentionBackward0",
    "ScaledDotProductEfficientAttentionBackward0", "ScaledDotProductCudnnAttentionBackward0",
    "ScaledDotProductFusedAttentionOverrideableBackward0", "FlashAttentionBackward0",
    "EfficientAttentionBackward0", "CudnnAttentionBackward0",
})
#: aot_autograd's node for a compiled region (torch.compile), and its backward's node
COMPILED = "CompiledFunctionBackward"
COMPILED_BACKWARD = "CompiledFunctionBackwardBackward"
#: nodes a double backward stops at: an operation without a derivative of its backward
NOT_DIFFERENTIABLE = frozenset({"NotImplemented", "Error", "DelayedError"})

FIX = ("run the forward of curvature steps under `with opt.curvature_forward():` (math "
       "attention kernel, compiled code run eagerly), or call loss.backward() and give "
       "estimates of your own with opt.set_curvature(...), or use SophiaG, whose estimator "
       "needs no double backward")


def _nodes(roots: Iterable[Any]) -> Iterator[Any]:
    """Every autograd node reachable from ``roots`` (``grad_fn``s; ``None`` skipped), once."""
    seen: set[Any] = set()
    stack = [r for r in roots if r is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        yield node
        stack.extend(n for n, _ in node.next_functions if n is not None and n not in seen)


def _name(node: Any) -> str:
    return type(node).__name__


def check_twice_differentiable(owner: str, loss: Tensor) -> None:
    """Before ``loss.backward(create_graph=True)``: no fused attention kernel and no compiled
    region in ``loss``'s graph (neither has a double backward).

    Raises:
        UnsupportedError: naming the node and the fix.
    """
    for node in _nodes([loss.grad_fn]):
        name = _name(node)
        if name in FUSED_ATTENTION:
            raise UnsupportedError(
                f"{owner}: this curvature step differentiates the gradient again (Hutchinson "
                f"estimator), but the loss's graph runs a fused scaled_dot_product_attention "
                f"kernel ({name}; nn.TransformerEncoderLayer and nn.MultiheadAttention use "
                f"them), which has no double backward; {FIX}")
        if name == COMPILED:
            raise UnsupportedError(
                f"{owner}: this curvature step differentiates the gradient again (Hutchinson "
                f"estimator), but the loss's graph runs torch.compile'd code, and "
                f"aot_autograd has no double backward; {FIX}. Calling the uncompiled module "
                f"(model._orig_mod for torch.compile(model)) on curvature steps works too")


def check_gradient_graphs(owner: str, grads: Iterable[Tensor]) -> None:
    """Before the Hessian-vector products: no node in the gradients' graphs that a double
    backward cannot pass (an operation whose backward has no derivative).

    Raises:
        UnsupportedError: naming the node and the fix.
    """
    for node in _nodes(g.grad_fn for g in grads):
        name = _name(node)
        if name in NOT_DIFFERENTIABLE or name == COMPILED_BACKWARD:
            what = ("torch.compile'd code (aot_autograd has no double backward)"
                    if name == COMPILED_BACKWARD else
                    f"an operation whose backward has no derivative ({node.name()}: e.g. "
                    f"a fused attention kernel or a once-differentiable custom function)")
            raise UnsupportedError(
                f"{owner}: the curvature estimate differentiates the gradients again "
                f"(Hutchinson estimator), but their graph passes through {what}; {FIX}")


def check_retainable(owner: str, logits: Tensor) -> None:
    """Before two backward passes through ``logits``' graph (the first keeping it): no
    compiled region with donated buffers in it. Such a region fails on the first curvature
    step whose graph was compiled on another step (a new shape, a recompile), so it is
    refused at once, on the first.

    Raises:
        UnsupportedError: naming the fix.
    """
    if not torch._functorch.config.donated_buffer:
        return
    for node in _nodes([logits.grad_fn]):
        if _name(node) != COMPILED:
            continue
        metadata = getattr(getattr(node, "_forward_cls", None), "metadata", None)
        if getattr(metadata, "bw_donated_idxs", True):  # unknown: assume donated
            raise UnsupportedError(
                f"{owner}: the Gauss-Newton-Bartlett estimate takes a second backward pass "
                f"through the logits' graph, which runs torch.compile'd code compiled with "
                f"donated buffers (torch._functorch.config.donated_buffer, on by default): "
                f"any such graph whose backward first runs on an ordinary step (a new input "
                f"shape, a recompile) fails on the next curvature step. Run the forward "
                f"of curvature steps under `with opt.curvature_forward():` (compiled code "
                f"then runs eagerly on them), or set "
                f"torch._functorch.config.donated_buffer = False before the model first "
                f"runs (it then stays compiled on curvature steps)")


@contextlib.contextmanager
def curvature_forward(estimator: str) -> Iterator[None]:
    """A forward pass whose graph the ``estimator`` (``"hutchinson"`` or ``"gnb"``) can use:
    compiled code runs eagerly (``torch.compiler.set_stance("force_eager")``; for ``"gnb"``
    only while compiled graphs donate buffers), and, for ``"hutchinson"``, attention on the
    math kernel (``sdpa_kernel(SDPBackend.MATH)``)."""
    with contextlib.ExitStack() as stack:
        if estimator == "hutchinson" or torch._functorch.config.donated_buffer:
            stack.enter_context(torch.compiler.set_stance("force_eager"))
        if estimator == "hutchinson":
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        yield
