r"""Convex domains of online learning, with exact Euclidean projections and their diameters.

Every domain acts on the last dimension of a tensor: a point of :math:`\mathbb{R}^d` has shape
``(d,)``; leading dimensions are independent runs (``(..., d)``), projected at once.

* :class:`Ball` :math:`\{x : \|x - c\|_2 \le r\}`, diameter :math:`2r`; it also projects in the
  norm :math:`\|v\|_U = \sqrt{v^\top U v}` of a symmetric positive-definite :math:`U` (the
  online-Newton-step projection), through :func:`minimize_quadratic_on_ball`.
* :class:`Box` :math:`\{x : l \le x \le u\}`, diameter :math:`\|u - l\|_2`.
* :class:`Simplex` :math:`\{x \ge 0 : \sum_i x_i = 1\}`, diameter :math:`\sqrt 2`, projected by
  the sort-based algorithm.

All projections are exact up to floating-point rounding (the :math:`U`-norm one solves a
one-dimensional monotone equation to machine precision). They refuse points with a NaN or
infinite coordinate (a ``ValueError``: such a point has no projection), where ``contains``
answers False. The learners project the points they compute every round (after checking the
gradient they came from) through the unchecked ``_project`` (see ``projector``).

References:
    Held, Wolfe & Crowder, "Validation of subgradient optimization", Mathematical Programming
    1974; Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient projections onto the l1-ball for
    learning in high dimensions", ICML 2008 (sort-based simplex projection).
    Moré & Sorensen, "Computing a trust region step", SIAM J. Sci. Stat. Comput. 1983 (the
    secular equation :math:`1/\|w(\mu)\| = 1/r`, Newton from the left).
    Hazan, Agarwal & Kale, "Logarithmic regret algorithms for online convex optimization",
    Machine Learning 2007 (projections in the norm of :math:`A_t` for the online Newton step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, check_tensor, show

__all__ = ["Ball", "Box", "Domain", "Simplex", "minimize_quadratic_on_ball"]


@runtime_checkable
class Domain(Protocol):
    """A closed convex set of :math:`\\mathbb{R}^d` with an exact Euclidean projection."""

    dim: int

    @property
    def diameter(self) -> float:
        """:math:`D = \\sup_{x, y} \\|x - y\\|_2`."""
        ...

    def project(self, y: Tensor) -> Tensor:
        """:math:`\\Pi(y) = \\arg\\min_{x} \\|x - y\\|_2`, for ``y`` of shape ``(..., d)``."""
        ...

    def contains(self, x: Tensor, *, atol: float = 1e-12) -> Tensor:
        """Whether each point of ``x`` (shape ``(..., d)``) lies in the set (shape ``(...)``)."""
        ...


def all_finite(x: Tensor) -> bool:
    """Whether every entry of ``x`` is finite, in one host synchronization in the usual case:
    the sum is finite exactly when every entry is, unless finite entries overflow it (only then
    are the entries checked one by one)."""
    return math.isfinite(x.sum().item()) or bool(torch.isfinite(x).all())


def _check_point(owner: str, y: Tensor, dim: int, *, finite: bool = False) -> None:
    """``y`` is a floating-point tensor of points ``(..., dim)`` (with finite coordinates if
    ``finite``)."""
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise TypeError(f"{owner}: points must be floating-point tensors, got {show(y)}")
    if y.dim() == 0 or y.shape[-1] != dim:
        raise ValueError(f"{owner}: points must have shape (..., {dim}), got {tuple(y.shape)}")
    if finite and not all_finite(y):
        raise ValueError(f"{owner}: points must be finite to be projected, got a NaN or "
                         f"infinite coordinate")


def _check_atol(owner: str, atol: float) -> None:
    check_real(f"{owner}.contains", "atol", atol, low_open=False)


class Ball:
    """The Euclidean ball :math:`\\{x : \\|x - c\\|_2 \\le r\\}`.

    Args:
        dim: :math:`d`.
        radius: :math:`r > 0` (default 1).
        center: :math:`c`, shape ``(d,)`` (default the origin).

    Example:
        >>> import torch
        >>> ball = Ball(2, radius=1.0)
        >>> ball.project(torch.tensor([3.0, 4.0], dtype=torch.float64))
        tensor([0.6000, 0.8000], dtype=torch.float64)
    """

    def __init__(self, dim: int, *, radius: float = 1.0, center: Tensor | None = None) -> None:
        check_int("Ball", "dim", dim)
        check_real("Ball", "radius", radius)
        if center is not None:
            center = check_tensor("Ball", "center", center, shape=(dim,))
        self.dim, self.radius = dim, float(radius)
        self.center = None if center is None else center.detach().clone()

    @property
    def diameter(self) -> float:
        return 2 * self.radius

    def _offset(self, y: Tensor) -> Tensor:
        return y if self.center is None else y - self.center.to(y)

    def contains(self, x: Tensor, *, atol: float = 1e-12) -> Tensor:
        _check_point("Ball", x, self.dim)
        _check_atol("Ball", atol)
        return torch.linalg.vector_norm(self._offset(x), dim=-1) <= self.radius + atol

    def project(self, y: Tensor, *, metric: Tensor | None = None) -> Tensor:
        """:math:`\\arg\\min_{\\|x - c\\| \\le r} \\|x - y\\|_U^2` with :math:`U` = ``metric``.

        Args:
            y: points, shape ``(..., d)``.
            metric: :math:`U`, symmetric positive semidefinite and finite, shape ``(d, d)``
                or ``(..., d, d)`` (default ``None``: the identity, where the projection is the
                radial rescaling :math:`c + (y - c)\\min(1, r / \\|y - c\\|)`).

        Returns:
            The projections, shape ``(..., d)``. Points already in the ball are returned as
            they are, whatever the metric.
        """
        _check_point("Ball", y, self.dim, finite=True)
        if metric is not None:
            _check_metric(metric, y.shape[:-1], self.dim)
        return self._project(y, metric, what="Ball.project: metric")

    def _project(self, y: Tensor, metric: Tensor | None = None, *,
                 what: str | None = None) -> Tensor:
        """:meth:`project` on checked arguments. ``what`` names the metric in the error raised
        if it is not positive semidefinite; ``None`` (a learner's own metric, positive definite
        by construction) skips that check."""
        z = self._offset(y)  # (..., d)
        norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True)  # (..., 1)
        if metric is None:
            scale = torch.where(norm > self.radius, self.radius / norm, torch.ones_like(norm))
            return y + (scale - 1) * z
        metric = metric.expand(*z.shape[:-1], self.dim, self.dim)
        outside = norm.squeeze(-1) > self.radius  # (...)
        if not bool(outside.any()):
            return y.clone()
        # min 1/2 (w - z)^T U (w - z) over ||w|| <= r: the quadratic (A, p) = (U, U z)
        u, zo = metric[outside], z[outside]  # (n, d, d), (n, d)
        w = _quadratic_on_ball(u, (u @ zo.unsqueeze(-1)).squeeze(-1), self.radius, what)
        out = z.clone()
        out[outside] = w
        return out if self.center is None else out + self.center.to(y)


def _check_metric(metric: Tensor, batch: torch.Size, dim: int) -> None:
    """``metric`` a finite symmetric floating tensor ``(..., d, d)`` whose leading dimensions
    broadcast to the points' ``batch`` (positive semidefiniteness is checked where its
    eigenvalues are computed)."""
    owner = "Ball.project"
    if not isinstance(metric, Tensor) or not metric.is_floating_point():
        raise TypeError(f"{owner}: metric must be a floating-point tensor, got {show(metric)}")
    if metric.dim() < 2 or metric.shape[-2:] != (dim, dim):
        raise ValueError(f"{owner}: metric must have shape (..., {dim}, {dim}), got "
                         f"{tuple(metric.shape)}")
    lead = metric.shape[:-2]  # must broadcast to the points' batch dimensions
    fits = len(lead) <= len(batch) and all(m in (1, b) for m, b in zip(lead[::-1], batch[::-1]))
    if not fits:
        raise ValueError(f"{owner}: metric must have shape (..., {dim}, {dim}) with leading "
                         f"dimensions that broadcast to the points' {tuple(batch)}, got "
                         f"{tuple(metric.shape)}")
    _check_symmetric(owner, "metric", metric)


def _check_symmetric(owner: str, name: str, A: Tensor) -> None:
    """``A`` is finite and symmetric up to rounding."""
    if not bool(torch.isfinite(A).all()):
        raise ValueError(f"{owner}: {name} must be finite, got a NaN or infinite entry")
    if A.numel() and float((A - A.mT).abs().amax()) > 1e-10 * float(A.abs().amax()):
        raise ValueError(f"{owner}: {name} must be symmetric")


def minimize_quadratic_on_ball(A: Tensor, p: Tensor, radius: float) -> Tensor:
    """Exact minimizer of :math:`q(w) = \\tfrac12 w^\\top A w - p^\\top w` over
    :math:`\\|w\\|_2 \\le r`, for symmetric positive-semidefinite :math:`A`.

    With :math:`A = Q \\Lambda Q^\\top` and :math:`\\tilde p = Q^\\top p`, the KKT conditions give
    :math:`w(\\mu) = (A + \\mu I)^{-1} p`, :math:`\\mu \\ge 0`, :math:`\\mu (\\|w\\| - r) = 0`. If
    :math:`A` is invertible and :math:`\\|A^{-1} p\\| \\le r`, :math:`\\mu = 0`. Otherwise
    :math:`\\mu > 0` solves the secular equation
    :math:`h(\\mu) = 1/\\|w(\\mu)\\| - 1/r = 0`, where
    :math:`\\|w(\\mu)\\|^2 = \\sum_i \\tilde p_i^2 / (\\lambda_i + \\mu)^2`; :math:`h` is
    increasing and concave, so Newton's method from the left converges monotonically
    (safeguarded by the bracket :math:`[0, \\|p\\| / r]`). The singular case with :math:`p`
    orthogonal to the null space of :math:`A` and :math:`\\|A^{+} p\\| \\le r` returns the
    minimum-norm minimizer :math:`A^{+} p` (every minimizer has the same value).

    Args:
        A: :math:`A`, shape ``(..., d, d)``, symmetric positive semidefinite, finite.
        p: :math:`p`, shape ``(..., d)`` (the same leading dimensions), finite.
        radius: :math:`r > 0`, finite.

    Returns:
        :math:`w^\\star`, shape ``(..., d)``, with :math:`\\|w^\\star\\| \\le r` exactly.
    """
    owner = "minimize_quadratic_on_ball"
    check_real(owner, "radius", radius)
    for name, value in (("A", A), ("p", p)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{owner}: {name} must be a floating-point tensor, got "
                            f"{show(value)}")
    if A.dim() < 2 or A.shape[-1] != A.shape[-2] or p.shape != A.shape[:-1]:
        raise ValueError(f"{owner}: A must have shape (..., d, d) and p (..., d), got "
                         f"{tuple(A.shape)} and {tuple(p.shape)}")
    _check_symmetric(owner, "A", A)
    if not bool(torch.isfinite(p).all()):
        raise ValueError(f"{owner}: p must be finite, got a NaN or infinite entry")
    return _quadratic_on_ball(A, p, float(radius), f"{owner}: A")


def _quadratic_on_ball(A: Tensor, p: Tensor, radius: float, what: str | None) -> Tensor:
    """:func:`minimize_quadratic_on_ball` on checked arguments; ``what`` names ``A`` in the
    error raised if it is not positive semidefinite (``None``: ``A`` is known to be, and the
    check is skipped)."""
    lam, Q = torch.linalg.eigh(A)  # (..., d), (..., d, d)
    if what is not None and lam.numel() and float(lam.amin()) < -1e-8 * float(
            lam.abs().amax()):
        raise ValueError(f"{what} must be positive semidefinite, got an eigenvalue "
                         f"{float(lam.amin()):.3g}")
    lam = lam.clamp_min(0.0)  # PSD: rounding can leave tiny negatives
    q = (Q.transpose(-1, -2) @ p.unsqueeze(-1)).squeeze(-1)  # (..., d)
    eps = A.shape[-1] * torch.finfo(A.dtype).eps
    null = lam <= eps * lam.amax(-1, keepdim=True)  # numerically zero eigenvalues
    q = torch.where(null & (q.abs() <= eps * torch.linalg.vector_norm(q, dim=-1, keepdim=True)),
                    torch.zeros_like(q), q)  # rounding noise in the null space is dropped
    unbounded = (null & (q != 0)).any(-1)  # q has a null-space part: no free minimizer
    free = torch.where(null, torch.zeros_like(q), q / torch.where(null, 1.0, lam))  # A^+ p
    inside = ~unbounded & (torch.linalg.vector_norm(free, dim=-1) <= radius)
    mu = torch.where(inside, torch.zeros_like(lam[..., 0]), _secular_root(lam, q, radius))
    denom = torch.where(inside.unsqueeze(-1), torch.where(null, 1.0, lam),
                        lam + mu.unsqueeze(-1))
    coords = torch.where(inside.unsqueeze(-1) & null, torch.zeros_like(q), q / denom)
    w = (Q @ coords.unsqueeze(-1)).squeeze(-1)
    norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
    return torch.where(norm > radius, w * (radius / norm), w)  # rounding: stay feasible


def _secular_root(lam: Tensor, q: Tensor, radius: float, max_iter: int = 100) -> Tensor:
    """The root :math:`\\mu > 0` of :math:`h(\\mu) = 1/\\|q / (\\lambda + \\mu)\\| - 1/r`, for
    :math:`\\lambda \\ge 0` (shape ``(..., d)``) where it exists (else any value, unused):
    Newton from the left, bisection inside the bracket :math:`[0, \\|q\\|/r]` when a step
    leaves it."""
    lo = torch.zeros(lam.shape[:-1], dtype=lam.dtype, device=lam.device)
    hi = torch.linalg.vector_norm(q, dim=-1) / radius  # ||w(hi)|| <= ||q|| / hi = r
    q2 = q.square()
    mu = lo
    for _ in range(max_iter):
        inv = 1.0 / (lam + mu.unsqueeze(-1))  # (..., d); inf where lam = mu = 0
        s2 = torch.where(q2 > 0, q2 * inv.square(), 0.0).sum(-1)  # ||w(mu)||^2
        s3 = torch.where(q2 > 0, q2 * inv.pow(3), 0.0).sum(-1)  # -d||w||^2/dmu / 2
        norm = s2.sqrt()
        h = 1.0 / norm - 1.0 / radius
        lo = torch.where(h < 0, mu, lo)
        hi = torch.where(h >= 0, mu, hi)
        step = mu - h * norm.pow(3) / s3  # h'(mu) = s3 / ||w||^3
        ok = torch.isfinite(step) & (step > lo) & (step < hi)
        new = torch.where(ok, step, 0.5 * (lo + hi))
        if bool(((new - mu).abs() <= 4 * torch.finfo(lam.dtype).eps * new).all()):
            return new
        mu = new
    return mu


class Box:
    """The box :math:`\\{x : l \\le x \\le u\\}` (coordinate-wise).

    Args:
        lower: :math:`l`, shape ``(d,)``.
        upper: :math:`u`, shape ``(d,)``, with :math:`l \\le u`.

    Example:
        >>> import torch
        >>> box = Box(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
        >>> box.project(torch.tensor([-1.0, 0.5], dtype=torch.float64)), box.diameter
        (tensor([0.0000, 0.5000], dtype=torch.float64), 1.4142135623730951)
    """

    def __init__(self, lower: Tensor, upper: Tensor) -> None:
        for name, bound in (("lower", lower), ("upper", upper)):
            if not isinstance(bound, Tensor) or not bound.is_floating_point() or bound.dim() != 1:
                raise TypeError(f"Box: {name} must be a 1-d floating-point tensor, got "
                                f"{show(bound)}")
        if lower.shape != upper.shape or lower.numel() == 0:
            raise ValueError(f"Box: lower and upper must have the same non-empty shape, got "
                             f"{tuple(lower.shape)} and {tuple(upper.shape)}")
        if not bool((lower <= upper).all()) or not bool(torch.isfinite(upper - lower).all()):
            raise ValueError(f"Box: need finite lower <= upper coordinate-wise, got lower="
                             f"{lower.tolist()}, upper={upper.tolist()}")
        self.lower, self.upper = lower.detach().clone(), upper.detach().clone()
        self.dim = lower.numel()

    @property
    def diameter(self) -> float:
        return float(torch.linalg.vector_norm(self.upper - self.lower))

    def contains(self, x: Tensor, *, atol: float = 1e-12) -> Tensor:
        _check_point("Box", x, self.dim)
        _check_atol("Box", atol)
        lo, up = self.lower.to(x), self.upper.to(x)
        return ((x >= lo - atol) & (x <= up + atol)).all(-1)

    def project(self, y: Tensor) -> Tensor:
        """Coordinate-wise clipping :math:`\\min(\\max(y, l), u)`; ``y`` of shape ``(..., d)``."""
        _check_point("Box", y, self.dim, finite=True)
        return self._project(y)

    def _project(self, y: Tensor) -> Tensor:
        """:meth:`project` on checked points."""
        return torch.minimum(torch.maximum(y, self.lower.to(y)), self.upper.to(y))


class Simplex:
    """The probability simplex :math:`\\Delta_d = \\{x \\ge 0 : \\sum_i x_i = 1\\}`.

    The projection sorts :math:`y` decreasingly (:math:`y_{(1)} \\ge \\dots \\ge y_{(d)}`), takes
    :math:`\\rho = \\max\\{j : y_{(j)} - (\\sum_{i \\le j} y_{(i)} - 1)/j > 0\\}` and the threshold
    :math:`\\theta = (\\sum_{i \\le \\rho} y_{(i)} - 1)/\\rho`, and returns
    :math:`\\max(y - \\theta, 0)`.

    Args:
        dim: :math:`d`.

    Example:
        >>> import torch
        >>> Simplex(3).project(torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64))
        tensor([0.3333, 0.3333, 0.3333], dtype=torch.float64)
    """

    def __init__(self, dim: int) -> None:
        check_int("Simplex", "dim", dim)
        self.dim = dim

    @property
    def diameter(self) -> float:
        return math.sqrt(2.0) if self.dim > 1 else 0.0

    def contains(self, x: Tensor, *, atol: float = 1e-12) -> Tensor:
        _check_point("Simplex", x, self.dim)
        _check_atol("Simplex", atol)
        return (x >= -atol).all(-1) & ((x.sum(-1) - 1).abs() <= atol * self.dim)

    def project(self, y: Tensor) -> Tensor:
        """The exact Euclidean projection onto the simplex; ``y`` of shape ``(..., d)``."""
        _check_point("Simplex", y, self.dim, finite=True)
        return self._project(y)

    def _project(self, y: Tensor) -> Tensor:
        """:meth:`project` on checked points."""
        s = torch.sort(y, dim=-1, descending=True).values
        excess = s.cumsum(-1) - 1  # (..., d)
        j = torch.arange(1, self.dim + 1, dtype=y.dtype, device=y.device)
        rho = ((s - excess / j) > 0).sum(-1, keepdim=True)  # >= 1: j = 1 always qualifies
        theta = excess.gather(-1, rho - 1) / rho.to(y.dtype)
        return (y - theta).clamp_min(0.0)


_CHECKED_PROJECTIONS = (Ball.project, Box.project, Simplex.project)


def projector(domain: Domain) -> Callable[..., Tensor]:
    """The projection a learner applies every round to points it computed from checked
    input: a library domain's unchecked ``_project``, else (a domain of the caller's, or a
    subclass that overrides ``project``) the domain's ``project``."""
    if getattr(type(domain), "project", None) in _CHECKED_PROJECTIONS:
        return domain._project  # type: ignore[attr-defined]
    return domain.project
