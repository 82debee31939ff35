"""Domains: each projection is exact (closed forms, brute force over supports, KKT conditions in
float64), batched over leading dimensions, and bad arguments are refused."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from stochopt.online import Ball, Box, Domain, Simplex, minimize_quadratic_on_ball

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_ball_projection_is_the_radial_rescaling_around_the_center() -> None:
    center = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    ball = Ball(3, radius=2.0, center=center)
    y = torch.tensor([[4.0, 2.0, 0.5], [1.5, -2.0, 0.5]], dtype=F64)  # outside; inside
    out = ball.project(y)
    # ||y0 - c|| = ||(3, 4, 0)|| = 5 -> c + (3, 4, 0) * 2 / 5
    torch.testing.assert_close(out[0], torch.tensor([2.2, -0.4, 0.5], dtype=F64),
                               rtol=0, atol=1e-15)
    torch.testing.assert_close(out[1], y[1], rtol=0, atol=0)
    assert ball.diameter == 4.0 and ball.contains(out).all()


def test_box_projection_clips_and_has_the_diagonal_as_diameter() -> None:
    box = Box(torch.tensor([0.0, -1.0], dtype=F64), torch.tensor([1.0, 2.0], dtype=F64))
    y = torch.tensor([[-3.0, 5.0], [0.25, 0.0]], dtype=F64)
    torch.testing.assert_close(box.project(y), torch.tensor([[0.0, 2.0], [0.25, 0.0]],
                                                            dtype=F64), rtol=0, atol=0)
    assert box.diameter == pytest.approx(math.sqrt(10.0), rel=1e-15)


def _simplex_by_supports(y: list[float]) -> list[float]:
    """Brute force: on every support S, the projection onto {x_S >= 0, sum x_S = 1, x_rest = 0}
    restricted to the affine hull is y_S - (sum y_S - 1)/|S|; keep the nonnegative candidates
    and return the nearest one."""
    d, best, best_dist = len(y), None, math.inf
    for k in range(1, d + 1):
        for support in itertools.combinations(range(d), k):
            shift = (sum(y[i] for i in support) - 1) / k
            x = [y[i] - shift if i in support else 0.0 for i in range(d)]
            if min(x) >= -1e-15:
                dist = sum((a - b) ** 2 for a, b in zip(x, y))
                if dist < best_dist:
                    best, best_dist = x, dist
    assert best is not None
    return best


def test_simplex_projection_matches_brute_force_over_supports() -> None:
    y = 2 * torch.randn(40, 5, generator=_gen(), dtype=F64)
    out = Simplex(5).project(y)
    expected = torch.tensor([_simplex_by_supports(row) for row in y.tolist()], dtype=F64)
    # both are a few additions and one division of O(1) numbers: agreement to rounding
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)
    assert Simplex(5).contains(out).all() and Simplex(5).diameter == math.sqrt(2)


def test_projections_are_batched_and_accept_non_contiguous_points() -> None:
    y = torch.randn(4, 3, 6, generator=_gen(1), dtype=F64).transpose(0, 1)  # (3, 4, 6)
    assert not y.is_contiguous()
    box = Box(-0.5 * torch.ones(6, dtype=F64), 0.5 * torch.ones(6, dtype=F64))
    for domain in (Ball(6, radius=0.7), box, Simplex(6)):
        assert isinstance(domain, Domain)
        batched = domain.project(y)
        one_by_one = torch.stack([torch.stack([domain.project(p) for p in row]) for row in y])
        torch.testing.assert_close(batched, one_by_one, rtol=0, atol=0)
        torch.testing.assert_close(domain.project(batched), batched, rtol=0, atol=1e-15)
        assert batched.shape == (3, 4, 6) and domain.contains(batched).all()


def _spd(n: int, d: int, seed: int) -> torch.Tensor:
    B = torch.randn(n, d, d, generator=_gen(seed), dtype=F64)
    return B @ B.transpose(-1, -2) + 0.05 * torch.eye(d, dtype=F64)


def _projection_by_bisection(U: torch.Tensor, y: torch.Tensor, r: float) -> torch.Tensor:
    """Independent reference: w(mu) = (U + mu I)^{-1} U y by dense solves, mu by 200 steps of
    plain bisection on ||w(mu)|| = r (||w|| decreases in mu)."""
    eye = torch.eye(y.numel(), dtype=F64)

    def w(mu: float) -> torch.Tensor:
        return torch.linalg.solve(U + mu * eye, U @ y)

    lo, hi = 0.0, 1.0
    while w(hi).norm() > r:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if w(mid).norm() > r else (lo, mid)
    return w(hi)


def test_metric_projection_on_the_ball_satisfies_kkt_and_matches_bisection() -> None:
    U, ball = _spd(30, 4, seed=2), Ball(4, radius=1.0)
    y = 3 * torch.randn(30, 4, generator=_gen(3), dtype=F64)
    w = ball.project(y, metric=U)
    # KKT of min 1/2 ||w - y||_U^2 s.t. ||w|| <= 1: U (w - y) + mu w = 0, mu >= 0, and
    # mu (||w|| - 1) = 0. mu recovered by least squares; residuals relative to ||U y|| ~ 10
    grad = (U @ (w - y).unsqueeze(-1)).squeeze(-1)
    mu = -(grad * w).sum(-1) / w.square().sum(-1)
    assert (mu >= -1e-12).all()
    torch.testing.assert_close(grad + mu.unsqueeze(-1) * w, torch.zeros_like(w), rtol=0,
                               atol=1e-12)
    outside = y.norm(dim=-1) > 1
    torch.testing.assert_close(w[outside].norm(dim=-1), torch.ones(int(outside.sum()),
                                                                   dtype=F64), rtol=0, atol=1e-15)
    for i in range(5):
        # bisection stops at width 2^-200 * hi: the two agree to rounding of w (norm 1)
        torch.testing.assert_close(w[i], _projection_by_bisection(U[i], y[i], 1.0), rtol=0,
                                   atol=1e-12)


def test_metric_projection_beats_every_sampled_feasible_point() -> None:
    U = _spd(1, 3, seed=4)[0]
    ball = Ball(3, radius=0.5, center=torch.tensor([0.1, 0.0, -0.2], dtype=F64))
    y = torch.tensor([2.0, -1.0, 0.5], dtype=F64)
    w = ball.project(y, metric=U)
    z = torch.randn(20000, 3, generator=_gen(5), dtype=F64)
    feasible = ball.project(z)  # points of the ball, many on the sphere
    value = ((w - y) @ U * (w - y)).sum()
    values = ((feasible - y) @ U * (feasible - y)).sum(-1)
    assert bool((values >= value - 1e-12).all())


def test_metric_projection_leaves_points_of_the_ball_alone() -> None:
    y = torch.tensor([[0.1, 0.2], [0.3, -0.4]], dtype=F64)
    U = _spd(2, 2, seed=6)
    torch.testing.assert_close(Ball(2).project(y, metric=U), y, rtol=0, atol=0)


def test_quadratic_on_ball_in_the_singular_cases() -> None:
    A = torch.diag(torch.tensor([2.0, 0.0, 0.0], dtype=F64))
    # p orthogonal to the null space, A^+ p inside: mu = 0, minimum-norm minimizer
    w = minimize_quadratic_on_ball(A, torch.tensor([1.0, 0.0, 0.0], dtype=F64), 1.0)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.0, 0.0], dtype=F64), rtol=0, atol=0)
    # p orthogonal to the null space, A^+ p outside: on the sphere, w = (4 / (2 + mu), 0, 0)
    w = minimize_quadratic_on_ball(A, torch.tensor([4.0, 0.0, 0.0], dtype=F64), 1.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.0, 0.0], dtype=F64), rtol=0, atol=1e-15)
    # p with a null-space part: w = (1/(2 + mu), 1/mu, 0) with ||w|| = 1; check KKT directly
    p = torch.tensor([1.0, 1.0, 0.0], dtype=F64)
    w = minimize_quadratic_on_ball(A, p, 1.0)
    mu = 1.0 / float(w[1])
    assert mu > 0 and float(w.norm()) == pytest.approx(1.0, abs=1e-15)
    torch.testing.assert_close(A @ w - p + mu * w, torch.zeros(3, dtype=F64), rtol=0,
                               atol=1e-14)
    # A = 0: the linear minimizer r p / ||p||
    w = minimize_quadratic_on_ball(torch.zeros(2, 2, dtype=F64),
                                   torch.tensor([3.0, 4.0], dtype=F64), 2.0)
    torch.testing.assert_close(w, torch.tensor([1.2, 1.6], dtype=F64), rtol=0, atol=1e-15)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"Ball: radius must be in \(0, inf\), got -1"):
        Ball(2, radius=-1.0)
    with pytest.raises(TypeError, match=r"Ball: radius must be a real number, got '1'"):
        Ball(2, radius="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Simplex: dim must be >= 1, got 0"):
        Simplex(0)
    with pytest.raises(ValueError, match=r"Box: need finite lower <= upper"):
        Box(torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match=r"Ball: points must have shape \(\.\.\., 3\), got"):
        Ball(3).project(torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match=r"metric must have shape \(\.\.\., 2, 2\), got \(3, 3\)"):
        Ball(2).project(torch.ones(2, dtype=F64), metric=torch.eye(3, dtype=F64))
