"""The closed forms of the test problems against autograd and finite differences."""

from __future__ import annotations

import math

import torch

from stochopt.bilevel import MultiBlockRidge, QuadraticBilevel, implicit_hypergradient


def _x(d: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _central_difference(fn, x: torch.Tensor, h: float = 1e-5) -> torch.Tensor:
    return torch.stack([(fn(x + h * e) - fn(x - h * e)) / (2 * h)
                        for e in torch.eye(len(x), dtype=x.dtype)])


def test_quadratic_lower_solution_and_hypergradient() -> None:
    p = QuadraticBilevel()
    x = _x(p.dim_x)
    y = p.y_star(x)
    assert p.grad_g(x, y)[1].abs().max() < 1e-12  # stationary for the lower level
    exact = p.hypergradient(x)
    torch.testing.assert_close(implicit_hypergradient(p, x, y), exact, rtol=1e-10, atol=1e-12)
    # central differences of Phi(x) = f(x, y*(x)): O(h^2) = 1e-10 truncation, 1e-11 rounding
    phi = _central_difference(lambda u: p.f(u, p.y_star(u)), x)
    torch.testing.assert_close(phi, exact, rtol=1e-7, atol=1e-8)


def test_quadratic_penalty_gradient_is_the_derivative_of_psi_sigma() -> None:
    p = QuadraticBilevel()
    x, sigma = _x(p.dim_x), 0.3

    def psi(u: torch.Tensor) -> torch.Tensor:  # min_y f + (g - g*) / sigma
        y_s, y = p.y_sigma_star(u, sigma), p.y_star(u)
        return p.f(u, y_s) + (p.g(u, y_s) - p.g(u, y)) / sigma

    torch.testing.assert_close(_central_difference(psi, x), p.penalty_gradient(x, sigma),
                               rtol=1e-7, atol=1e-8)


def test_penalty_gap_shrinks_linearly_in_sigma() -> None:
    """||grad psi_sigma - grad Phi|| = O(sigma) (Kwon et al., 2023): slope 1 in log-log."""
    p = QuadraticBilevel()
    x = _x(p.dim_x)
    sigmas = [1e-1, 1e-2, 1e-3, 1e-4]
    gaps = [float((p.penalty_gradient(x, s) - p.hypergradient(x)).norm()) for s in sigmas]
    slopes = [math.log(gaps[i] / gaps[i + 1]) / math.log(sigmas[i] / sigmas[i + 1])
              for i in range(len(sigmas) - 1)]
    assert all(abs(s - 1) < 0.05 for s in slopes[1:]), slopes  # the asymptotic regime
    assert gaps[-1] < 1e-3


def test_quadratic_minimizer_zeroes_the_hypergradient() -> None:
    p = QuadraticBilevel()
    assert p.hypergradient(p.x_star()).abs().max() < 1e-10


def test_stochastic_oracles_are_unbiased_and_scale_with_batch() -> None:
    p = QuadraticBilevel(noise=1.0)
    x, y = _x(p.dim_x), _x(p.dim_y, 6)
    gen = torch.Generator().manual_seed(0)
    exact = p.grad_g(x, y)[1]
    draws = torch.stack([p.grad_g(x, y, p.sample("lower", gen, 16))[1] for _ in range(2000)])
    # mean of 2000 draws of std 1/4: within 5 standard errors (5 * 0.25 / sqrt(2000) = 0.028)
    assert (draws.mean(0) - exact).abs().max() < 0.028 * (1 + 0.1 * y.abs().max())
    spread = (draws - exact).std(0)
    assert 0.2 < float(spread.median()) < 0.5  # std 1/sqrt(16) plus the Hessian noise


def test_ridge_blocks_closed_form() -> None:
    p = MultiBlockRidge(m=4, d=6, n=30)
    x = _x(p.d) * 0.5
    y = p.y_star(x)
    for i in range(p.m):
        batch = p.sample_block(i, "lower", torch.Generator(), None)
        assert p.grad_y_g(x, y[i], batch).abs().max() < 1e-12
    grad = p.hypergradient(x)
    finite = _central_difference(lambda u: torch.tensor(p.objective(u), dtype=u.dtype), x)
    torch.testing.assert_close(finite, grad, rtol=1e-6, atol=1e-8)
