"""Curvature: Hessian-vector products, diagonal estimators (Hutchinson, Gauss-Newton-
Bartlett), and spectra (power iteration, Lanczos, stochastic Lanczos quadrature).

Every random draw comes from an explicit ``torch.Generator``; nothing keeps a graph alive
beyond the call that needs it unless asked to (``retain_graph``, :func:`hvp_operator`).
"""

from __future__ import annotations

from stochopt.curvature.gnb import gauss_newton_bartlett, sample_labels
from stochopt.curvature.hutchinson import (
    gaussian_like,
    hutchinson_diagonal,
    probe_like,
    rademacher_like,
)
from stochopt.curvature.hvp import flatten, hvp, hvp_func, hvp_operator, unflatten
from stochopt.curvature.spectrum import (
    Lanczos,
    SpectralDensity,
    lanczos,
    power_iteration,
    spectral_density,
)

__all__ = [
    "Lanczos",
    "SpectralDensity",
    "flatten",
    "gauss_newton_bartlett",
    "gaussian_like",
    "hutchinson_diagonal",
    "hvp",
    "hvp_func",
    "hvp_operator",
    "lanczos",
    "power_iteration",
    "probe_like",
    "rademacher_like",
    "sample_labels",
    "spectral_density",
    "unflatten",
]
