"""The exact envelope algorithm h(a, b), noisy EI and discrete KG against Monte Carlo and EI."""

from __future__ import annotations

import torch

from stochopt.bayesopt import (
    GP,
    Posterior,
    expected_improvement,
    expected_max_of_lines,
    knowledge_gradient,
    noisy_expected_improvement,
)

F64 = torch.float64


def _monte_carlo_h(a: torch.Tensor, b: torch.Tensor, n: int = 2_000_000) -> tuple[float, float]:
    z = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(1))
    best = (a[None, :] + b[None, :] * z[:, None]).max(1).values - a.max()
    return best.mean().item(), best.std().item() / n**0.5


def test_h_matches_monte_carlo_with_dominated_and_tied_lines() -> None:
    a = torch.tensor([0.3, -1.0, 0.1, 0.5, -2.0, 0.5, 0.0], dtype=F64)
    b = torch.tensor([0.2, 1.5, -0.7, 0.2, 0.1, -0.3, 0.9], dtype=F64)  # ties in slope, a
    mean, se = _monte_carlo_h(a, b)
    assert abs(expected_max_of_lines(a, b).item() - mean) < 4 * se


def test_h_of_a_single_line_or_parallel_lines_is_zero() -> None:
    assert expected_max_of_lines(torch.tensor([1.0, 0.2], dtype=F64),
                                 torch.tensor([0.5, 0.5], dtype=F64)).item() == 0.0
    # two lines: E max(a1 + b1 Z, a2 + b2 Z) - max a has the closed form |db| g(-|da|/|db|)
    h = expected_max_of_lines(torch.tensor([0.0, 0.0], dtype=F64),
                              torch.tensor([-1.0, 1.0], dtype=F64)).item()
    assert abs(h - 2 * 0.3989422804014327) < 1e-14  # E|Z| = sqrt(2/pi)


def test_h_gradient_matches_finite_differences() -> None:
    a = torch.tensor([0.3, -0.4, 0.1], dtype=F64, requires_grad=True)
    b = torch.tensor([0.2, 1.1, -0.6], dtype=F64, requires_grad=True)
    expected_max_of_lines(a, b).backward()
    eps = 1e-6
    for vector, grad in ((a, a.grad), (b, b.grad)):
        for i in range(3):
            step = torch.zeros(3, dtype=F64)
            step[i] = eps
            plus = expected_max_of_lines(*(v.detach() + step if v is vector else v.detach()
                                           for v in (a, b)))
            minus = expected_max_of_lines(*(v.detach() - step if v is vector else v.detach()
                                            for v in (a, b)))
            assert abs((plus - minus).item() / (2 * eps) - grad[i].item()) < 1e-7


def _conditioned_prior(n: int) -> tuple[Posterior, torch.Tensor]:
    """The exact noise-free posterior over ``n`` observed points and one candidate: the
    observed rows of the covariance are zero and their means are the observations."""
    g = torch.Generator().manual_seed(3)
    X = torch.rand(n + 1, 2, dtype=F64, generator=g)
    K = torch.exp(-0.5 * torch.cdist(X, X).square() / 0.15**2)
    y = torch.randn(n, dtype=F64, generator=g)
    Koo, Kco = K[:n, :n], K[n:, :n]
    mean_c = Kco @ torch.linalg.solve(Koo, y)
    var_c = K[n, n] - Kco @ torch.linalg.solve(Koo, Kco.T)
    cov = torch.zeros(n + 1, n + 1, dtype=F64)
    cov[n, n] = var_c.squeeze()
    return Posterior(torch.cat([y, mean_c]), cov.diagonal().clone(), cov, noise=0.0), y


def test_noisy_ei_without_noise_equals_ei() -> None:
    post, y = _conditioned_prior(6)
    nei = noisy_expected_improvement(post)
    candidate = Posterior(post.mean[-1:], post.variance[-1:])
    ei = expected_improvement(candidate, y.min())
    assert ei.item() > 1e-3  # a non-trivial case
    assert abs(nei.item() - ei.item()) < 1e-14


