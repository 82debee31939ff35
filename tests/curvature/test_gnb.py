"""Gauss-Newton-Bartlett: label resampling, convergence to the Gauss-Newton diagonal, every
prediction of (B, T, V) logits counted, the official clip of the sampled gradient, complex
parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochopt.curvature import gauss_newton_bartlett, sample_labels
from tests.optim.references import gauss_newton_diagonal_ref, gnb_estimate_ref


def test_sampled_labels_follow_the_softmax() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(20_000, 3)
    labels = sample_labels(logits, torch.Generator().manual_seed(0))
    frequency = torch.bincount(labels, minlength=3).double() / 20_000
    torch.testing.assert_close(frequency, torch.softmax(logits[0].double(), 0), atol=0.01,
                               rtol=0.0)
    again = sample_labels(logits, torch.Generator().manual_seed(0))
    assert torch.equal(labels, again)


def test_mean_estimate_is_the_gauss_newton_diagonal_and_non_negative() -> None:
    # softmax regression, logits = X W: the Gauss-Newton matrix of the mean cross-entropy has
    # diagonal GN[i, c] = mean_b x_bi^2 p_bc (1 - p_bc)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    W = (0.5 * torch.randn(5, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    p = torch.softmax(X @ W.detach(), dim=1)  # (B, V)
    exact = (X**2).T @ (p * (1 - p)) / 16  # (5, 4)
    sampler = torch.Generator().manual_seed(1)
    total = torch.zeros_like(exact)
    for _ in range(1000):
        (estimate,) = gauss_newton_bartlett(X @ W, [W], generator=sampler, retain_graph=False)
        assert (estimate >= 0).all()
        total += estimate
    error = (total / 1000 - exact).norm() / exact.norm()
    assert error < 0.05, f"relative error {error:.3f}"


def _softmax_regression(shape: tuple[int, ...], n_in: int = 4, classes: int = 5, seed: int = 0):
    """Inputs of ``shape + (n_in,)`` and a float64 ``Linear(n_in, classes)``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, n_in, generator=gen, dtype=torch.float64)
    layer = torch.nn.Linear(n_in, classes).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(classes, n_in, generator=gen, dtype=torch.float64))
        layer.bias.copy_(0.5 * torch.randn(classes, generator=gen, dtype=torch.float64))
    return x, layer


def _numpy(layer: torch.nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    return layer.weight.detach().numpy(), layer.bias.detach().numpy()


def test_language_model_logits_count_every_token_as_a_prediction() -> None:
    # (B, T, V) logits: B = 3 sequences of T = 5 tokens are N = 15 predictions, and the
    # estimate is 15 g^2; counting sequences (3 g^2) would be 5 times too small
    x, layer = _softmax_regression((3, 5))
    logits = layer(x)  # (3, 5, 5)
    labels = sample_labels(logits, torch.Generator().manual_seed(2))  # (3, 5)
    expected = gnb_estimate_ref(x.numpy(), *_numpy(layer), labels.numpy())
    estimates = gauss_newton_bartlett(logits, [layer.weight, layer.bias],
                                      generator=torch.Generator().manual_seed(2))
    for got, want in zip(estimates, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=0)


def test_mean_estimate_of_language_model_logits_is_the_gauss_newton_diagonal() -> None:
    # E[N g^2] is the exact diagonal; each draw is about GN * chi2(1) per coordinate (relative
    # standard deviation ~1.4), so the mean of 250 draws is within 5 standard errors of GN
    # unless the estimator is biased (e.g. by a batch size of B instead of B * T: 4x off)
    x, layer = _softmax_regression((2, 4))
    logits = layer(x)
    exact = np.concatenate([e.ravel() for e in gauss_newton_diagonal_ref(x.numpy(),
                                                                          *_numpy(layer))])
    sampler = torch.Generator().manual_seed(1)
    draws = torch.stack([torch.cat([e.ravel() for e in gauss_newton_bartlett(
        logits, [layer.weight, layer.bias], generator=sampler)]) for _ in range(250)]).numpy()
    standard_error = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    z = np.abs(draws.mean(axis=0) - exact) / standard_error
    assert z.max() < 5, f"largest deviation {z.max():.1f} standard errors"


def test_max_norm_clips_the_sampled_gradient_as_clip_grad_norm() -> None:
    x, layer = _softmax_regression((6,))
    logits = layer(x)
    params = [layer.weight, layer.bias]
    labels = sample_labels(logits, torch.Generator().manual_seed(3)).numpy()
    unclipped = gnb_estimate_ref(x.numpy(), *_numpy(layer), labels)
    norm = np.sqrt(sum(d.sum() for d in unclipped) / 6)  # ||g||, from d = N g^2
    for max_norm in (0.25 * norm, [0.25 * norm, 0.25 * norm], 2 * norm, math.inf):
        estimates = gauss_newton_bartlett(logits, params, max_norm=max_norm,
                                          generator=torch.Generator().manual_seed(3))
        clip = max_norm[0] if isinstance(max_norm, list) else max_norm
        expected = gnb_estimate_ref(x.numpy(), *_numpy(layer), labels,
                                    grad_clip=0.0 if clip == math.inf else clip)
        for got, want in zip(estimates, expected):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=0)
    # one threshold per parameter: each scaled by its own, the norm still over both
    weight_only = gauss_newton_bartlett(logits, params, max_norm=[0.25 * norm, math.inf],
                                        generator=torch.Generator().manual_seed(3))
    coef = 0.25 * norm / (norm + 1e-6)
    np.testing.assert_allclose(weight_only[0].numpy(), coef**2 * unclipped[0], rtol=1e-12)
    np.testing.assert_allclose(weight_only[1].numpy(), unclipped[1], rtol=1e-12)


@pytest.mark.parametrize(("max_norm", "error", "match"), [
    (0.0, ValueError, r"max_norm must be in \(0, inf\], got 0\.0"),
    (-1.0, ValueError, r"max_norm must be in \(0, inf\]"),
    (math.nan, ValueError, r"max_norm must be in"),
    ("1", TypeError, r"max_norm must be a real number"),
    (torch.tensor(1.0), TypeError, r"max_norm must be a real number"),
    ([1.0], ValueError, r"max_norm has 1 values for 2 parameters"),
    ([1.0, -2.0], ValueError, r"max_norm\[1\] must be in \(0, inf\]"),
])
def test_a_bad_max_norm_is_refused_before_any_label_is_drawn(max_norm, error, match) -> None:
    x, layer = _softmax_regression((4,))
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    with pytest.raises(error, match=match):
        gauss_newton_bartlett(layer(x), [layer.weight, layer.bias], generator=generator,
                              max_norm=max_norm)
    assert torch.equal(generator.get_state(), before)


def test_a_complex_parameter_is_estimated_as_its_real_view() -> None:
    # a complex weight is two real ones: its estimate's real view must be theirs, the squares
    # of the real and imaginary gradient parts, not the real view of the complex square
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, dtype=torch.complex128, generator=gen)
    w = torch.randn(3, 4, dtype=torch.complex128, generator=gen).requires_grad_()
    w_re, w_im = (w.detach().real.clone().requires_grad_(),
                  w.detach().imag.clone().requires_grad_())
    (estimate,) = gauss_newton_bartlett((x @ w).real, [w],
                                        generator=torch.Generator().manual_seed(5))
    real = gauss_newton_bartlett(x.real @ w_re - x.imag @ w_im, [w_re, w_im],
                                 generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(torch.view_as_real(estimate), torch.stack(real, dim=-1))
