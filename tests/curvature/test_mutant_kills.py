"""Properties of the curvature estimators that the mutation check (``make mutants``) found
untested, each derived from the estimator's definition rather than from the code."""

from __future__ import annotations

import pytest
import torch

from stochopt.curvature import hutchinson_diagonal, hvp, lanczos, power_iteration
from tests.curvature.test_spectrum import _matrix as _rotated  # a random eigenbasis


def test_gaussian_probes_are_gaussian_not_rademacher() -> None:
    # On a diagonal Hessian a * I, z * Hz = a z^2: with z ~ N(0, 1) the estimate over a is a
    # chi-square with one degree of freedom (mean 1, variance 2), with Rademacher probes it
    # is exactly 1. 20000 coordinates: the sample mean is within 0.01 and the sample variance
    # within 0.053 of theirs (one standard deviation), so the bounds below are 5 sigma.
    n, a = 20_000, 3.0
    x = torch.randn(n, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(0.5 * a * (x * x).sum(), [x], create_graph=True)
    ratio = hutchinson_diagonal([grad], [x], generator=torch.Generator().manual_seed(0),
                                distribution="gaussian")[0] / a
    assert (ratio >= 0).all()
    assert abs(ratio.mean().item() - 1.0) < 0.05
    assert abs(ratio.var().item() - 2.0) < 0.3


def test_hvp_with_a_constant_gradient_before_a_curved_one() -> None:
    # f(b, x) = sum(b) + x^T A x / 2 has the Hessian diag(0, A): the gradient of b is
    # constant (it carries no graph) and the product with (u, v) is (0, A v).
    A = _rotated(torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64))
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(b.sum() + 0.5 * x @ A @ x, [b, x], create_graph=True)
    assert grads[0].grad_fn is None and grads[1].grad_fn is not None
    u = torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64)
    v = torch.tensor([0.5, 3.0, -1.0], dtype=torch.float64)
    products = hvp(grads, [b, x], [u, v])
    assert torch.equal(products[0], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(products[1], A @ v, rtol=1e-12, atol=1e-12)


def test_lanczos_quadrature_weights_are_the_start_vectors_squared_components() -> None:
    # Golub-Welsch: after n steps the Ritz values are the eigenvalues lambda_i and the
    # weights the squared first components of T's eigenvectors, which equal (u_i . q)^2 for
    # the start vector q. On a diagonal matrix, u_i = e_i: the weights are q_i^2.
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    result = lanczos(lambda v: A @ v, 4, 4, generator=torch.Generator(), start=weights.sqrt())
    nodes, found = result.ritz()
    torch.testing.assert_close(nodes, torch.diagonal(A), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(found, weights, rtol=1e-10, atol=1e-12)


def test_lanczos_with_n_steps_finds_every_eigenvalue_once() -> None:
    # n steps span the whole space (distinct eigenvalues, random start): T_n is similar to
    # A. Without full reorthogonalization the basis loses orthogonality once the extreme
    # Ritz values converge, and T_n repeats them (ghosts) in place of interior eigenvalues.
    eigenvalues = torch.linspace(1.0, 100.0, 80, dtype=torch.float64)
    A = _rotated(eigenvalues, seed=3)
    result = lanczos(lambda v: A @ v, 80, 80, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(result.ritz()[0], eigenvalues, rtol=1e-9, atol=1e-9)


def test_power_iteration_keeps_the_sign_of_a_negative_dominant_eigenvalue() -> None:
    # the eigenvalue of largest magnitude of a matrix with spectrum [-10, 3] is -10 (a
    # Hessian at a saddle point): the Rayleigh quotient, not the norm of A v
    A = _rotated(torch.linspace(-10.0, 3.0, 30, dtype=torch.float64))
    value, vector = power_iteration(lambda v: A @ v, 30, iterations=5000, tol=1e-12,
                                    generator=torch.Generator().manual_seed(0))
    assert value == pytest.approx(-10.0, rel=1e-6)
    torch.testing.assert_close(A @ vector, value * vector, atol=1e-3, rtol=0.0)
