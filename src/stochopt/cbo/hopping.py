r"""Consensus hopping (CH): jump to the consensus point of Gaussian samples around the iterate.

.. math::
    x_{k+1} = x_\alpha\big(Y^1, \dots, Y^N\big), \qquad Y^i \sim \mathcal N(x_k, \sigma^2 I_d).

The samples' density times the Gibbs weight is
:math:`\exp\!\big(-\alpha\,[f(y) + \|y - x_k\|_2^2 / (2\alpha\sigma^2)]\big)`, so by the Laplace
principle, as :math:`\alpha \to \infty` (and :math:`N \to \infty`) at a fixed
:math:`\tau = \alpha\sigma^2`, the step tends to the proximal (implicit gradient) step

.. math::
    x_{k+1} \to \operatorname{prox}_{\tau f}(x_k)
        = \operatorname*{argmin}_y\, f(y) + \tfrac{1}{2\tau}\|y - x_k\|_2^2 .

For a quadratic :math:`f` the Gibbs-weighted Gaussian is itself Gaussian with mean exactly
:math:`\operatorname{prox}_{\tau f}(x_k)` at every :math:`\alpha`; only the :math:`N` samples'
error remains.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochopt._checks import check_real
from stochopt.cbo._base import ConsensusMethod
from stochopt.cbo.schedules import AlphaSchedule

__all__ = ["ConsensusHopping"]


class ConsensusHopping(ConsensusMethod):
    r"""Consensus hopping: the next iterate is the consensus point of :math:`N` Gaussian
    samples around the current one.

    Symbols: :math:`\sigma` = ``sigma`` (sampling width), :math:`\alpha` = ``alpha``; the
    particles ``(M, N, d)`` are the current samples :math:`Y^i` of :math:`M` independent runs.
    One iteration (:meth:`step`) evaluates :math:`f` at the samples, forms
    :math:`x_{k+1} = x_\alpha` (:func:`~stochopt.cbo.consensus_point`) and draws the next
    samples :math:`x_{k+1} + \sigma \xi^i`, :math:`\xi^i \sim \mathcal N(0, I)`. Start it from
    samples around :math:`x_0`, e.g. ``gaussian_particles(x0, sigma, N)``, as the official code
    does, and run it through :func:`~stochopt.cbo.minimize`; the implicit step size is
    :math:`\tau = \alpha\sigma^2` (:meth:`step_size`).

    Args:
        sigma: :math:`\sigma > 0`, the sampling width (default 0.7, the official code's).
        alpha: :math:`\alpha`: a float for a constant value (default 100), or an
            :class:`~stochopt.cbo.schedules.AlphaSchedule`.

    Example:
        >>> from stochopt.cbo import minimize, gaussian_particles
        >>> from stochopt.tasks import Rastrigin
        >>> x0 = gaussian_particles(torch.tensor([3.0, 3.0]), 0.7, 200, runs=2, seed=0)
        >>> result = minimize(Rastrigin(dim=2, amplitude=2.5), x0, ConsensusHopping(sigma=0.7),
        ...                   max_iterations=250, seed=0)
        >>> result.x.shape
        torch.Size([2, 2])

    References:
        Riedl, Klock, Geldhauser & Fornasier, "Gradient is All You Need? How Consensus-Based
        Optimization can be Interpreted as a Stochastic Relaxation of Gradient Descent", 2023,
        arXiv:2306.09778 (the scheme; its code ``CBOstochasticGD/algorithms/CH.m``).

    Note:
        As in ``CH.m``, the samples drawn after the last hop are averaged once more to give the
        final point; ``CH.m``'s variant that shrinks :math:`\sigma` by 2% every 100 iterations
        is not included (an :class:`~stochopt.cbo.schedules.AlphaSchedule` covers the
        analogous annealing of :math:`\alpha`).
    """

    def __init__(self, *, sigma: float = 0.7, alpha: float | AlphaSchedule = 100.0) -> None:
        super().__init__(alpha=alpha)
        self.sigma = check_real("ConsensusHopping", "sigma", sigma)

    def _move(self, x: Tensor, consensus: Tensor, generator: torch.Generator) -> Tensor:
        """Fresh samples :math:`x_{k+1} + \\sigma\\xi^i` around the new iterate."""
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return consensus.unsqueeze(-2) + self.sigma * xi

    def step_size(self, alpha: float) -> float:
        """The implicit step :math:`\\tau = \\alpha\\sigma^2` that the hop approximates."""
        alpha = check_real("ConsensusHopping.step_size", "alpha", alpha, low_open=False)
        return alpha * self.sigma**2

    def __repr__(self) -> str:
        return f"ConsensusHopping(sigma={self.sigma}, alpha={self.alpha!r})"
