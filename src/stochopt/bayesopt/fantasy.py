r"""Pending points for any surrogate: the kriging believer on the Gaussian summary of its
posterior.

A surrogate that cannot be conditioned exactly (the neural ones) is wrapped by
:class:`Believer`: its joint posterior over the query points :math:`X` and the pending points
:math:`P` is conditioned on noise-free observations at :math:`P` equal to the posterior mean
there,

.. math::
    \mu'(X) = \mu(X), \qquad
    \Sigma'(X) = \Sigma_{XX} - \Sigma_{XP} \Sigma_{PP}^{-1} \Sigma_{PX},

the same update :meth:`stochopt.bayesopt.GP.fantasize` makes exactly for a GP.

References:
    Ginsbourger, Le Riche & Carraro, "Kriging Is Well-Suited to Parallelize Optimization",
    Springer 2010; Rasmussen & Williams, "Gaussian Processes for Machine Learning", 2006,
    eq. 2.19.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stochopt.bayesopt._linalg import robust_cholesky
from stochopt.bayesopt.context import Surrogate
from stochopt.bayesopt.posterior import Posterior

__all__ = ["Believer"]


class Believer:
    """``model``'s posterior conditioned on pending points ``P`` ``(p, d)`` (original units)
    observed without noise at its posterior mean; the mean is unchanged, the (co)variance
    shrinks (to the Cholesky jitter at ``P``)."""

    def __init__(self, model: Surrogate, P: Tensor) -> None:
        self.model, self.P = model, P

    def posterior(self, X: Tensor, covariance: bool = False) -> Posterior:
        m = X.shape[0]
        joint = self.model.posterior(torch.cat([X, self.P.to(X.dtype)]), covariance=True)
        C = joint.covariance
        L = robust_cholesky(C[m:, m:])  # rank-deficient for few samples: jitter is added
        V = torch.linalg.solve_triangular(L, C[m:, :m], upper=False)  # (p, m)
        if covariance:
            cov = C[:m, :m] - V.T @ V
            variance = cov.diagonal()
        else:
            cov, variance = None, C.diagonal()[:m] - V.square().sum(0)
        return Posterior(joint.mean[:m], variance.clamp(min=0.0), cov, noise=joint.noise)