def test_noisy_ei_with_a_fitted_noise_free_gp_equals_ei() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(7, 2, dtype=F64, generator=g)
    y = (X - 0.4).square().sum(-1)
    gp = GP(noise=0.0).fit(X, y, torch.tensor([[0.0, 1.0]] * 2, dtype=F64))
    x = torch.tensor([[0.45, 0.35]], dtype=F64)
    post = gp.posterior(torch.cat([X, x]), covariance=True)
    # the GP's own posterior at its data has jitter-sized variance, so compare at that accuracy
    ei = expected_improvement(gp.posterior(x), post.mean[:-1].min())
    assert abs(noisy_expected_improvement(post).item() - ei.item()) < 1e-6 * ei.item() + 1e-9


def test_noisy_ei_matches_monte_carlo_over_the_next_observation() -> None:
    """Simulate y_{n+1} from the predictive, condition a dense GP (its own RBF kernel, known
    noise) on all n + 1 observations by a direct solve, and average the drop of the smallest
    posterior mean over the evaluated points. The new means are linear in y_{n+1}."""
    g = torch.Generator().manual_seed(5)
    n, noise = 6, 0.09
    X1 = torch.rand(n + 1, 2, dtype=F64, generator=g)  # the last row is the candidate
    K = torch.exp(-0.5 * torch.cdist(X1, X1).square() / 0.3**2)
    y = torch.sin(4 * X1[:n]).sum(-1) + 0.3 * torch.randn(n, dtype=F64, generator=g)

    def means_after(m: int, observations: torch.Tensor) -> torch.Tensor:
        return K[:, :m] @ torch.linalg.solve(K[:m, :m] + noise * torch.eye(m, dtype=F64),
                                             observations)

    Kn = K[:, :n] @ torch.linalg.solve(K[:n, :n] + noise * torch.eye(n, dtype=F64), K[:n, :])
    cov = K - Kn
    post = Posterior(means_after(n, y), cov.diagonal().clone(), cov, noise=noise)
    base = means_after(n + 1, torch.cat([y, torch.zeros(1, dtype=F64)]))
    slope = means_after(n + 1, torch.cat([y, torch.ones(1, dtype=F64)])) - base
    spread = (post.variance[-1] + noise).sqrt()
    draws = post.mean[-1] + spread * torch.randn(2_000_000, dtype=F64, generator=g)
    drop = post.mean[:-1].min() - (base[None, :] + slope[None, :] * draws[:, None]).min(1).values
    mean, se = drop.mean().item(), drop.std().item() / 2_000_000**0.5
    assert mean > 100 * se  # a non-trivial case
    assert abs(noisy_expected_improvement(post).item() - mean) < 4 * se


def test_knowledge_gradient_is_nonnegative_and_zero_without_posterior_variance() -> None:
    g = torch.Generator().manual_seed(7)
    for _ in range(20):
        A = torch.randn(5, 5, dtype=F64, generator=g)
        cov = A @ A.T / 5
        post = Posterior(torch.randn(5, dtype=F64, generator=g), cov.diagonal(), cov, noise=0.1)
        assert knowledge_gradient(post).item() >= 0.0
    cov[-1, :] = cov[:, -1] = 0.0  # observing the candidate can no longer move any mean
    post = Posterior(torch.randn(5, dtype=F64, generator=g), cov.diagonal(), cov, noise=0.1)
    assert knowledge_gradient(post).item() == 0.0


def test_knowledge_gradient_matches_monte_carlo() -> None:
    g = torch.Generator().manual_seed(11)
    A = torch.randn(6, 6, dtype=F64, generator=g)
    cov = A @ A.T / 6
    mean = torch.randn(6, dtype=F64, generator=g)
    post = Posterior(mean, cov.diagonal(), cov, noise=0.2)
    slope = cov[:, -1] / (cov[-1, -1] + 0.2).sqrt()
    z = torch.randn(2_000_000, dtype=F64, generator=g)
    drop = mean.min() - (mean[None, :] + slope[None, :] * z[:, None]).min(1).values
    mc, se = drop.mean().item(), drop.std().item() / 2_000_000**0.5
    assert abs(knowledge_gradient(post).item() - mc) < 4 * se
