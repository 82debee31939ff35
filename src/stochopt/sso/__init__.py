"""Target-based surrogate optimization: one expensive gradient in target space, then cheap
surrogate steps on the model's parameters (Lavington et al., ICML 2023)."""

from __future__ import annotations

from stochopt.sso.sso import SSO, surrogate

__all__ = ["SSO", "surrogate"]
