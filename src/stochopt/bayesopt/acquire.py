"""The acquisition registry: each entry turns a fitted surrogate and the data into a score to
maximize over the unit cube (or, for the stochastic-gradient knowledge gradient, proposes the
point itself). Constraints enter through the probability of feasibility."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from stochopt.bayesopt.acquisition import (
    expected_improvement,
    knowledge_gradient_batch,
    log_expected_improvement,
    noisy_expected_improvement_batch,
)
from stochopt.bayesopt.acquisition.entropy import max_value_entropy_search, sample_minimum_values
from stochopt.bayesopt.acquisition.monte_carlo import normal_base_samples, q_expected_improvement
from stochopt.bayesopt.context import Context
from stochopt.bayesopt.kg_ascent import continuous_knowledge_gradient
from stochopt.bayesopt.optimize import sobol
from stochopt.bayesopt.posterior import Posterior

__all__ = ["ACQUISITIONS", "Acquisition", "feasibility_score", "log_feasibility"]


Score = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Acquisition:
    """``build(context)`` gives a score of ``(m, d)`` points (``(m, q, d)`` batches when
    ``batch``) in original units; ``log`` marks scores on the log scale. ``propose`` instead
    returns the next point (unit cube) itself, for methods with their own optimizer."""

    build: Callable[[Context], Score] | None = None
    batch: bool = False
    log: bool = False
    propose: Callable[[Context], Tensor] | None = None


def _ei(ctx: Context) -> Score:
    return lambda X: expected_improvement(ctx.model.posterior(X), ctx.best)


def _log_ei(ctx: Context) -> Score:
    return lambda X: log_expected_improvement(ctx.model.posterior(X), ctx.best)


def _joint(ctx: Context, A: Tensor, X: Tensor) -> Posterior:
    return ctx.model.posterior(torch.cat([A, X]), covariance=True)


def _noisy_ei(ctx: Context) -> Score:
    return lambda X: noisy_expected_improvement_batch(_joint(ctx, ctx.X, X), len(ctx.X))


def _knowledge_gradient(ctx: Context, discrete: int = 128) -> Score:
    """Discretized over the evaluated points plus ``discrete`` Sobol points (fixed per
    iteration), with the candidate added to the set."""
    A = torch.cat([ctx.X, ctx.to_original(sobol(discrete, ctx.X.shape[1], ctx.generator))])
    return lambda X: knowledge_gradient_batch(_joint(ctx, A, X), len(A))


def _max_value_entropy(ctx: Context, discrete: int = 512, samples: int = 32) -> Score:
    A = torch.cat([ctx.X, ctx.to_original(sobol(discrete, ctx.X.shape[1], ctx.generator))])
    with torch.no_grad():
        minima = sample_minimum_values(ctx.model.posterior(A, covariance=True), samples,
                                       ctx.generator)
    return lambda X: max_value_entropy_search(ctx.model.posterior(X), minima)


def _q_expected_improvement(ctx: Context, samples: int = 256) -> Score:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
    base: dict[int, Tensor] = {}

    def score(X: Tensor) -> Tensor:
        q = X.shape[1]
        if q not in base:
            base[q] = normal_base_samples(samples, q, seed)
        return torch.stack([q_expected_improvement(ctx.model.posterior(x, covariance=True),
                                                   ctx.best, base[q]) for x in X])

    return score


ACQUISITIONS: dict[str, Acquisition] = {
    "ei": Acquisition(_ei),
    "logei": Acquisition(_log_ei, log=True),
    "noisy_ei": Acquisition(_noisy_ei),
    "kg": Acquisition(_knowledge_gradient),
    "kg_sga": Acquisition(propose=continuous_knowledge_gradient),
    "mes": Acquisition(_max_value_entropy),
    "qei": Acquisition(_q_expected_improvement, batch=True),
}


def log_feasibility(ctx: Context, X: Tensor) -> Tensor:
    r""":math:`\sum_k \log P(c_k(x) \le 0)` under independent constraint models."""
    total = X.new_zeros(X.shape[0])
    for model in ctx.constraint_models:
        post = model.posterior(X)
        total = total + torch.special.log_ndtr(-post.mean / post.stddev.clamp(min=1e-12))
    return total


def feasibility_score(ctx: Context, acquisition: Acquisition, score: Score | None) -> Score:
    """Weight ``score`` by the probability of feasibility (Frazier 2018, §5: EI times
    :math:`P(\\text{feasible})` with independent GPs): added on the log scale, multiplied
    otherwise. Before any feasible observation, the probability of feasibility alone."""
    if score is None:
        return lambda X: log_feasibility(ctx, X)
    if acquisition.log:
        return lambda X: score(X) + log_feasibility(ctx, X)
    return lambda X: score(X) * log_feasibility(ctx, X).exp()
