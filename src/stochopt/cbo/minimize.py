r"""Run a consensus-based method on a batch of independent particle systems.

:func:`minimize` alternates the method's two halves, as the official code does: evaluate the
particles and form the consensus point :math:`x_\alpha`, then (unless the run stops) move the
particles. With ``max_iterations = K`` a run makes :math:`K` moves and :math:`K + 1`
evaluations, and returns the consensus point of its final particles (Riedl et al.'s ``CBO.m``
and ``CH.m`` likewise average once more after the last move).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from stochopt._checks import SEED_MAX, check_int, check_real, check_tensor, show
from stochopt.cbo._base import ConsensusMethod, Objective, evaluate_objective

__all__ = ["ConsensusResult", "gaussian_particles", "minimize"]

#: why a run stopped; the first two count as success
REASONS = ("energy_tol", "consensus_tol", "max_iterations", "nonfinite")


def _generator(owner: str, seed: int | torch.Generator) -> torch.Generator:
    """``seed`` itself if a generator, else a new one seeded with the integer ``seed``."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{owner}: seed must be an int or a torch.Generator, got {show(seed)}")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{owner}: seed must be in [0, 2**63 - 1], got {seed!r}")
    return torch.Generator().manual_seed(seed)


def gaussian_particles(mean: Tensor, std: float, particles: int, *, runs: int | None = None,
                       seed: int | torch.Generator = 0,
                       dtype: torch.dtype = torch.float64) -> Tensor:
    r"""Initial particles :math:`X^i_0 = m + s\,\xi^i`, :math:`\xi^i \sim \mathcal N(0, I_d)`.

    Args:
        mean: :math:`m`, shape ``(d,)`` (the same for every run) or ``(M, d)``, finite.
        std: :math:`s \ge 0`.
        particles: :math:`N \ge 1` per run.
        runs: :math:`M` (default: 1 for a ``(d,)`` mean, else ``mean.shape[0]``).
        seed: an int or a ``torch.Generator`` (then it is advanced).
        dtype: of the result, a floating dtype (default float64).

    Returns:
        Particles of shape ``(M, N, d)``.
    """
    owner = "gaussian_particles"
    check_real(owner, "std", std, low_open=False)
    check_int(owner, "particles", particles)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{owner}: dtype must be a floating-point torch.dtype, got "
                        f"{show(dtype)}")
    mean = check_tensor(owner, "mean", mean, floating=False)
    if mean.ndim not in (1, 2) or mean.shape[-1] == 0:
        raise ValueError(f"{owner}: mean must have shape (d,) or (M, d) with d >= 1, got "
                         f"{tuple(mean.shape)}")
    if mean.is_complex():
        raise TypeError(f"{owner}: mean must be real, got dtype {mean.dtype}")
    mean = mean.to(dtype)
    if runs is None:
        runs = 1 if mean.ndim == 1 else mean.shape[0]
    check_int("gaussian_particles", "runs", runs)
    if mean.ndim == 2 and mean.shape[0] != runs:
        raise ValueError(f"gaussian_particles: runs={runs} but mean has {mean.shape[0]} rows")
    mean = mean.expand(runs, mean.shape[-1])
    generator = _generator(owner, seed)
    xi = torch.randn((runs, particles, mean.shape[-1]), generator=generator, dtype=dtype)
    return mean.unsqueeze(-2) + std * xi


@dataclass(frozen=True)
class ConsensusResult:
    """What :func:`minimize` found, per run (``M`` runs, ``d`` dimensions).

    Attributes:
        x: the final consensus point, shape ``(M, d)``.
        fun: :math:`f` at ``x``, shape ``(M,)``.
        best_x: the best point ever evaluated (particles and ``x``), shape ``(M, d)``
            (what CBXpy's ``optimize`` returns).
        best_fun: :math:`f` at ``best_x``, shape ``(M,)``.
        consensus: the consensus point at every evaluation, shape ``(K + 1, M, d)``; a run
            that stopped early repeats its final point.
        nfev: evaluations of :math:`f` per run, shape ``(M,)``.
        nit: moves (iterations) per run, shape ``(M,)``.
        success: whether a run stopped by a tolerance, shape ``(M,)``.
        reason: why each run stopped: ``"energy_tol"``, ``"consensus_tol"``,
            ``"max_iterations"`` or ``"nonfinite"`` (a non-finite consensus point).
    """

    x: Tensor
    fun: Tensor
    best_x: Tensor
    best_fun: Tensor
    consensus: Tensor
    nfev: Tensor
    nit: Tensor
    success: Tensor
    reason: tuple[str, ...]


