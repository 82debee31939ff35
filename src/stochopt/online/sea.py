r"""Environments of the stochastically extended adversarial (SEA) model, with their exact
comparators, constants and variation quantities.

In the SEA model (Sachs et al. 2022) nature picks a distribution :math:`\mathcal D_t` at each
round, the learner plays :math:`x_t`, and :math:`f_t \sim \mathcal D_t` is revealed;
:math:`F_t = \mathbb E f_t`. The two quantities the regret bounds depend on are

.. math::
    \sigma^2_{1:T} = \sum_{t=1}^T \sup_{x \in X} \mathbb E\|\nabla f_t(x) - \nabla F_t(x)\|^2,
    \qquad
    \Sigma^2_{1:T} = \sum_{t=2}^T \sup_{x \in X} \|\nabla F_t(x) - \nabla F_{t-1}(x)\|^2.

(Some authors start :math:`\Sigma^2_{1:T}` at :math:`t = 1` with :math:`\nabla F_0 = 0`, which
adds the constant :math:`\sup_x\|\nabla F_1(x)\|^2 \le G^2`.) The distributions here do not
depend on the learner, so both sums are deterministic and computed in closed form.

Each environment draws all of its randomness at construction from an explicit seed, for
``rounds`` rounds and ``runs`` independent copies (the learners' leading dimension): points
have shape ``(runs, d)``. The domain is the ball :math:`\{\|x\| \le r\}`.

* :class:`SEAQuadratic`: :math:`f_t(x) = \tfrac12 (x - c_t)^\top H (x - c_t) + \langle\xi_t,
  x\rangle`, :math:`H = \mathrm{diag}(h)`, :math:`\xi_t \sim N(0, s^2 I)`; strongly convex with
  :math:`\lambda = \min h`, and effectively only convex when :math:`h` spans many scales.
* :class:`SEALeastSquares`: :math:`f_t(w) = \tfrac12(\langle a_t, w\rangle - b_t)^2` with
  :math:`a_t` uniform on the unit sphere and :math:`b_t = \langle a_t, u_t\rangle + n\epsilon_t`,
  :math:`\epsilon_t = \pm 1`: exp-concave, not strongly convex per round.

In both, the adversarial part moves a centre along a unit direction :math:`e`:
:math:`c_t = c_0 + v\,w(t)\,e` with a square wave (:math:`w(t) = +1` on the first half of each
period of :math:`P` rounds, :math:`-1` on the second; :math:`P = 2` flips every round) or a sine
:math:`w(t) = \sin(2\pi t / P)`.

References:
    Sachs, Hadiji, van Erven & Guzmán, "Between stochastic and adversarial online convex
    optimization: improved regret bounds via smoothness", NeurIPS 2022, arXiv:2202.07554.
    Chen, Zhang, Tu, Zhao & Zhang, "Optimistic online mirror descent for bridging stochastic
    and adversarial online convex optimization", ICML 2023, arXiv:2302.04552.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stochopt._checks import check_int, check_seed, show
from stochopt.online.domains import Ball, all_finite, minimize_quadratic_on_ball

__all__ = ["SEALeastSquares", "SEAQuadratic"]

_DTYPE = torch.float64


def _check_real(owner: str, name: str, value: float, *, low: float = 0.0,
                strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}: {name} must be a real number, got {show(value)}")
    if not (value > low if strict else value >= low) or not math.isfinite(value):
        sign = ">" if strict else ">="
        raise ValueError(f"{owner}: {name} must be finite and {sign} {low:g}, got {value!r}")


def _vector(owner: str, name: str, value: Tensor | None, dim: int, default: float) -> Tensor:
    if value is None:
        return torch.full((dim,), default, dtype=_DTYPE)
    if not isinstance(value, Tensor) or value.shape != (dim,) or not value.is_floating_point():
        raise ValueError(f"{owner}: {name} must be a floating-point tensor of shape ({dim},), "
                         f"got {show(value)}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{owner}: {name} must be finite, got {value.tolist()}")
    return value.detach().to(_DTYPE).clone()


class _SEA:
    """The shared part: sizes, the seed, the domain and the moving centre."""

    def __init__(self, dim: int, rounds: int, runs: int, radius: float, amplitude: float,
                 period: int, wave: str, direction: Tensor | None, seed: int) -> None:
        owner = type(self).__name__
        check_int(owner, "dim", dim, low=1)
        check_int(owner, "rounds", rounds, low=1)
        check_int(owner, "runs", runs, low=1)
        check_int(owner, "period", period, low=2)
        check_seed(owner, "seed", seed)
        _check_real(owner, "radius", radius, strict=True)
        _check_real(owner, "amplitude", amplitude)
        if wave not in ("square", "sine"):
            raise ValueError(f"{owner}: wave must be 'square' or 'sine', got {show(wave)}")
        e = torch.zeros(dim, dtype=_DTYPE)
        e[0] = 1.0
        e = _vector(owner, "direction", direction, dim, 0.0) if direction is not None else e
        if not math.isclose(float(e.norm()), 1.0, rel_tol=1e-12):
            raise ValueError(f"{owner}: direction must have unit norm, got norm {float(e.norm())}")
        self.dim, self.rounds, self.runs = dim, rounds, runs
        self.amplitude, self.period, self.wave, self.direction = amplitude, period, wave, e
        self.domain = Ball(dim, radius=radius)
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def radius(self) -> float:
        return self.domain.radius

    @property
    def diameter(self) -> float:
        """:math:`D = 2r`."""
        return self.domain.diameter

    def _wave(self) -> Tensor:
        """:math:`w(t)` for :math:`t = 1..T`, shape ``(T,)``."""
        t = torch.arange(1, self.rounds + 1, dtype=_DTYPE)
        if self.wave == "sine":
            return torch.sin(2 * math.pi * t / self.period)
        first_half = torch.remainder(t - 1, self.period) < self.period / 2
        return torch.where(first_half, 1.0, -1.0).to(_DTYPE)

    def _check_round(self, t: int, x: Tensor) -> None:
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= self.rounds:
            raise ValueError(f"{type(self).__name__}.reveal: t must be an integer in [1, "
                             f"{self.rounds}], got {t!r}")
        owner = f"{type(self).__name__}.reveal"
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{owner}: x must be a floating-point tensor, got {show(x)}")
        if x.shape != (self.runs, self.dim):
            raise ValueError(f"{owner}: x must have shape ({self.runs}, {self.dim}), got "
                             f"{tuple(x.shape)}")
        if not all_finite(x):
            raise ValueError(f"{owner}: x must be finite, got a NaN or infinite coordinate")

    def _check_horizon(self, horizon: int) -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, int) or not (
                1 <= horizon <= self.rounds):
            raise ValueError(f"{type(self).__name__}: horizon must be an integer in [1, "
                             f"{self.rounds}], got {horizon!r}")

    def start(self) -> Tensor:
        """The origin for every run, shape ``(runs, d)``: a starting point in the domain."""
        return torch.zeros(self.runs, self.dim, dtype=_DTYPE)


class SEAQuadratic(_SEA):
    """:math:`f_t(x) = \\tfrac12 (x - c_t)^\\top H (x - c_t) + \\langle \\xi_t, x\\rangle` on the
    ball :math:`\\|x\\| \\le r`, with :math:`\\xi_t \\sim N(0, s^2 I)` and
    :math:`c_t = c_0 + v\\,w(t)\\,e` (see the module).

    Exact quantities: :math:`\\sigma^2_t = s^2 d`,
    :math:`\\Sigma^2_t = \\|H(c_t - c_{t-1})\\|^2`; smoothness :math:`L = \\max h`, strong
    convexity :math:`\\lambda = \\min h`; the best fixed point over :math:`T` rounds minimizes
    :math:`\\tfrac T2 u^\\top H u - \\langle \\sum_t (H c_t - \\xi_t), u\\rangle` on the ball
    (the projection of the mean centre shifted by the mean noise when :math:`H = I`), solved by
    :func:`~stochopt.online.domains.minimize_quadratic_on_ball`. Gaussian noise has no bound:
    :attr:`gradient_bound` is :math:`\\max h\\,(r + \\max_t\\|c_t\\|) + s(\\sqrt d + 6)`, which
    bounds :math:`\\|\\nabla f_t\\|` except with probability :math:`e^{-18}` per round
    (:math:`\\|\\xi\\| - s\\sqrt d` is :math:`s`-sub-Gaussian).

    Args:
        dim: :math:`d` (default 10).
        rounds: :math:`T`, the number of rounds drawn.
        runs: independent copies (default 1), the leading dimension of points.
        radius: :math:`r` (default 5.0).
        center: :math:`c_0`, shape ``(d,)`` (default the origin).
        curvatures: :math:`h > 0`, shape ``(d,)`` (default ones: :math:`H = I`).
        noise: :math:`s \\ge 0` (default 0.0).
        amplitude: :math:`v \\ge 0` (default 0.0).
        period: :math:`P \\ge 2` rounds (default 2).
        wave: ``"square"`` (default) or ``"sine"``.
        direction: :math:`e`, unit norm, shape ``(d,)`` (default the first coordinate).
        seed: seed of the noise (default 0).

    Example:
        >>> env = SEAQuadratic(2, rounds=4, noise=0.0, amplitude=1.0)  # c_t = +-e_1
        >>> env.variances(4)  # sigma^2 = 0; Sigma^2 = 3 flips of size 2
        (0.0, 12.0)
        >>> env.hindsight(4)[0]  # the mean centre
        tensor([[0., 0.]], dtype=torch.float64)
    """

    def __init__(self, dim: int = 10, *, rounds: int, runs: int = 1, radius: float = 5.0,
                 center: Tensor | None = None, curvatures: Tensor | None = None,
                 noise: float = 0.0, amplitude: float = 0.0, period: int = 2,
                 wave: str = "square", direction: Tensor | None = None, seed: int = 0) -> None:
        super().__init__(dim, rounds, runs, radius, amplitude, period, wave, direction, seed)
        _check_real("SEAQuadratic", "noise", noise)
        self.curvatures = _vector("SEAQuadratic", "curvatures", curvatures, dim, 1.0)
        if not bool((self.curvatures > 0).all()):
            raise ValueError(f"SEAQuadratic: curvatures must be > 0, got "
                             f"{self.curvatures.tolist()}")
        self.noise = float(noise)
        c0 = _vector("SEAQuadratic", "center", center, dim, 0.0)
        self.centers = c0 + amplitude * self._wave().unsqueeze(-1) * self.direction  # (T, d)
        self.xi = noise * torch.randn(rounds, runs, dim, generator=self.generator,
                                      dtype=_DTYPE)  # (T, runs, d)

    @property
    def smoothness(self) -> float:
        """:math:`L = \\max h`."""
        return float(self.curvatures.max())

    @property
    def strong_convexity(self) -> float:
        """:math:`\\lambda = \\min h`."""
        return float(self.curvatures.min())

    @property
    def gradient_bound(self) -> float:
        """:math:`G` (see the class docstring)."""
        reach = self.radius + float(self.centers.norm(dim=-1).max())
        return self.smoothness * reach + self.noise * (math.sqrt(self.dim) + 6)

    def reveal(self, t: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`f_t(x)` (shape ``(runs,)``) and :math:`\\nabla f_t(x)` (shape ``(runs, d)``)
        for round :math:`t \\in [1, T]` and points ``x`` of shape ``(runs, d)``."""
        self._check_round(t, x)
        return self._reveal(t, x)

    def _reveal(self, t: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`reveal` on a checked round and points."""
        z, xi = x - self.centers[t - 1], self.xi[t - 1]  # (runs, d)
        hz = self.curvatures * z
        return 0.5 * (z * hz).sum(-1) + (xi * x).sum(-1), hz + xi

    def hindsight(self, horizon: int) -> tuple[Tensor, Tensor]:
        """The best fixed point over the first ``horizon`` rounds (shape ``(runs, d)``) and its
        cumulative loss (shape ``(runs,)``)."""
        self._check_horizon(horizon)
        c, xi, h = self.centers[:horizon], self.xi[:horizon], self.curvatures
        p = (h * c).sum(0) - xi.sum(0)  # (runs, d)
        A = torch.diag(horizon * h).expand(self.runs, -1, -1)
        u = minimize_quadratic_on_ball(A, p, self.radius)
        const = 0.5 * float((h * c.square()).sum())
        return u, 0.5 * horizon * (h * u.square()).sum(-1) - (p * u).sum(-1) + const

    def variances(self, horizon: int) -> tuple[float, float]:
        """:math:`(\\sigma^2_{1:T}, \\Sigma^2_{1:T})` for :math:`T` = ``horizon``."""
        self._check_horizon(horizon)
        jumps = self.curvatures * self.centers[:horizon].diff(dim=0)  # H (c_t - c_{t-1})
        return horizon * self.noise**2 * self.dim, float(jumps.square().sum())


class SEALeastSquares(_SEA):
    """:math:`f_t(w) = \\tfrac12(\\langle a_t, w\\rangle - b_t)^2` on the ball :math:`\\|w\\| \\le
    r`, with :math:`a_t` uniform on the unit sphere, :math:`b_t = \\langle a_t, u_t\\rangle +
    n\\epsilon_t`, :math:`\\epsilon_t = \\pm 1` with probability 1/2, and
    :math:`u_t = u_0 + v\\,w(t)\\,e` (see the module).

    Exact quantities: with :math:`Z = r + \\max_t\\|u_t\\| + n \\ge |\\langle a_t, w\\rangle -
    b_t|`, :math:`G = Z` and :math:`f_t` is :math:`\\alpha`-exp-concave with
    :math:`\\alpha = 1/Z^2` (:math:`e^{-\\alpha z^2/2}` is concave for :math:`|z| \\le Z`);
    :math:`F_t(w) = \\tfrac1{2d}\\|w - u_t\\|^2 + \\tfrac{n^2}2`, so
    :math:`\\Sigma^2_t = \\|u_t - u_{t-1}\\|^2 / d^2` and, since :math:`\\mathbb E(a a^\\top -
    I/d)^2 = (1/d - 1/d^2) I`, :math:`\\sigma^2_t = (1/d - 1/d^2)(r + \\|u_t\\|)^2 + n^2`. The
    best fixed point minimizes :math:`\\tfrac12 w^\\top A w - p^\\top w` on the ball with
    :math:`A = \\sum_t a_t a_t^\\top`, :math:`p = \\sum_t b_t a_t`.

    Args:
        dim: :math:`d` (default 5).
        rounds: :math:`T`.
        runs: independent copies (default 1).
        radius: :math:`r` (default 1.0).
        target: :math:`u_0`, shape ``(d,)`` (default the origin).
        noise: :math:`n \\ge 0` (default 0.0).
        amplitude: :math:`v \\ge 0` (default 0.0).
        period: :math:`P \\ge 2` (default 2).
        wave: ``"square"`` (default) or ``"sine"``.
        direction: :math:`e` (default the first coordinate).
        seed: seed of :math:`a_t` and :math:`\\epsilon_t` (default 0).
    """

    def __init__(self, dim: int = 5, *, rounds: int, runs: int = 1, radius: float = 1.0,
                 target: Tensor | None = None, noise: float = 0.0, amplitude: float = 0.0,
                 period: int = 2, wave: str = "square", direction: Tensor | None = None,
                 seed: int = 0) -> None:
        super().__init__(dim, rounds, runs, radius, amplitude, period, wave, direction, seed)
        _check_real("SEALeastSquares", "noise", noise)
        self.noise = float(noise)
        u0 = _vector("SEALeastSquares", "target", target, dim, 0.0)
        self.targets = u0 + amplitude * self._wave().unsqueeze(-1) * self.direction  # (T, d)
        a = torch.randn(rounds, runs, dim, generator=self.generator, dtype=_DTYPE)
        self.features = a / a.norm(dim=-1, keepdim=True)  # (T, runs, d)
        signs = torch.randint(0, 2, (rounds, runs), generator=self.generator).to(_DTYPE)
        self.labels = (self.features * self.targets.unsqueeze(1)).sum(-1) + noise * (
            2 * signs - 1)  # (T, runs)

    @property
    def gradient_bound(self) -> float:
        """:math:`G = Z = r + \\max_t \\|u_t\\| + n`."""
        return self.radius + float(self.targets.norm(dim=-1).max()) + self.noise

    @property
    def exp_concavity(self) -> float:
        """:math:`\\alpha = 1/Z^2`."""
        return 1.0 / self.gradient_bound**2

    @property
    def smoothness(self) -> float:
        """:math:`L = 1` (:math:`\\|a_t\\| = 1`)."""
        return 1.0

    def reveal(self, t: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`f_t(x)` (shape ``(runs,)``) and :math:`\\nabla f_t(x) = a_t(\\langle a_t,
        x\\rangle - b_t)` (shape ``(runs, d)``)."""
        self._check_round(t, x)
        return self._reveal(t, x)

    def _reveal(self, t: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`reveal` on a checked round and points."""
        a = self.features[t - 1]
        z = (a * x).sum(-1) - self.labels[t - 1]  # (runs,)
        return 0.5 * z.square(), a * z.unsqueeze(-1)

    def hindsight(self, horizon: int) -> tuple[Tensor, Tensor]:
        """The best fixed point over the first ``horizon`` rounds (shape ``(runs, d)``) and its
        cumulative loss (shape ``(runs,)``)."""
        self._check_horizon(horizon)
        a, b = self.features[:horizon].transpose(0, 1), self.labels[:horizon].T  # (runs, T, .)
        u = minimize_quadratic_on_ball(a.transpose(-1, -2) @ a,
                                       (a * b.unsqueeze(-1)).sum(1), self.radius)
        return u, 0.5 * ((a @ u.unsqueeze(-1)).squeeze(-1) - b).square().sum(-1)

    def variances(self, horizon: int) -> tuple[float, float]:
        """:math:`(\\sigma^2_{1:T}, \\Sigma^2_{1:T})` for :math:`T` = ``horizon``."""
        self._check_horizon(horizon)
        d, u = self.dim, self.targets[:horizon]
        spread = (1 / d - 1 / d**2) * (self.radius + u.norm(dim=-1)).square() + self.noise**2
        return float(spread.sum()), float(u.diff(dim=0).square().sum()) / d**2
