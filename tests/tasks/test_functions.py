"""Synthetic test functions: known minima, batch evaluation, the quadratic's spectrum."""

from __future__ import annotations

import math

import pytest
import torch

from stochopt.tasks import Beale, IllConditionedQuadratic, Rastrigin, Rosenbrock

FUNCTIONS = [Rosenbrock(), Rosenbrock(dim=5), Rosenbrock(a=2.0), Beale(), Rastrigin(dim=3),
             IllConditionedQuadratic(dim=6, condition=100.0)]


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f"{f.name}-{f.dim}")
def test_minimum_at_the_minimizer_with_zero_gradient(f) -> None:
    x = f.minimizer.clone().requires_grad_()
    value = f(x)
    value.backward()
    assert value.item() == pytest.approx(f.minimum, abs=1e-12)
    assert x.grad.abs().max().item() < 1e-9
    lower, upper = f.bounds.unbind(-1)
    assert bool((lower <= f.minimizer).all() and (f.minimizer <= upper).all())
    random = lower + (upper - lower) * torch.rand(100, f.dim, dtype=torch.float64,
                                                  generator=torch.Generator().manual_seed(0))
    assert f(random).shape == (100,)  # batches of points
    assert (f(random) > f.minimum).all()


def test_known_values() -> None:
    one = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert Rastrigin(dim=2)(one).item() == pytest.approx(1.0)
    assert Beale()(torch.tensor([0.0, 0.0])).item() == pytest.approx(1.5**2 + 2.25**2 + 2.625**2)
    assert Rosenbrock()(torch.tensor([0.0, 0.0])).item() == 1.0


def test_quadratic_has_the_requested_spectrum() -> None:
    f = IllConditionedQuadratic(dim=8, condition=1e4, seed=2)
    eigenvalues = f.eigenvalues
    torch.testing.assert_close(eigenvalues, torch.logspace(0, 4, 8, dtype=torch.float64),
                               rtol=1e-10, atol=0.0)
    assert not torch.allclose(f.hessian, torch.diag(torch.diagonal(f.hessian)))  # rotated
    assert math.isclose(eigenvalues.max() / eigenvalues.min(), 1e4, rel_tol=1e-10)


def test_rosenbrock_without_closed_form_minimizer_says_so() -> None:
    with pytest.raises(NotImplementedError, match=r"a=2\.0, dim=3"):
        _ = Rosenbrock(dim=3, a=2.0).minimizer
