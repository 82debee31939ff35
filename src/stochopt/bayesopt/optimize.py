"""Acquisition optimization: score Sobol raw samples, start multistart L-BFGS-B from a
Boltzmann-weighted choice of them, return the best point (Frazier 2018, §4.1; the raw-sample
heuristic of BoTorch's ``optimize_acqf``). Everything lives in the unit cube."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.optimize
import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from stochopt._checks import check_int, show
from stochopt.bayesopt._validate import check_generator
from stochopt.errors import NonFiniteError

__all__ = ["optimize_acquisition", "sobol"]

Score = Callable[[Tensor], Tensor]  # (m, q, d) unit-cube batches -> (m,) values to maximize


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def sobol(n: int, d: int, generator: torch.Generator) -> Tensor:
    """``n`` points of a scrambled Sobol sequence in :math:`[0, 1]^d`, float64."""
    check_int("sobol", "n", n, low=0)
    check_int("sobol", "d", d, high=SobolEngine.MAXDIM)
    if check_generator("sobol", generator) is None:
        raise TypeError("sobol: generator must be a torch.Generator, got None")
    return SobolEngine(d, scramble=True, seed=_seed(generator)).draw(n, dtype=torch.float64)


def _evaluate(score: Score, X: Tensor, chunk: int = 256) -> Tensor:
    with torch.no_grad():
        values = torch.cat([score(X[i:i + chunk]) for i in range(0, len(X), chunk)])
    return torch.where(torch.isfinite(values), values, torch.full_like(values, -math.inf))


def _starts(values: Tensor, restarts: int, generator: torch.Generator, eta: float = 2.0
            ) -> Tensor:
    """The best raw sample plus ``restarts - 1`` drawn with weights
    :math:`\\exp(\\eta (v - \\max v)/\\mathrm{sd}(v))` without replacement."""
    best = int(values.argmax())
    finite = torch.isfinite(values)
    spread = values[finite].std() if finite.sum() > 1 else torch.tensor(1.0)
    spread = spread if spread > 0 else torch.tensor(1.0)
    weights = torch.exp(eta * (values - values[best]) / spread)
    weights = torch.where(finite, weights, torch.zeros_like(weights)) + 1e-12
    weights[best] = 0.0
    k = min(restarts - 1, len(values) - 1)
    others = torch.multinomial(weights, k, replacement=False, generator=generator) if k else []
    return torch.tensor([best, *list(map(int, others))])


def _lbfgsb(score: Score, starts: Tensor, maxiter: int) -> tuple[Tensor, Tensor]:
    """Batched L-BFGS-B on the sum of the restarts' scores (independent, so the joint
    problem separates), inside the unit box."""
    shape = starts.shape

    def negative(flat: np.ndarray) -> tuple[float, np.ndarray]:
        X = torch.from_numpy(flat).reshape(shape).requires_grad_()
        values = score(X)
        total = -values.sum()
        if not torch.isfinite(total):
            return 1e30, np.zeros_like(flat)
        (grad,) = torch.autograd.grad(total, X)
        # a surrogate's finite value may have a NaN or infinite gradient (torch.where over a
        # branch that is NaN there): fed to L-BFGS-B it steps to NaN points, so those
        # coordinates count as flat (the restarts are independent: the others still climb)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        return float(total.detach()), grad.reshape(-1).numpy().copy()

    result = scipy.optimize.minimize(negative, starts.reshape(-1).numpy(), jac=True,
                                     method="L-BFGS-B", bounds=[(0.0, 1.0)] * starts.numel(),
                                     options={"maxiter": maxiter})
    X = torch.from_numpy(result.x).reshape(shape).clamp(0.0, 1.0)
    return X, _evaluate(score, X)


def optimize_acquisition(score: Score, d: int, generator: torch.Generator, *, q: int = 1,
                         raw_samples: int = 512, restarts: int = 10, maxiter: int = 200
                         ) -> tuple[Tensor, float]:
    """Maximize ``score`` over batches of ``q`` points in :math:`[0, 1]^d`.

    Args:
        score: maps ``(m, q, d)`` to ``(m,)``; differentiable.
        d: dimension.
        generator: source of the Sobol scrambling and the start choice.
        q: points per batch.
        raw_samples: Sobol batches scored to pick starts.
        restarts: L-BFGS-B starting batches.
        maxiter: L-BFGS-B iterations.

    Returns:
        The best batch ``(q, d)`` and its score.

    Raises:
        NonFiniteError: the score is NaN or infinite at every raw sample.
    """
    if not callable(score):
        raise TypeError(f"optimize_acquisition: score must be callable, got {show(score)}")
    for name, value in (("q", q), ("raw_samples", raw_samples), ("restarts", restarts),
                        ("maxiter", maxiter)):
        check_int("optimize_acquisition", name, value)
    raw = sobol(raw_samples * q, d, generator).reshape(raw_samples, q, d)
    values = _evaluate(score, raw)
    if not torch.isfinite(values).any():
        raise NonFiniteError("optimize_acquisition: the acquisition is not finite at any "
                             "raw sample (a surrogate whose posterior is NaN is the usual "
                             "cause)")
    starts = raw[_starts(values, restarts, generator)]
    X, refined = _lbfgsb(score, starts, maxiter)
    X = torch.cat([X, raw[values.argmax()][None]])
    refined = torch.cat([refined, values.max()[None]])
    best = int(refined.argmax())
    return X[best], float(refined[best])