def _initial(f: Objective, x0: Tensor | Callable[[torch.Generator], Tensor],
             generator: torch.Generator) -> Tensor:
    """The initial particles ``(M, N, d)``: finite, of the objective's dimension where it
    states one (an integer attribute ``dim``, as the test functions have)."""
    x = x0(generator) if callable(x0) else x0
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"minimize: x0 must be a floating-point tensor (or a function of a "
                        f"generator returning one), got {type(x).__name__}")
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"minimize: x0 must have shape (M, N, d) or (N, d) with M, N, d >= 1, "
                         f"got {tuple(x.shape)}")
    dim = getattr(f, "dim", None)
    if isinstance(dim, int) and not isinstance(dim, bool) and x.shape[-1] != dim:
        raise ValueError(f"minimize: x0 must hold points of f's dimension {dim} ({f!r}), got "
                         f"particles of shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("minimize: x0 must be finite, got a NaN or infinite coordinate")
    return x.detach().clone()


def _stop_reasons(info_consensus: Tensor, previous: Tensor | None, best_fun: Tensor,
                  energy_tol: float | None, consensus_tol: float | None) -> list[str | None]:
    """Per run, the first tolerance met after an evaluation (``None``: go on)."""
    finite = torch.isfinite(info_consensus).all(-1)
    reached_energy = (best_fun <= energy_tol if energy_tol is not None
                      else torch.zeros_like(finite))
    if consensus_tol is not None and previous is not None:
        moved = torch.linalg.vector_norm(info_consensus - previous, dim=-1)
        reached_consensus = moved <= consensus_tol
    else:
        reached_consensus = torch.zeros_like(finite)
    out: list[str | None] = []
    for ok, energy, consensus in zip(finite.tolist(), reached_energy.tolist(),
                                     reached_consensus.tolist()):
        out.append("nonfinite" if not ok else "energy_tol" if energy
                   else "consensus_tol" if consensus else None)
    return out


def minimize(f: Objective, x0: Tensor | Callable[[torch.Generator], Tensor],
             method: ConsensusMethod, *, max_iterations: int = 1000,
             energy_tol: float | None = None, consensus_tol: float | None = None,
             seed: int | torch.Generator = 0) -> ConsensusResult:
    r"""Minimize ``f`` with a consensus-based method, for ``M`` independent runs at once.

    Each iteration :math:`k` evaluates :math:`f` at the ``(M, N, d)`` particles, forms the
    consensus point :math:`x_\alpha^k` with :math:`\alpha_k` from the method's schedule, checks
    the stopping rules, and moves the particles of the runs that go on. A run stops when

    - ``energy_tol``: the best value it has evaluated is at most ``energy_tol`` (useful when
      the minimum is known; CBXpy's ``energy_tol``), or
    - ``consensus_tol``: :math:`\|x_\alpha^k - x_\alpha^{k-1}\|_2 \le` ``consensus_tol``, or
    - it has made ``max_iterations`` moves, or its consensus point is not finite.

    A stopped run is frozen (its particles are still passed to ``f`` with the others', but
    those evaluations are not counted), so every run's random draws are the same whichever
    runs stop.

    Non-finite values: a particle at which ``f`` is NaN or :math:`+\\infty` gets weight 0 in
    the consensus point (see :mod:`stochopt.cbo.consensus`); a run whose particles all have
    such values, or whose consensus point is otherwise not finite, stops with reason
    ``"nonfinite"``. ``best_fun`` ignores NaN values.

    Args:
        f: the objective, mapping points ``(..., d)`` to values ``(...)``; called on the
            ``(M, N, d)`` particles at once.
        x0: initial particles ``(M, N, d)`` (or ``(N, d)`` for one run), finite, or a
            function of a ``torch.Generator`` returning them (e.g. a ``lambda g:`` around
            :func:`gaussian_particles`); float64 is advised. If ``f`` has an integer
            attribute ``dim`` (the test functions of :mod:`stochopt.tasks` do), ``d`` must
            equal it.
        method: a :class:`~stochopt.cbo.CBO` or :class:`~stochopt.cbo.ConsensusHopping`.
        max_iterations: :math:`K \ge 0`, moves per run (default 1000).
        energy_tol: stop a run once its best value is :math:`\le` this (default: never).
        consensus_tol: :math:`> 0`; stop a run once its consensus point moves at most this
            far in one iteration (default: never).
        seed: an int in ``[0, 2**63 - 1]`` or a ``torch.Generator`` for every random draw
            (default 0).

    Returns:
        A :class:`ConsensusResult`; every per-run field has the run dimension ``M`` first.
    """
    check_int("minimize", "max_iterations", max_iterations, low=0)
    if energy_tol is not None:
        check_real("minimize", "energy_tol", energy_tol, low=-math.inf)
    if consensus_tol is not None:
        check_real("minimize", "consensus_tol", consensus_tol)
    if not isinstance(method, ConsensusMethod):
        raise TypeError(f"minimize: method must be a CBO or ConsensusHopping instance, got "
                        f"{show(method)}")
    if not callable(f):
        raise TypeError(f"minimize: f must be callable (points (..., d) to values (...)), got "
                        f"{show(f)}")
    generator = _generator("minimize", seed)
    x = _initial(f, x0, generator)
    M, N, _ = x.shape
    best_fun = torch.full((M,), math.inf, dtype=x.dtype, device=x.device)
    best_x = x[:, 0].clone()
    nfev = torch.zeros(M, dtype=torch.long, device=x.device)
    nit = torch.zeros(M, dtype=torch.long, device=x.device)
    reasons: list[str | None] = [None] * M
    final = torch.empty_like(best_x)
    history: list[Tensor] = []
    for k in range(max_iterations + 1):
        info = method._evaluate(f, x, k)  # x checked by _initial, then made here
        going = torch.tensor([r is None for r in reasons], device=x.device)
        nfev += N * going
        best_fun, best_x = _improve(best_fun, best_x, info.energy, x, going)
        stops = _stop_reasons(info.consensus, history[-1] if history else None, best_fun,
                              energy_tol, consensus_tol)
        consensus = torch.where(going.unsqueeze(-1), info.consensus, final)
        history.append(consensus)
        for m in range(M):
            if reasons[m] is None and (stops[m] is not None or k == max_iterations):
                reasons[m] = stops[m] or "max_iterations"
                final[m] = info.consensus[m]
        moving = torch.tensor([r is None for r in reasons], device=x.device)
        if not moving.any():
            break
        x = torch.where(moving.view(M, 1, 1), method._move(x, info.consensus, generator), x)
        nit += moving
    fun = evaluate_objective(f, final.unsqueeze(-2)).squeeze(-1)
    nfev += 1
    best_fun, best_x = _improve(best_fun, best_x, fun.unsqueeze(-1), final.unsqueeze(-2),
                                torch.ones(M, dtype=torch.bool, device=x.device))
    done = tuple(r or "max_iterations" for r in reasons)
    success = torch.tensor([r in REASONS[:2] for r in done], device=x.device)
    return ConsensusResult(final, fun, best_x, best_fun, torch.stack(history), nfev, nit,
                           success, done)


def _improve(best_fun: Tensor, best_x: Tensor, energy: Tensor, x: Tensor,
             going: Tensor) -> tuple[Tensor, Tensor]:
    """The running best value and point per run, updated with the evaluations ``energy``
    ``(M, N)`` at ``x`` ``(M, N, d)`` of the runs in ``going``."""
    value, index = energy.nan_to_num(math.inf).min(-1)  # (M,)
    better = going & (value < best_fun)
    point = x[torch.arange(x.shape[0], device=x.device), index]  # (M, d)
    return (torch.where(better, value, best_fun),
            torch.where(better.unsqueeze(-1), point, best_x))
