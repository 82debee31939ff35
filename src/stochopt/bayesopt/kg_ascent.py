"""The knowledge gradient over a continuous domain, maximized by multistart stochastic gradient
ascent with the envelope-theorem gradient estimator (Frazier 2018, Algs. 3 and 4; Wu & Frazier,
2016). Minimization form; everything in the unit cube."""

from __future__ import annotations

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real
from stochopt.bayesopt.acquisition.knowledge_gradient import knowledge_gradient_batch
from stochopt.bayesopt.context import Context
from stochopt.bayesopt.optimize import sobol

__all__ = ["continuous_knowledge_gradient", "next_mean_minimizers", "stochastic_gradient"]


def _posterior_mean_after(ctx: Context, Xs: Tensor, x: Tensor, z: Tensor) -> Tensor:
    r""":math:`\mu_{n+1}(x'_j; x, Z_j) = \mu_n(x'_j) + \tilde\sigma(x'_j, x) Z_j` for each
    pair (``Xs``: ``(J, d)`` unit, ``x``: ``(d,)`` unit, ``z``: ``(J,)``)."""
    post = ctx.model.posterior(ctx.to_original(torch.cat([Xs, x[None]])), covariance=True)
    column = post.covariance[:-1, -1]
    spread = (post.covariance[-1, -1] + post.noise).clamp(min=1e-300).sqrt()
    return post.mean[:-1] + column / spread * z


def next_mean_minimizers(ctx: Context, x: Tensor, z: Tensor, grid: Tensor,
                         inner_steps: int = 10) -> Tensor:
    """:math:`\\hat x^*_j = \\arg\\min_{x'} \\mu_{n+1}(x'; x, Z_j)`: the best point of ``grid``
    (``(G, d)``, unit) for each draw, refined by ``inner_steps`` of projected Adam."""
    with torch.no_grad():
        post = ctx.model.posterior(ctx.to_original(torch.cat([grid, x[None]])), covariance=True)
        spread = (post.covariance[-1, -1] + post.noise).clamp(min=1e-300).sqrt()
        lines = post.mean[:-1, None] + (post.covariance[:-1, -1] / spread)[:, None] * z[None]
    Xs = grid[lines.argmin(0)].clone().requires_grad_()
    optimizer = torch.optim.Adam([Xs], lr=0.02)
    for _ in range(inner_steps):
        optimizer.zero_grad()
        _posterior_mean_after(ctx, Xs, x.detach(), z).sum().backward()
        optimizer.step()
        with torch.no_grad():
            Xs.clamp_(0.0, 1.0)
    return Xs.detach()


def stochastic_gradient(ctx: Context, x: Tensor, grid: Tensor, z: Tensor, scale: float = 1.0,
                        inner_steps: int = 10) -> Tensor:
    """Alg. 4: the average over ``draws`` of :math:`-\\nabla_x \\mu_{n+1}(\\hat x^*; x, Z)`
    with :math:`\\hat x^*` held fixed (the envelope theorem), divided by ``scale``; ``z``
    holds the draws of :math:`Z`."""
    Xs = next_mean_minimizers(ctx, x, z, grid, inner_steps)
    x = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(_posterior_mean_after(ctx, Xs, x, z).mean(), x)
    return -grad / scale


def continuous_knowledge_gradient(ctx: Context, restarts: int = 4, steps: int = 30,
                                  draws: int = 32, a: float = 4.0, grid_size: int = 128
                                  ) -> Tensor:
    r"""Alg. 3: from ``restarts`` Sobol starts, ``steps`` of projected stochastic gradient
    ascent :math:`x_t = x_{t-1} + \frac{a}{a + t} G` on the knowledge gradient

    .. math:: \mathrm{KG}(x) = \min_{x'} \mu_n(x') - E_n[\min_{x'} \mu_{n+1}(x') \mid
        x_{n+1} = x],

    then score each end point by the exact discretized KG over the grid plus the inner
    minimizers found for it, and return the best (unit cube, ``(1, d)``).

    The defaults are smaller than the tutorial's (R = 10, T = 100, J = 1000) to keep one BO
    iteration at seconds; the inner minimization starts from the best of a Sobol grid that
    also holds the evaluated points.
    """
    owner = "continuous_knowledge_gradient"
    for name, value in (("restarts", restarts), ("steps", steps), ("draws", draws),
                        ("grid_size", grid_size)):
        check_int(owner, name, value)
    check_real(owner, "a", a)
    d = ctx.X.shape[1]
    low, high = ctx.bounds[:, 0], ctx.bounds[:, 1]
    grid = torch.cat([(ctx.X - low) / (high - low), sobol(grid_size, d, ctx.generator)])
    scale = float(ctx.y.std()) if len(ctx.y) > 1 and ctx.y.std() > 0 else 1.0
    ends = []
    for x in sobol(restarts, d, ctx.generator):
        for t in range(1, steps + 1):
            z = torch.randn(draws, generator=ctx.generator, dtype=torch.float64)
            step = a / (a + t) * stochastic_gradient(ctx, x, grid, z, scale)
            x = (x + step).clamp(0.0, 1.0)
        ends.append(x)
    z = torch.randn(draws, generator=ctx.generator, dtype=torch.float64)
    finals = torch.stack(ends)
    minimizers = torch.cat([next_mean_minimizers(ctx, x, z, grid) for x in finals])
    A = ctx.to_original(torch.cat([grid, minimizers]))
    with torch.no_grad():
        post = ctx.model.posterior(torch.cat([A, ctx.to_original(finals)]), covariance=True)
        values = knowledge_gradient_batch(post, len(A))
    return finals[values.argmax()][None]
