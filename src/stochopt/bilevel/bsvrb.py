r"""BSVRB: blockwise stochastic variance-reduced bilevel methods (Hu et al., 2023).

For :math:`m` lower-level problems sharing :math:`x`,
:math:`\min_x F(x) = \frac1m \sum_i f_i(x, y_i^*(x))`, each iteration samples :math:`I`
blocks (and :math:`B` samples per block) and refreshes only their estimators with MSVR, the
multi-block STORM estimator:

.. math::
    u_i \leftarrow (1 - \alpha) u_i + \alpha h_i(e_t) + \gamma \big(h_i(e_t) - h_i(e_{t-1})\big),
    \qquad \gamma = \frac{m - I}{I (1 - \alpha)} + (1 - \alpha)

with the same sample at the current and previous iterates :math:`e`. It tracks
:math:`\nabla_y g_i` (the lower step :math:`y_i \leftarrow y_i - \tau s_i`) and

* **v1**: the Hessian :math:`\nabla^2_{yy} g_i` (projected on eigenvalues
  :math:`\ge \mu`), with the block's hypergradient
  :math:`\nabla_x f_i - \nabla^2_{xy} g_i H_i^{-1} \nabla_y f_i`;
* **v2**: the gradient :math:`\nabla^2_{yy} g_i v_i - \nabla_y f_i` of the quadratic whose
  minimizer is :math:`H^{-1} \nabla_y f`, with :math:`v_i \leftarrow
  \Pi_{\|v\| \le R}(v_i - \tau_v u_i)` and hypergradient
  :math:`\nabla_x f_i - \nabla^2_{xy} g_i v_i` (Hessian-vector products only).

The sampled blocks step along their refreshed estimators. The upper level is
STORM over the sampled blocks' hypergradients :math:`G`, at the current and previous iterates
with the same samples: :math:`z \leftarrow (1 - \beta)(z - G_{t-1}) + G_t`,
:math:`x \leftarrow x - \eta z`. ``variance_reduction=False`` is the baseline without it
(:math:`\alpha = \beta = 1`, :math:`\gamma = 0`: fresh estimates for the sampled blocks).

Note:
    The MSVR correction :math:`\gamma` includes :math:`(1 - \alpha)`, so that sampling every
    block (:math:`I = m`) gives STORM exactly; the official code's ``auto_gamma`` omits that
    term and its run scripts fix :math:`\gamma = 1`, which with their :math:`\alpha = 0.9`
    diverges on our quadratic blocks even with exact oracles and every block sampled. The
    code's Hessian "projection" rescales :math:`H_i` to a minimum Frobenius norm; we clip
    eigenvalues below :math:`\mu` instead
    (the positive-definite set the analysis needs). The code also moves every block, sampled
    or not, along its last estimator each iteration; a block unsampled for k iterations then
    takes k stale steps, which diverges on our ridge tasks at any step size that makes
    progress, so only the sampled blocks move here.

References:
    Hu, Qiu, Guo, Zhang & Yang, "Blockwise Stochastic Variance-Reduced Methods with Parallel
    Speedup for Multi-Block Bilevel Optimization", ICML 2023, arXiv:2305.18730 (code:
    github.com/quanqihu/BSVRB_ICML2023).
    Jiang, Li, Wang, Zhang & Yang, "Multi-block-single-probe variance reduced estimator for
    coupled compositional optimization", NeurIPS 2022 (MSVR).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_real, check_seed, show
from stochopt.bilevel._base import check_fraction, check_positive, check_run, check_start
from stochopt.bilevel.problem import MultiBlockProblem
from stochopt.errors import DivergenceError

__all__ = ["BSVRB"]


class BSVRB:
    """BSVRB v1 / v2 on a :class:`~stochopt.bilevel.problem.MultiBlockProblem`.

    Args:
        problem: the ``m``-block problem.
        x0: upper starting point ``(d_x,)``; y0: lower starting points ``(m, d_y)`` (finite,
            of the problem's dtype).
        version: ``"v1"`` (Hessian tracking) or ``"v2"`` (Hessian-vector tracking)
            (default ``"v2"``).
        blocks: :math:`I`, blocks sampled per iteration (default None: ``min(10, m)``, the
            official scripts' 10).
        batch_size: :math:`B`, samples per sampled block (default 32).
        lr: :math:`\\eta` (default 0.01); lr_y: :math:`\\tau` (default 0.5); lr_v:
            :math:`\\tau_v` (default 0.5).
        alpha: MSVR's :math:`\\alpha` (default 0.9); beta: STORM's :math:`\\beta`
            (default 0.9); gamma: MSVR's correction, finite and >= 0, or None for the formula
            above (default None).
        mu: v1's eigenvalue floor (default 1e-3); radius: v2's :math:`R` (default 10).
        variance_reduction: False for the baseline without it (default True).
        seed: seed of the sampling (default 0).

    Non-finite values: :meth:`step` raises :class:`~stochopt.errors.DivergenceError` as soon as
    an iterate (or v1's tracked Hessian) is no longer finite, whether the method diverged or an
    oracle returned NaN or infinity.
    """

    def __init__(self, problem: MultiBlockProblem, x0: Tensor, y0: Tensor, *,
                 version: str = "v2", blocks: int | None = None, batch_size: int = 32,
                 lr: float = 0.01, lr_y: float = 0.5, lr_v: float = 0.5, alpha: float = 0.9,
                 beta: float = 0.9, gamma: float | None = None, mu: float = 1e-3,
                 radius: float = 10.0, variance_reduction: bool = True, seed: int = 0) -> None:
        owner = "BSVRB"
        if not isinstance(problem, MultiBlockProblem):
            raise TypeError(f"{owner}: problem must be a MultiBlockProblem, got {show(problem)}")
        if version not in ("v1", "v2"):
            raise ValueError(f"{owner}: version must be 'v1' or 'v2', got {show(version)}")
        blocks = min(10, problem.m) if blocks is None else blocks
        check_positive(owner, "blocks", blocks, integer=True)
        check_positive(owner, "batch_size", batch_size, integer=True)
        if blocks > problem.m:
            raise ValueError(f"{owner}: blocks must be in [1, m={problem.m}], got {blocks}")
        for name, value in (("lr", lr), ("lr_y", lr_y), ("lr_v", lr_v), ("mu", mu),
                            ("radius", radius)):
            check_positive(owner, name, value)
        for name, value in (("alpha", alpha), ("beta", beta)):
            check_fraction(owner, name, value)
        if gamma is not None:
            check_real(owner, "gamma", gamma, low_open=False)
        if not isinstance(variance_reduction, bool):
            raise TypeError(f"{owner}: variance_reduction must be a bool, got "
                            f"{show(variance_reduction)}")
        seed = check_seed(owner, "seed", seed)
        x, y = check_start(owner, problem, x0, y0)
        if not variance_reduction:
            alpha, beta, gamma = 1.0, 1.0, 0.0
        elif gamma is None:
            gamma = (problem.m - blocks) / (blocks * (1 - alpha)) if alpha < 1 else 0.0
            gamma += 1 - alpha
        self.problem, self.version, self.blocks, self.batch_size = problem, version, blocks, \
            batch_size
        self.lr, self.lr_y, self.lr_v, self.alpha, self.beta, self.gamma = (
            lr, lr_y, lr_v, alpha, beta, gamma)
        self.mu, self.radius, self.variance_reduction = mu, radius, variance_reduction
        self.generator = torch.Generator().manual_seed(seed)
        self.x, self.y = x, y
        self.iteration = 0
        m, d_y = self.y.shape
        self.s = torch.zeros_like(self.y)  # MSVR of grad_y g_i
        if version == "v1":
            self.H = torch.eye(d_y, dtype=self.y.dtype).repeat(m, 1, 1)  # MSVR of Hessians
        else:
            self.v = torch.zeros_like(self.y)
            self.u = torch.zeros_like(self.y)  # MSVR of H v - grad_y f
        self.z = torch.zeros_like(self.x)
        self._previous: dict[str, Tensor] | None = None
        self._seen: set[int] = set()

    # --------------------------------------------------------------------- one block
    def _msvr(self, old: Tensor, now: Tensor, then: Tensor | None) -> Tensor:
        """MSVR; a block's first estimate is its first sample (``then`` is None)."""
        if then is None:
            return now
        correction = self.gamma * (now - then)
        return (1 - self.alpha) * old + self.alpha * now + correction

    def _block_terms(self, x: Tensor, y: Tensor, aux: Tensor, batch: Any) -> dict[str, Tensor]:
        """At one iterate of one block: grad_y g, the tracked curvature term and the block's
        hypergradient (using the tracked ``aux``: H_i for v1, v_i for v2)."""
        p = self.problem
        fx, fy = p.grad_f(x, y, batch)
        terms = {"grad_y_g": p.grad_y_g(x, y, batch)}
        if self.version == "v1":
            terms["curvature"] = p.hessian_yy_g(x, y, batch)
            terms["hypergradient"] = fx - p.jacobian_xy_g(x, y, batch) @ torch.linalg.solve(
                aux, fy)
        else:
            hv, jv = p.hvp_jvp_g(x, y, aux, batch)
            terms["curvature"] = hv - fy
            terms["hypergradient"] = fx - jv
        return terms

    def _project_hessian(self, H: Tensor) -> Tensor:
        if not bool(torch.isfinite(H).all()):
            raise DivergenceError("BSVRB: the tracked Hessian is no longer finite (the method "
                                  "diverged); lower lr, lr_y or the MSVR correction gamma")
        H = (H + H.T) / 2
        values, vectors = torch.linalg.eigh(H)
        return vectors @ torch.diag(values.clamp(min=self.mu)) @ vectors.T

    # ------------------------------------------------------------------ the iteration
    def step(self) -> None:
        p, m = self.problem, self.problem.m
        chosen = torch.randperm(m, generator=self.generator)[: self.blocks].tolist()
        aux = self.H if self.version == "v1" else self.v
        # without variance reduction (alpha = beta = 1, gamma = 0) the previous point's terms
        # would be multiplied by zero: they are not computed, and not counted as oracle calls
        previous = self._previous if self.variance_reduction else None
        G_now, G_then = torch.zeros_like(self.x), torch.zeros_like(self.x)
        for i in chosen:
            batch = p.sample_block(i, "both", self.generator, self.batch_size)
            now = self._block_terms(self.x, self.y[i], aux[i], batch)
            then = None
            if previous is not None and i in self._seen:
                then = self._block_terms(previous["x"], previous["y"][i], previous["aux"][i],
                                         batch)
            self.s[i] = self._msvr(self.s[i], now["grad_y_g"],
                                   None if then is None else then["grad_y_g"])
            tracked = self.H if self.version == "v1" else self.u
            tracked[i] = self._msvr(tracked[i], now["curvature"],
                                    None if then is None else then["curvature"])
            G_now += now["hypergradient"] / self.blocks
            if previous is not None:  # STORM needs every sampled block at the previous point
                G_then += (then or self._block_terms(previous["x"], previous["y"][i],
                                                     previous["aux"][i], batch)
                           )["hypergradient"] / self.blocks
            self._seen.add(i)
        self._previous = {"x": self.x.clone(), "y": self.y.clone(), "aux": aux.clone()}
        self.z = G_now if previous is None else (1 - self.beta) * (self.z - G_then) + G_now
        self.x = self.x - self.lr * self.z
        self._lower_steps(chosen)
        self.iteration += 1
        if not bool(torch.isfinite(self.x).all() and torch.isfinite(self.y).all()):
            raise DivergenceError(f"BSVRB: the iterates are no longer finite at iteration "
                                  f"{self.iteration} (the method diverged); lower lr, lr_y or "
                                  f"the MSVR correction gamma")

    def _lower_steps(self, chosen: list[int]) -> None:
        """The sampled blocks step along their refreshed estimators."""
        index = torch.tensor(chosen)
        self.y[index] -= self.lr_y * self.s[index]
        if self.version == "v1":
            for i in chosen:
                self.H[i] = self._project_hessian(self.H[i])
            return
        v = self.v[index] - self.lr_v * self.u[index]
        self.v[index] = v * (self.radius / v.norm(dim=1, keepdim=True)).clamp(max=1.0)

    def run(self, steps: int, callback: Callable[[BSVRB], Any] | None = None) -> BSVRB:
        """``steps`` iterations; ``callback(self)`` after each (return True to stop early)."""
        check_run("BSVRB", steps, callback)
        for _ in range(steps):
            self.step()
            if callback is not None and callback(self):
                break
        return self
