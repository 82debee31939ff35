"""Hutchinson's estimator of the Hessian diagonal, with probes from an explicit generator."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stochopt._checks import check_int, show
from stochopt.curvature._args import check_generator, check_requires_grad, check_tensors
from stochopt.curvature.hvp import hvp

__all__ = ["gaussian_like", "hutchinson_diagonal", "probe_like", "rademacher_like"]

DISTRIBUTIONS = ("rademacher", "gaussian")


def _draw(owner: str, t: Tensor, generator: torch.Generator, fn) -> Tensor:
    """Draw on the generator's device, then move (CPU generators serve any device)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{owner}: t must be a tensor, got {show(t)}")
    check_generator(owner, generator)
    return fn(t.shape, generator, generator.device).to(device=t.device, dtype=t.dtype)


def rademacher_like(t: Tensor, generator: torch.Generator) -> Tensor:
    """Independent signs: each entry is -1 or +1 with probability 1/2."""
    return _draw("rademacher_like", t, generator,
                 lambda s, g, d: torch.randint(0, 2, s, generator=g, device=d) * 2 - 1)


def gaussian_like(t: Tensor, generator: torch.Generator) -> Tensor:
    """Independent standard normal entries."""
    return _draw("gaussian_like", t, generator,
                 lambda s, g, d: torch.randn(s, generator=g, device=d, dtype=torch.float64))


def probe_like(t: Tensor, generator: torch.Generator, distribution: str) -> Tensor:
    """A probe shaped like ``t`` from ``distribution`` (``"rademacher"`` or ``"gaussian"``)."""
    if distribution == "rademacher":
        return rademacher_like(t, generator)
    if distribution == "gaussian":
        return gaussian_like(t, generator)
    raise ValueError(f"probe_like: distribution must be one of {DISTRIBUTIONS}, got "
                     f"{distribution!r}")


def hutchinson_diagonal(grads: Sequence[Tensor], params: Sequence[Tensor], *,
                        generator: torch.Generator, distribution: str = "rademacher",
                        samples: int = 1, retain_graph: bool = False) -> list[Tensor]:
    r"""Unbiased estimate of :math:`\operatorname{diag}(H)`: the mean of :math:`z \odot Hz`
    over ``samples`` probes :math:`z` with :math:`E[z z^\top] = I`.

    Args:
        grads: gradients with their graph (``backward(create_graph=True)``).
        params: the parameters, shapes ``(*s_i)``.
        generator: the source of the probes (its state advances).
        distribution: ``"rademacher"`` (±1, the lowest variance for a given Hessian) or
            ``"gaussian"``.
        samples: number of probes averaged.
        retain_graph: keep the gradient graph after the last product (default False).

    Returns:
        One estimate per parameter, shape ``(*s_i)`` (detached).

    Raises:
        TypeError, ValueError: a bad argument (checked before any probe is drawn).

    References:
        Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
        smoothing splines", 1989; Bekas, Kokiopoulou & Saad, "An estimator for the diagonal
        of a matrix", 2007.
    """
    owner = "hutchinson_diagonal"
    samples = check_int(owner, "samples", samples, low=1)
    check_generator(owner, generator)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"{owner}: distribution must be one of {DISTRIBUTIONS}, got "
                         f"{distribution!r}")
    check_tensors(owner, params, "params", grads=grads)
    check_requires_grad(owner, params)
    if not any(g.grad_fn is not None for g in grads):
        raise ValueError(f"{owner}: the gradients have no graph; compute them with "
                         f"loss.backward(create_graph=True) or torch.autograd.grad(..., "
                         f"create_graph=True)")
    total = [torch.zeros_like(p) for p in params]
    for i in range(samples):
        probes = [probe_like(p, generator, distribution) for p in params]
        last = i == samples - 1
        products = hvp(grads, params, probes, retain_graph=retain_graph or not last)
        total = [acc + z * hz.detach() for acc, z, hz in zip(total, probes, products)]
    return [acc / samples for acc in total]
