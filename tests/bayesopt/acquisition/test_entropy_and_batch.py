"""Max-value entropy search against a numerical entropy difference; q-EI against EI."""

from __future__ import annotations

import math

import scipy.stats
import torch

from stochopt.bayesopt import Posterior, expected_improvement
from stochopt.bayesopt.acquisition import (
    max_value_entropy_search,
    normal_base_samples,
    q_expected_improvement,
)

F64 = torch.float64


def test_mes_is_the_entropy_drop_of_truncating_at_the_minimum() -> None:
    mean = torch.tensor([0.0, 1.5, -0.3], dtype=F64)
    std = torch.tensor([1.0, 0.4, 2.0], dtype=F64)
    minima = torch.tensor([-1.2, -0.4], dtype=F64)
    mes = max_value_entropy_search(Posterior(mean, std.square()), minima)
    for i in range(3):
        drops = []
        for m in minima.tolist():
            full = scipy.stats.norm(mean[i].item(), std[i].item()).entropy()
            low = (m - mean[i].item()) / std[i].item()
            truncated = scipy.stats.truncnorm(low, 40.0, loc=mean[i].item(),  # 40: no mass above
                                              scale=std[i].item()).entropy()
            drops.append(full - truncated)
        assert abs(mes[i].item() - sum(drops) / len(drops)) < 1e-10


def test_mes_is_finite_far_in_the_tails() -> None:
    post = Posterior(torch.tensor([-50.0, 50.0], dtype=F64), torch.ones(2, dtype=F64))
    mes = max_value_entropy_search(post, torch.tensor([0.0], dtype=F64))
    # gamma = -50: the truncated normal is nearly an exponential of scale sigma/|gamma|, so the
    # gain tends to 1/2 log(2 pi e) - 1 + log|gamma|, with relative corrections O(1/gamma^2)
    assert mes[1].item() < 1e-300
    limit = 0.5 * math.log(2 * math.pi) - 0.5 + math.log(50.0)
    assert abs(mes[0].item() - limit) < 1e-3


def test_q_ei_with_one_point_matches_closed_form_ei() -> None:
    post = Posterior(torch.tensor([0.2], dtype=F64), torch.tensor([0.49], dtype=F64),
                     torch.tensor([[0.49]], dtype=F64))
    base = normal_base_samples(4096, 1, seed=0)
    qei = q_expected_improvement(post, 0.5, base).item()
    ei = expected_improvement(post, 0.5).item()
    # scrambled Sobol with 4096 points: error far below the 1/sqrt(n) = 1.6% of plain MC
    assert abs(qei - ei) < 2e-3 * ei


def test_q_ei_of_two_points_matches_monte_carlo_of_the_joint() -> None:
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=F64)
    post = Posterior(torch.tensor([0.1, -0.2], dtype=F64), cov.diagonal(), cov)
    qei = q_expected_improvement(post, 0.0, normal_base_samples(8192, 2, seed=1)).item()
    draws = torch.distributions.MultivariateNormal(post.mean, cov).sample(
        torch.Size([2_000_000]))
    improvement = (0.0 - draws.min(1).values).clamp(min=0)
    se = improvement.std().item() / 2_000_000**0.5
    assert abs(qei - improvement.mean().item()) < 5 * se + 2e-3 * qei
