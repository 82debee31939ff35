"""Sophia (Liu et al., 2023): clipped, diagonally preconditioned momentum with a curvature
estimate refreshed every k steps; Sophia-G (Gauss-Newton-Bartlett) and Sophia-H (Hutchinson)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from stochopt.optim._curvature import CurvatureOptimizer
from stochopt.optim._functional import decoupled_weight_decay, ema
from stochopt.optim._hyper import Choice, Integer, Pair, Real

__all__ = ["SophiaG", "SophiaH"]


class _Sophia(CurvatureOptimizer):
    """What both Sophias share: state, the curvature EMA and the clipping monitor."""

    hyperparameters = (
        Real("lr"),
        Pair("betas", ("beta1", "beta2")),
        Real("rho"),
        Real("weight_decay"),
        Real("eps"),
        Integer("update_period"),
    )

    def init_state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"exp_avg": torch.zeros_like(p), "hessian": torch.zeros_like(p)}

    @staticmethod
    def refresh(p: Tensor, d: Tensor, state: dict[str, Tensor], c: Any,
                h: Any) -> tuple[None, dict[str, Tensor]]:
        return None, {"hessian": ema(state["hessian"], d, h.beta2)}  # h_t = b2 h_{t-k} + (1-b2) ĥ_t

    @torch.no_grad()
    def win_rate(self) -> float:
        r"""Fraction of coordinates whose update is not clipped: :math:`|m| < \gamma h`, as the
        official training script counts them (``train/win_rate``: strict, with no
        :math:`\epsilon`, so a coordinate with :math:`m = h = 0` counts as clipped). The
        authors suggest tuning ``rho`` to keep it between 0.1 and 0.5: raise ``rho`` to raise
        it, lower ``rho`` to lower it; ``nan`` before the first step. Low-bit state is read
        dequantized."""
        unclipped = total = 0
        for group in self.param_groups:
            storage = self._storage_for(group)
            rho = float(group["rho"])
            for p in group["params"]:
                state = self.state.get(p, {})
                if "exp_avg" not in state:
                    continue
                m = storage.load(state, "exp_avg").double()
                h = storage.load(state, "hessian").double()
                unclipped += int((m.abs() < rho * h).sum())
                total += m.numel()
        return unclipped / total if total else float("nan")


class SophiaG(_Sophia):
    r"""Sophia-G: Sophia with the Gauss-Newton-Bartlett estimator (for cross-entropy losses).

    Let :math:`\eta, \beta_1, \beta_2, \gamma, \lambda, \epsilon, k, c` be ``lr``, ``betas``,
    ``rho``, ``weight_decay``, ``eps``, ``update_period`` and ``label_grad_clip``. On
    curvature steps (:math:`t = 1, k + 1, 2k + 1, ...`), with :math:`\hat y` labels sampled
    from the model's softmax and :math:`B` predictions in the batch (``B * T`` for logits of
    shape ``(B, T, V)``),

    .. math::
        \hat g = \nabla \tfrac1B \textstyle\sum_b \ell_{CE}(f(\theta, x_b), \hat y_b), \quad
        \hat g \leftarrow \hat g \min\!\Big(1, \frac{c}{\lVert \hat g \rVert + 10^{-6}}\Big),
        \quad \hat h_t = B \cdot \hat g \odot \hat g,
        \qquad h_t = \beta_2 h_{t-k} + (1 - \beta_2) \hat h_t

    and every step

    .. math::
        \theta \leftarrow \theta (1 - \eta\lambda), \quad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        \theta \leftarrow \theta - \eta \operatorname{sign}(m_t)
            \min\!\Big(\frac{|m_t|}{\gamma h_t + \epsilon}, 1\Big)

    so no coordinate moves by more than :math:`\eta` (besides the decay), and one with no
    curvature and no momentum (e.g. an embedding row no token used) stays put
    (:math:`0 / \epsilon`). Under ``maximize`` :math:`g_t` is negated and :math:`\hat h`
    is not: it is the Gauss-Newton diagonal of the cross-entropy, never negative.

    Training loop (the estimate needs the logits; for a ``torch.compile``'d model, run the
    forward under ``with opt.curvature_forward():``, see :mod:`stochopt.optim._curvature`)::

        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, -2), y.flatten())
        opt.backward(loss, logits=logits)
        opt.step()

    Non-finite values follow torch: a NaN or infinite gradient entry gives a NaN (or
    infinite) momentum and parameter entry, and is never checked for; the update is
    elementwise, so it spreads to no other entry and there is no ``nonfinite=`` option.
    Curvature estimates given to :meth:`set_curvature` and the ``logits`` of
    :meth:`backward` must be finite (a ``ValueError`` before anything changes): a
    non-finite estimate would stay in the curvature average :math:`h` for good. Estimates
    the built-in estimator computes from a non-finite loss propagate like gradients.

    Example:
        >>> model = torch.nn.Linear(4, 3)
        >>> opt = SophiaG(model.parameters(), lr=1e-3)
        >>> logits = model(torch.randn(8, 4))
        >>> loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (8,)))
        >>> opt.backward(loss, logits=logits)
        >>> opt.step()
        >>> 0.0 <= opt.win_rate() <= 1.0
        True

    Args:
        params: parameters or param groups.
        lr: :math:`\eta`, the largest step per coordinate (default 1e-4).
        betas: :math:`(\beta_1, \beta_2)` (default (0.965, 0.99)).
        rho: :math:`\gamma` (default 0.04, the official default). It sets how many
            coordinates are clipped to the full step :math:`\eta`: a coordinate is not
            clipped where :math:`|m_t| < \gamma h_t`. A larger ``rho`` makes the denominator
            :math:`\gamma h_t + \epsilon` larger and the ratio :math:`|m_t| / (\gamma h_t)`
            smaller, so fewer coordinates are clipped and the win rate (:meth:`win_rate`, the
            fraction not clipped) rises; a smaller ``rho`` moves toward sign descent
            (:math:`\eta\,\mathrm{sign}(m_t)` everywhere). The authors advise a ``rho``
            that keeps the win rate between 0.1 and 0.5. The default gives small models far
            less: in the ``charlm`` reproduction (``docs/reproductions.md``, section
            "sophia"; ``lr`` 3e-3) it starts near 0.005 and stays at about 0.1 or below, so
            most coordinates step by :math:`\pm\eta`, close to sign descent. Raise ``rho``
            (e.g. tenfold) while watching ``opt.win_rate()``.
        weight_decay: decoupled decay :math:`\lambda` (default 0.1).
        eps: :math:`\epsilon` (default 1e-15, as in the official code). Keep it positive: a
            coordinate with :math:`h = m = 0` steps by :math:`0 / \epsilon`, NaN at 0.
        update_period: :math:`k` (default 10).
        label_grad_clip: :math:`c`, the largest norm of the sampled-label gradient
            :math:`\hat g` (as ``torch.nn.utils.clip_grad_norm_``: the norm over every
            parameter refreshed together, all groups; each group scales its part by its own
            :math:`c`), in ``(0, inf]`` (default inf: no clipping, as the paper's Algorithm 2;
            the official training script clips at its ``grad_clip``, 1.0 in every config).
        seed: seed of the label-sampling generator, an integer in ``[0, 2**63 - 1]``
            (default 0).
        state_precision: ``"native"`` (the parameter's dtype), ``"fp32"``, ``"bf16"`` or
            ``"8bit"`` (block-wise quantized; see :mod:`stochopt.optim._storage`)
            (default ``"native"``).
        maximize: maximize the objective instead (default False).
        fused: run the compiled fused path; ``None`` picks it on CUDA only (default None).
        process_group: the data-parallel group (DDP) over which curvature estimates are
            averaged, so they equal the whole batch's, each rank drawing its own labels;
            see :mod:`stochopt.optim._curvature` for the training loop under DDP (default
            None: no averaging; ``"world"`` or a ``torch.distributed`` process group).

    References:
        Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order Optimizer for
        Language Model Pre-training", ICLR 2024, arXiv:2305.14342. Official code:
        https://github.com/Liuhong99/Sophia (``sophia.py`` as of commit 2fc52f2,
        ``train_sophiag.py`` as of a7e1572).

    Note:
        Departures from the official code:

        * Batch size: the official code keeps :math:`h` as an EMA of
          :math:`\hat g \odot \hat g` and multiplies it by ``bs`` (tokens per step) in the
          update, so its ``rho * bs * h`` is this class's ``rho * h``: the :math:`B` is
          measured from the logits here, never set by hand (a wrong ``bs`` silently
          rescales ``rho``). Its ``lr`` is the paper's :math:`\eta` and ``rho`` the paper's
          :math:`\gamma` (the first arXiv version wrote the update as
          :math:`\eta\,\mathrm{clip}(m / \max(h, \epsilon), \rho)`, where the code's ``lr``
          is :math:`\eta\rho`).
        * Schedule: the official script refreshes the estimate after the step of iterations
          :math:`k-1, 2k-1, ...`, so it is first used at the next step, and steps by
          :math:`\eta\,\mathrm{sign}(m)` until then; here, as in the paper's algorithm,
          step 1 already has an estimate.
        * :math:`\epsilon` is an argument (the official code fixes it at 1e-15).
        * Clipping :math:`\hat g`: the official script always clips it (``grad_clip``);
          here it is off unless ``label_grad_clip`` is set, as clipping scales the
          estimate down by the square of a model-dependent factor and the paper's
          estimator has none. ``label_grad_clip=1.0`` reproduces the official runs.
        * Data parallelism: the official script seeds every rank alike
          (``torch.manual_seed(2099)``, so that they pick their data alike) and samples
          labels from that generator, so its ranks' draws are coupled; here each rank
          draws from its own stream (see
          :func:`~stochopt.curvature.gauss_newton_bartlett`): coupled draws, averaged over
          ranks and squared, overestimate the Gauss-Newton diagonal.
        * :meth:`win_rate` counts as the official script does.
    """

    estimator = "gnb"
    nonnegative_states = frozenset({"hessian"})  # B * g_hat^2 >= 0
    hyperparameters = (*_Sophia.hyperparameters,
                       Real("label_grad_clip", low_closed=False, high_closed=True))
    keys_added_later = frozenset({"label_grad_clip"})  # state dicts saved before it load

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-4, *,
                 betas: tuple[float, float] = (0.965, 0.99), rho: float = 0.04,
                 weight_decay: float = 0.1, eps: float = 1e-15, update_period: int = 10,
                 label_grad_clip: float = math.inf, seed: int = 0,
                 state_precision: str = "native", maximize: bool = False,
                 fused: bool | None = None, process_group: Any = None) -> None:
        defaults = dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, eps=eps,
                        update_period=update_period, label_grad_clip=label_grad_clip)
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision, seed=seed,
                         process_group=process_group)

    @staticmethod
    def denominator(hessian: Tensor, rho: Tensor, eps: Tensor) -> Tensor:
        return rho * hessian + eps  # the GNB estimate is never negative

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        p = decoupled_weight_decay(p, h.lr, h.weight_decay)
        m = ema(state["exp_avg"], g, h.beta1)
        ratio = (m.abs() / SophiaG.denominator(state["hessian"], h.rho, h.eps)).clamp(max=1)
        return p - h.lr * m.sign() * ratio, {"exp_avg": m}


class SophiaH(_Sophia):
    r"""Sophia-H: Sophia with Hutchinson's estimator of the Hessian diagonal.

    As :class:`SophiaG`, with :math:`\hat h_t = u \odot (H u)`, :math:`u \sim N(0, I)` (or
    Rademacher), and the paper's denominator :math:`\max(\gamma h_t, \epsilon)`: where the
    estimate is negative (non-convex regions) the step is the clipped
    :math:`\eta\,\mathrm{sign}(m_t)`, never an ascent step. Under ``maximize`` both
    :math:`g_t` and :math:`\hat h_t` are negated: the gradient and curvature of :math:`-f`.

    .. math::
        \theta \leftarrow \theta (1 - \eta\lambda), \quad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        \theta \leftarrow \theta - \eta\, \mathrm{clip}\Big(\frac{m_t}{\max(\gamma h_t,
            \epsilon)}, 1\Big)

    Training loop (for attention or a ``torch.compile``'d model, run the forward under
    ``with opt.curvature_forward():``, see :mod:`stochopt.optim._curvature`)::

        opt.zero_grad()
        opt.backward(loss_fn(model(x), y))  # keeps the graph on curvature steps
        opt.step()

    Non-finite values follow torch: a NaN or infinite gradient entry gives a NaN (or
    infinite) momentum and parameter entry, and is never checked for; the update is
    elementwise, so it spreads to no other entry and there is no ``nonfinite=`` option.
    Curvature estimates given to :meth:`set_curvature` must be finite (a ``ValueError``
    before anything changes): a non-finite estimate would stay in the curvature average
    :math:`h` for good. Estimates the built-in estimator computes from a non-finite loss
    propagate like gradients.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = SophiaH(model.parameters(), lr=1e-3)
        >>> opt.backward(model(torch.randn(8, 4)).square().mean())
        >>> opt.step()

    Args:
        params: parameters or param groups.
        lr: :math:`\eta` (default 1e-4).
        betas: :math:`(\beta_1, \beta_2)` (default (0.965, 0.99)).
        rho: :math:`\gamma` (default 0.01, as optax and Levanter use for Sophia-H); as for
            :class:`SophiaG`, a larger ``rho`` clips fewer coordinates (a higher
            :meth:`win_rate`).
        weight_decay: decoupled decay :math:`\lambda` (default 0.1).
        eps: :math:`\epsilon` (default 1e-12).
        update_period: :math:`k` (default 10).
        distribution: probe distribution, ``"gaussian"`` (the paper's, default) or
            ``"rademacher"`` (lower variance).
        seed: seed of the probe generator, an integer in ``[0, 2**63 - 1]`` (default 0).
        state_precision: ``"native"`` (the parameter's dtype), ``"fp32"``, ``"bf16"`` or
            ``"8bit"`` (block-wise quantized; see :mod:`stochopt.optim._storage`)
            (default ``"native"``).
        maximize: maximize the objective instead (default False).
        fused: run the compiled fused path; ``None`` picks it on CUDA only (default None).
        process_group: the data-parallel group (DDP) over which curvature estimates are
            averaged, so they equal the whole batch's; see :mod:`stochopt.optim._curvature`
            for the training loop under DDP (default None: no averaging; ``"world"`` or
            a ``torch.distributed`` process group).

    References:
        Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order Optimizer for
        Language Model Pre-training", ICLR 2024, arXiv:2305.14342, Algorithms 1 and 3.

    Note:
        This class follows the paper's algorithm. The official repository no longer ships
        Sophia-H; its last version (``sophia.py`` at commit c503211, 2023-05-24, removed in
        195a786) differs in:

        * defaults: ``lr`` 1e-3 (here 1e-4), ``betas`` (0.9, 0.99) (here (0.965, 0.99)),
          :math:`\gamma` named ``gamma``, 10 (here ``rho``, 0.01, as optax and Levanter
          use), ``weight_decay`` 1e-2 (here 0.1);
        * :math:`\epsilon`: fixed at 1e-12 and added, :math:`\gamma\,\mathrm{relu}(h) +
          10^{-12}`; here an argument (default 1e-12) in the paper's
          :math:`\max(\gamma h, \epsilon)`: both give :math:`\epsilon` where
          :math:`h \le 0`, and differ by at most :math:`\epsilon` elsewhere;
        * bias correction: it stepped by :math:`\eta / (1 - \beta_1^t)` (the clip ratio
          from the uncorrected :math:`m`), so early steps exceeded :math:`\eta`; here none,
          every step is at most :math:`\eta`;
        * estimator and schedule: it had none: ``update_hessian()`` folded whatever the
          caller left in ``p.grad`` into :math:`h` (an EMA of the raw estimate, as here),
          and needed one ``step()`` first (its state did not exist before). Here the
          optimizer draws Gaussian probes (the paper's :math:`u \sim N(0, I)`;
          ``"rademacher"`` optional) from its own generator on steps
          :math:`1, k + 1, ...` (``update_period`` :math:`k`, default 10, the official
          script's ``hess_interval``), before that step's update;
        * ``maximize``: it negated only the gradient and took the estimate as given; here
          the estimate, of the loss given to :meth:`backward`, is negated too, being then
          the curvature of :math:`-f`, the objective minimized (see
          :mod:`stochopt.optim._curvature`);
        * the clip: its :math:`\mathrm{sign}(m) \min(|m| / d, 1)` equals this
          :math:`\mathrm{clip}(m / d, -1, 1)` for the positive denominators :math:`d` both
          use.
    """

    estimator = "hutchinson"
    hyperparameters = (*_Sophia.hyperparameters, Choice("distribution", ("gaussian", "rademacher")))

    def __init__(self, params: Iterable[Any], lr: float | Tensor = 1e-4, *,
                 betas: tuple[float, float] = (0.965, 0.99), rho: float = 0.01,
                 weight_decay: float = 0.1, eps: float = 1e-12, update_period: int = 10,
                 distribution: str = "gaussian", seed: int = 0, state_precision: str = "native",
                 maximize: bool = False, fused: bool | None = None,
                 process_group: Any = None) -> None:
        defaults = dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, eps=eps,
                        update_period=update_period, distribution=distribution)
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision, seed=seed,
                         process_group=process_group)

    @staticmethod
    def denominator(hessian: Tensor, rho: Tensor, eps: Tensor) -> Tensor:
        return torch.clamp(rho * hessian, min=eps)

    @staticmethod
    def update(p: Tensor, g: Tensor, state: dict[str, Tensor], c: Any,
               h: Any) -> tuple[Tensor, dict[str, Tensor]]:
        p = decoupled_weight_decay(p, h.lr, h.weight_decay)
        m = ema(state["exp_avg"], g, h.beta1)
        ratio = (m / SophiaH.denominator(state["hessian"], h.rho, h.eps)).clamp(-1, 1)
        return p - h.lr * ratio, {"exp_avg": m}
