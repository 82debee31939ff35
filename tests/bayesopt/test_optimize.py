"""The acquisition optimizer finds the maximum of a known multimodal score in the box."""

from __future__ import annotations

import torch

from stochopt.bayesopt.optimize import optimize_acquisition, sobol


def test_finds_the_global_maximum_of_a_two_bump_score() -> None:
    peaks = torch.tensor([[0.2, 0.7], [0.85, 0.1]], dtype=torch.float64)
    heights = torch.tensor([1.0, 1.3], dtype=torch.float64)

    def score(U: torch.Tensor) -> torch.Tensor:  # (m, 1, 2) -> (m,)
        sq = (U[:, 0, None, :] - peaks[None]).square().sum(-1)
        return (heights * torch.exp(-sq / 0.01)).sum(-1)

    x, value = optimize_acquisition(score, 2, torch.Generator().manual_seed(0), raw_samples=64,
                                    restarts=4)
    assert torch.allclose(x[0], peaks[1], atol=1e-5)
    assert abs(value - 1.3) < 1e-8


def test_respects_the_box_when_the_maximum_lies_outside() -> None:
    def score(U: torch.Tensor) -> torch.Tensor:
        return U[:, 0, :].sum(-1) * 3.0  # increases toward the corner (1, 1, 1)

    x, value = optimize_acquisition(score, 3, torch.Generator().manual_seed(1), raw_samples=16,
                                    restarts=2)
    assert torch.equal(x[0], torch.ones(3, dtype=torch.float64)) and value == 9.0


def test_sobol_is_reproducible_per_generator_state() -> None:
    a = sobol(8, 3, torch.Generator().manual_seed(4))
    b = sobol(8, 3, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1


def test_a_nan_gradient_is_a_step_rejected_not_a_nan_point() -> None:
    """A surrogate may have a finite value but a NaN gradient somewhere (DKL's network did,
    on Branin): L-BFGS-B fed that gradient steps to NaN coordinates, which the next posterior
    call rejects with an error. The NaN entries must not reach L-BFGS-B: every start (here all
    8 raw samples, half of them where the gradient is NaN) stays on finite points, and the
    restarts with a finite gradient still climb to the peak at 0.25."""
    def score(U: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(U).all():
            raise ValueError("X must be finite")  # as GP.posterior does
        x = U[:, 0, 0]
        # torch.where's NaN gradient above 0.5: 0 from where times sqrt's NaN derivative
        nan_gradient = torch.where(x > 0.5, torch.zeros_like(x), (0.5 - x).sqrt())
        return -(x - 0.25).square() + 0.0 * nan_gradient

    x, value = optimize_acquisition(score, 1, torch.Generator().manual_seed(0), raw_samples=8,
                                    restarts=8)
    assert abs(float(x[0, 0]) - 0.25) < 1e-4 and abs(value) < 1e-8
