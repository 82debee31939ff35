"""Wu & Frazier's envelope-theorem estimator is the derivative of the sampled inner minimum."""

from __future__ import annotations

import torch

from stochopt.bayesopt import GP
from stochopt.bayesopt.context import Context
from stochopt.bayesopt.kg_ascent import continuous_knowledge_gradient, stochastic_gradient

F64 = torch.float64


def _context() -> Context:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(6, 1, dtype=F64, generator=g)
    y = torch.sin(6 * X[:, 0]) + 0.1 * torch.randn(6, dtype=F64, generator=g)
    bounds = torch.tensor([[0.0, 1.0]], dtype=F64)
    return Context(GP(noise=0.01).fit(X, y, bounds), X, y, bounds, g)


def test_estimator_matches_finite_differences_of_the_sampled_minimum() -> None:
    ctx = _context()
    grid = torch.linspace(0, 1, 2001, dtype=F64)[:, None]
    z = torch.tensor([-1.3, 0.4, 2.0, -0.2], dtype=F64)

    def sampled_minimum(x: float) -> float:
        """The mean over the draws of min over the grid of mu_{n+1}(.; x, z)."""
        with torch.no_grad():
            post = ctx.model.posterior(torch.cat([grid, torch.tensor([[x]], dtype=F64)]),
                                       covariance=True)
        slope = post.covariance[:-1, -1] / (post.covariance[-1, -1] + post.noise).sqrt()
        return (post.mean[:-1, None] + slope[:, None] * z[None]).min(0).values.mean().item()

    x, h = 0.37, 1e-6
    grad = stochastic_gradient(ctx, torch.tensor([x], dtype=F64), grid, z, inner_steps=0)
    finite = (sampled_minimum(x + h) - sampled_minimum(x - h)) / (2 * h)
    assert abs(grad.item() + finite) < 1e-6 * max(1.0, abs(finite))


def test_proposes_a_point_in_the_box() -> None:
    x = continuous_knowledge_gradient(_context(), restarts=2, steps=3, draws=8, grid_size=32)
    assert x.shape == (1, 1) and 0.0 <= x.item() <= 1.0
