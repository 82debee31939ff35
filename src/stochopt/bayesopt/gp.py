"""Exact Gaussian-process regression in float64 with MAP hyperparameters (Frazier, 2018, §3)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, show
from stochopt.bayesopt._linalg import NumericalError, robust_cholesky
from stochopt.bayesopt._validate import (
    NotReadyError,
    check_data,
    check_generator,
    check_points,
    restore_on_error,
)
from stochopt.bayesopt.kernels import matern52, nngp_relu, nngp_relu_diagonal, rbf
from stochopt.bayesopt.posterior import Posterior

__all__ = ["GP", "Hyperparameters"]

KERNELS = {"matern52": matern52, "rbf": rbf, "nngp": None}  # nngp: no lengthscale or scale
_NOISE_FLOOR = 1e-6  # in standardized units


@dataclass(frozen=True)
class Hyperparameters:
    """GP hyperparameters in standardized units (inputs in the unit cube, outputs z-scored).

    Attributes:
        lengthscales: ``(d,)``.
        outputscale: signal variance.
        noise: observation-noise variance.
        mean: constant prior mean.
    """

    lengthscales: Tensor
    outputscale: float
    noise: float
    mean: float


def _check_noise(owner: str, noise: float) -> float:
    """A known noise variance: a finite real number >= 0."""
    try:
        return check_real(owner, "noise", noise, low=0.0, low_open=False)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{error} (None infers it)") from None


def _gamma_log_prob(x: Tensor, concentration: float, rate: float) -> Tensor:
    """Log density of Gamma(concentration, rate) at ``x``, up to a constant."""
    return (concentration - 1) * x.log() - rate * x


def _log_normal_log_prob(x: Tensor, loc: float, scale: float) -> Tensor:
    """Log density of LogNormal(loc, scale) at ``x > 0`` (elementwise, summed)."""
    z = (x.log() - loc) / scale
    return (-0.5 * z.square() - x.log() - math.log(scale * math.sqrt(2 * math.pi))).sum()


def _check_hyperparameters(owner: str, hp: Hyperparameters, d: int) -> None:
    """Hyperparameters a GP on ``d`` inputs can condition on: positive finite lengthscales
    ``(d,)`` and outputscale, a finite noise >= 0 and a finite mean."""
    if not isinstance(hp, Hyperparameters):
        raise TypeError(f"{owner}: hp must be a Hyperparameters, got {show(hp)}")
    lengthscales = torch.as_tensor(hp.lengthscales)
    if lengthscales.shape != (d,):
        raise ValueError(f"{owner}: hp.lengthscales must have shape ({d},), got "
                         f"{tuple(lengthscales.shape)}")
    if not bool((torch.isfinite(lengthscales) & (lengthscales > 0)).all()):
        raise ValueError(f"{owner}: hp.lengthscales must be finite and > 0, got "
                         f"{show(lengthscales.tolist())}")
    for name, low, closed in (("outputscale", 0.0, False), ("noise", 0.0, True),
                              ("mean", -math.inf, False)):
        value = getattr(hp, name)
        value = float(value) if isinstance(value, Tensor) and value.numel() == 1 else value
        check_real(owner, f"hp.{name}", value, low=low, low_open=not closed)


class GP:
    r"""A zero-configuration GP surrogate: Matérn-5/2 ARD (or RBF), constant mean, inputs
    scaled to the unit cube, outputs standardized, hyperparameters by MAP.

    Priors (in standardized units): lengthscales LogNormal(:math:`\sqrt2 + \tfrac12\ln d`,
    :math:`\sqrt3`) (Hvarfner et al., 2024, as BoTorch), outputscale LogNormal(0, 1), noise
    LogNormal(-4, 1) floored at 1e-6, mean N(0, 1). The MAP is found by L-BFGS from the prior
    medians and ``restarts - 1`` prior draws; the best wins.

    Args:
        kernel: ``"matern52"`` (default), ``"rbf"``, or ``"nngp"`` (the infinitely wide ReLU
            network of :func:`~stochopt.bayesopt.kernels.nngp_relu`, fixed; only the noise and
            the mean are fitted: the BNN study's I-BNN, with the noise prior its BoTorch 0.8.5
            gave every SingleTaskGP, Gamma(1.1, 0.05), which keeps this large fixed kernel from
            interpolating standardized data with near-zero noise).
        noise: a known observation-noise variance in the output's units, or ``None`` (default)
            to infer it.
        restarts: MAP starting points (default 4).

    Bad input (data of the wrong shape, NaN or infinite values, a box with lower >= upper)
    raises ``ValueError``/``TypeError`` before anything changes; a fit that fails (every MAP
    restart numerically singular) raises :class:`~stochopt.bayesopt.NumericalError` and
    leaves the GP as it was.

    Example:
        >>> X = torch.rand(8, 2, dtype=torch.float64)
        >>> gp = GP().fit(X, X.sum(-1), bounds=torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
        >>> gp.posterior(X[:2]).mean.shape
        torch.Size([2])

    References:
        Frazier, "A Tutorial on Bayesian Optimization", 2018, arXiv:1807.02811; Rasmussen &
        Williams, "Gaussian Processes for Machine Learning", 2006, Alg. 2.1; Hvarfner,
        Hellsten & Nardi, "Vanilla Bayesian Optimization Performs Great in High Dimensions",
        ICML 2024.
    """

    def __init__(self, kernel: str = "matern52", noise: float | None = None,
                 restarts: int = 4) -> None:
        if not isinstance(kernel, str) or kernel not in KERNELS:
            raise ValueError(f"GP: kernel must be one of {tuple(KERNELS)}, got {show(kernel)}")
        if noise is not None:
            noise = _check_noise(type(self).__name__, noise)
        self.kernel, self.known_noise = kernel, noise
        self.restarts = check_int(type(self).__name__, "restarts", restarts)
        self.hyperparameters: Hyperparameters | None = None

    # ----------------------------------------------------------------- transforms
    def _to_unit(self, X: Tensor) -> Tensor:
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        return (X.to(torch.float64) - low) / (high - low)

    @property
    def kernel_dim(self) -> int:
        """How many lengthscales: the input dimension (the feature width in DKL)."""
        return self.X.shape[1]

    def _lengthscale_count(self, d: int) -> int:
        """:attr:`kernel_dim` for inputs of dimension ``d``, before any data is set."""
        return d

    def _features(self, U: Tensor) -> Tensor:
        """What the kernel sees of unit-cube inputs (identity here; a network in DKL)."""
        return U

    def _covariance(self, A: Tensor, B: Tensor, hp: Hyperparameters) -> Tensor:
        A, B = self._features(A), self._features(B)
        if self.kernel == "nngp":
            return nngp_relu(A, B)
        return KERNELS[self.kernel](A, B, hp.lengthscales, torch.as_tensor(hp.outputscale))

    def _prior_variance(self, U: Tensor, hp: Hyperparameters) -> Tensor | float:
        if self.kernel == "nngp":
            return nngp_relu_diagonal(self._features(U))
        return hp.outputscale

    # ------------------------------------------------------------------------ fit
    def fit(self, X: Tensor, y: Tensor, bounds: Tensor,
            generator: torch.Generator | None = None) -> GP:
        """Fit hyperparameters by MAP, then condition on ``(X, y)``.

        Args:
            X: inputs ``(n, d)`` in original units.
            y: observations ``(n,)``.
            bounds: the search box ``(d, 2)`` (lower, upper): inputs are scaled by it.
            generator: source of the restarts' prior draws.

        Raises:
            ValueError, TypeError: bad data (nothing is changed).
            NumericalError: every restart failed (nothing is changed).
        """
        X, y, bounds = self._check_data(X, y, bounds)
        generator = check_generator(f"{type(self).__name__}.fit", generator) or \
            torch.Generator().manual_seed(0)
        with restore_on_error(self):
            self._set_data(X, y, bounds)
            best, best_loss = None, math.inf
            for start in range(self.restarts):
                raw = self._initial_raw(start, generator)
                loss = self._optimize(raw)
                if loss < best_loss:
                    best, best_loss = raw.detach().clone(), loss
            if best is None:
                raise NumericalError(f"{type(self).__name__}.fit: every one of the "
                                     f"{self.restarts} MAP restarts failed (the covariance "
                                     f"stayed singular); duplicate inputs with noise=0 are the "
                                     f"usual cause")
            return self._condition(self._unpack(best))

    def condition(self, X: Tensor, y: Tensor, bounds: Tensor, hp: Hyperparameters) -> GP:
        """Condition on ``(X, y)`` with fixed hyperparameters (standardized units)."""
        X, y, bounds = self._check_data(X, y, bounds)
        _check_hyperparameters(f"{type(self).__name__}.condition", hp,
                               self._lengthscale_count(X.shape[1]))
        with restore_on_error(self):
            self._set_data(X, y, bounds)
            return self._condition(hp)

    def _check_data(self, X: Tensor, y: Tensor, bounds: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        try:
            return check_data(type(self).__name__, X, y, bounds)
        except ValueError as error:  # the shapes in one line, as before
            raise ValueError(f"{error} (need X (n, d), y (n,), bounds (d, 2))") from None

    def _set_data(self, X: Tensor, y: Tensor, bounds: Tensor) -> None:
        self.exact = 0  # trailing rows observed without noise (fantasies)
        self.bounds = bounds.to(torch.float64)
        y = y.to(torch.float64)
        self.y_mean = y.mean()
        self.y_std = y.std() if len(y) > 1 and y.std() > 0 else torch.tensor(1.0,
                                                                             dtype=torch.float64)
        self.X = self._to_unit(X)
        self.z = (y - self.y_mean) / self.y_std

    def _initial_raw(self, start: int, generator: torch.Generator) -> Tensor:
        d = self.kernel_dim
        loc = math.sqrt(2) + 0.5 * math.log(d)
        raw = torch.tensor([loc] * d + [0.0, -4.0, 0.0], dtype=torch.float64)
        if start > 0:  # a draw from the priors
            scales = torch.tensor([math.sqrt(3)] * d + [1.0, 1.0, 1.0], dtype=torch.float64)
            raw = raw + scales * torch.randn(d + 3, generator=generator, dtype=torch.float64)
        return raw.requires_grad_()

    def _unpack(self, raw: Tensor) -> Hyperparameters:
        d = self.kernel_dim
        noise = (self.known_noise / float(self.y_std) ** 2 if self.known_noise is not None
                 else _NOISE_FLOOR + raw[d + 1].exp())
        return Hyperparameters(raw[:d].exp(), raw[d].exp(), noise, raw[d + 2])

    def _negative_log_posterior(self, raw: Tensor) -> Tensor:
        hp = self._unpack(raw)
        n, d = self.X.shape[0], self.kernel_dim
        K = self._covariance(self.X, self.X, hp) + hp.noise * torch.eye(n, dtype=torch.float64)
        L = robust_cholesky(K)
        r = self.z - hp.mean
        alpha = torch.cholesky_solve(r[:, None], L)[:, 0]
        nll = 0.5 * r @ alpha + L.diagonal().log().sum() + 0.5 * n * math.log(2 * math.pi)
        prior = hp.mean.new_zeros(())
        if self.kernel != "nngp":  # the NNGP kernel has neither lengthscales nor a scale
            prior = _log_normal_log_prob(hp.lengthscales, math.sqrt(2) + 0.5 * math.log(d),
                                         math.sqrt(3))
            prior = prior + _log_normal_log_prob(hp.outputscale[None], 0.0, 1.0)
        if self.known_noise is None and self.kernel == "nngp":
            prior = prior + _gamma_log_prob(hp.noise, 1.1, 0.05)
        elif self.known_noise is None:
            prior = prior + _log_normal_log_prob(raw[d + 1].exp()[None], -4.0, 1.0)
        prior = prior - 0.5 * hp.mean.square()
        return nll - prior

    def _optimize(self, raw: Tensor) -> float:
        optimizer = torch.optim.LBFGS([raw], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            loss = self._negative_log_posterior(raw)
            loss.backward()
            return loss

        try:
            optimizer.step(closure)
            with torch.no_grad():
                return float(self._negative_log_posterior(raw))
        except Exception:  # a restart that wanders into a singular region is just skipped
            return math.inf

    def fantasize(self, X: Tensor) -> GP:
        r"""A copy of the fitted GP that also holds noise-free observations at ``X``
        (``(p, d)``, original units) equal to its posterior mean there, with the same
        hyperparameters and output standardization: the kriging believer, whose metamodel
        interpolates the believed values. The posterior mean is unchanged everywhere,
        :math:`\mu' = \mu + \Sigma_{xP}\Sigma_{PP}^{-1}(\mu(P) - \mu(P)) = \mu`, and the
        variance of the latent function drops to zero at ``X`` (up to the Cholesky jitter)
        and shrinks near it, whatever the observation noise.

        References:
            Ginsbourger, Le Riche & Carraro, "Kriging Is Well-Suited to Parallelize
            Optimization", in Computational Intelligence in Expensive Optimization Problems,
            Springer 2010 (the kriging believer); Snoek, Larochelle & Adams, "Practical
            Bayesian Optimization of Machine Learning Algorithms", NeurIPS 2012, arXiv:1206.2944
            (conditioning on pending evaluations).
        """
        if self.hyperparameters is None:
            raise NotReadyError(f"{type(self).__name__}.fantasize: fit or condition the model "
                                f"first")
        X = check_points(f"{type(self).__name__}.fantasize", "X", X, self.bounds.shape[0])
        with torch.no_grad():
            mean = self.posterior(X).mean
        other = copy.copy(self)
        other.X = torch.cat([self.X, self._to_unit(X.detach())])
        other.z = torch.cat([self.z, (mean - self.y_mean) / self.y_std])
        other.exact = self.exact + len(X)
        return other._condition(self.hyperparameters)

    # ----------------------------------------------------------------- posterior
    def _condition(self, hp: Hyperparameters) -> GP:
        scalars = (float(torch.as_tensor(v, dtype=torch.float64).detach())
                   for v in (hp.outputscale, hp.noise, hp.mean))
        hp = Hyperparameters(hp.lengthscales.detach(), *scalars)
        n = self.X.shape[0]
        noise = torch.full((n,), hp.noise, dtype=torch.float64)
        noise[n - self.exact:] = 0.0  # fantasies (the believer's) are noise-free
        K = self._covariance(self.X, self.X, hp) + torch.diag(noise)
        self.L = robust_cholesky(K)
        self.alpha = torch.cholesky_solve((self.z - hp.mean)[:, None], self.L)[:, 0]
        self.hyperparameters = hp
        return self

    def posterior(self, X: Tensor, covariance: bool = False) -> Posterior:
        r"""The posterior of the latent function at ``X`` (``(m, d)``, original units):
        :math:`\mu = m + k_*^\top K^{-1}(y - m)`, :math:`\Sigma = k_{**} - k_*^\top K^{-1}k_*`,
        in the output's units. Differentiable with respect to ``X``."""
        owner = f"{type(self).__name__}.posterior"
        if self.hyperparameters is None:
            raise NotReadyError(f"{owner}: fit or condition the model first")
        hp = self.hyperparameters
        U = self._to_unit(check_points(owner, "X", X, self.bounds.shape[0]))
        k_star = self._covariance(self.X, U, hp)  # (n, m)
        mean = hp.mean + k_star.T @ self.alpha
        v = torch.linalg.solve_triangular(self.L, k_star, upper=False)  # (n, m)
        scale = self.y_std**2
        if covariance:
            cov = (self._covariance(U, U, hp) - v.T @ v) * scale
            variance = cov.diagonal()
        else:
            cov = None
            variance = (self._prior_variance(U, hp) - v.square().sum(0)) * scale
        return Posterior(mean * self.y_std + self.y_mean, variance.clamp(min=0.0), cov,
                         noise=float(hp.noise * scale))
