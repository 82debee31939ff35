"""Optimizers that also read a diagonal curvature estimate, refreshed every k steps.

A :class:`CurvatureOptimizer` adds one rule to the engine's contract: ``refresh(p, d, state,
c, h)`` folds a fresh diagonal estimate ``d`` into the state (e.g. an EMA), and returns
``None`` for the parameter. The engine runs it, on the same reference or fused path as the
update, on curvature steps: steps 1, k + 1, 2k + 1, ... (``k = update_period``), *before* that
step's update, so every estimate is consumed at the parameters where it was taken.

The training loop needs one change, and the optimizer says when it matters:

    opt.zero_grad()
    loss = loss_fn(model(x), y)
    opt.backward(loss)      # = loss.backward(), with what the curvature step needs
    opt.step()

On curvature steps ``backward`` keeps the gradient graph (Hutchinson estimators) or samples
labels from ``logits`` (Gauss-Newton-Bartlett: ``opt.backward(loss, logits=logits)``); on
other steps it is a plain ``loss.backward()``. ``step`` frees every graph it used.

Under DDP, pass ``process_group=`` (e.g. ``torch.distributed.group.WORLD``): estimates are
then averaged over the ranks, so they equal the whole batch's (every rank draws the same
probes from the same seed). DDP cannot keep gradient graphs, so a Hutchinson optimizer's
curvature steps run their forward and backward under ``ddp.no_sync()`` and the optimizer
averages those gradients itself::

    with ddp.no_sync() if opt.curvature_due else contextlib.nullcontext():
        loss = loss_fn(ddp(x), y)
        opt.backward(loss)
    opt.step()

Gauss-Newton-Bartlett optimizers need no ``no_sync``: their sampled-label gradients are
averaged before they are squared. Under ``ZeroRedundancyOptimizer`` (each rank holding part of
the parameters) curvature optimizers are refused: a probe spans every parameter. On DTensor
(FSDP2) parameters the update and refresh run shard by shard, but the built-in estimators are
refused (FSDP2 keeps no gradient graph); estimates come from ``set_curvature``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from stochopt._distributed import all_reduce, built_by_zero, is_dtensor
from stochopt.curvature import gauss_newton_bartlett, hutchinson_diagonal
from stochopt.errors import MissingCurvatureError, UnsupportedError
from stochopt.optim._engine import ElementwiseOptimizer, _Slot
from stochopt.optim._storage import STEP

__all__ = ["CurvatureOptimizer"]


class CurvatureOptimizer(ElementwiseOptimizer):
    """Base of AdaHessian and Sophia: an elementwise optimizer plus a curvature refresh."""

    #: ``"hutchinson"`` (probes of the gradient graph) or ``"gnb"`` (resampled labels)
    estimator: ClassVar[str] = "hutchinson"
    steps_from_gradients_alone = False  # curvature steps also read the estimates

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, maximize: bool,
                 fused: bool | None, seed: int, state_precision: str = "native",
                 process_group: Any = None) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"{type(self).__name__}: seed must be an integer, got {seed!r}")
        if built_by_zero():
            raise UnsupportedError(
                f"{type(self).__name__} cannot run under ZeroRedundancyOptimizer: its curvature "
                f"probes span every parameter, but ZeRO gives each rank only part of them; use "
                f"DDP with process_group=... or FSDP2 (DTensor parameters)")
        self.process_group = process_group
        self._generator = torch.Generator().manual_seed(seed)
        self._estimates: dict[Tensor, Tensor] = {}
        super().__init__(params, defaults, maximize=maximize, fused=fused,
                         state_precision=state_precision)

    @staticmethod
    def refresh(p: Tensor, d: Tensor, state: dict[str, Tensor], c: Any,
                h: Any) -> tuple[None, dict[str, Tensor]]:
        """Fold the diagonal estimate ``d`` into the state; the parameter is not changed."""
        raise NotImplementedError

    # ---------------------------------------------------------------------- schedule
    def _due(self, group: dict[str, Any]) -> bool:
        steps = [self.state[p][STEP] for p in group["params"] if STEP in self.state.get(p, {})]
        done = int(max(steps).item()) if steps else 0
        return done % group["update_period"] == 0

    @property
    def curvature_due(self) -> bool:
        """Whether the next :meth:`step` refreshes the curvature estimate (for some group)."""
        return any(self._due(group) for group in self.param_groups)

    # ------------------------------------------------------------------- estimates in
    def backward(self, loss: Tensor, *, logits: Tensor | None = None) -> None:
        """``loss.backward()``, plus what the next step needs to refresh the curvature.

        Args:
            loss: the training loss (a scalar).
            logits: the model outputs, shape ``(..., V)``, that ``loss`` was computed from;
                required by the Gauss-Newton-Bartlett estimator on curvature steps.
        """
        due = self.curvature_due
        if due and any(is_dtensor(p) for g in self.param_groups for p in g["params"]):
            raise UnsupportedError(
                f"{type(self).__name__}.backward: the built-in curvature estimators do not run "
                f"on DTensor (FSDP2) parameters: FSDP2's gradient reduce-scatter keeps no "
                f"graph for Hessian-vector products, and sampled-label gradients would need "
                f"their own reduction. Compute estimates yourself and pass them with "
                f"opt.set_curvature(...) before step(), or train under DDP")
        if due and self.estimator == "gnb":
            if logits is None:
                raise ValueError(
                    f"{type(self).__name__}.backward: logits=... is required on curvature steps "
                    f"(the next step refreshes the Gauss-Newton-Bartlett estimate, which "
                    f"resamples labels from the model's predictions)")
            params = [p for g in self.param_groups if self._due(g) for p in g["params"]
                      if p.requires_grad]
            estimates = gauss_newton_bartlett(logits, params, generator=self._generator,
                                              process_group=self.process_group)
            self._estimates.update(zip(params, estimates))
        if due and self.estimator == "hutchinson":
            with warnings.catch_warnings():
                # torch warns that create_graph ties each parameter to its gradient in a
                # reference cycle; step() detaches the gradients, which breaks it.
                warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph")
                loss.backward(create_graph=True)
        else:
            loss.backward()

    def set_curvature(self, estimates: Sequence[Tensor | None]) -> None:
        """Give the diagonal estimates for the next curvature step yourself (e.g. from a
        custom or all-reduced estimator): one per parameter, in param-group order, shaped
        like the parameter; ``None`` leaves a parameter to the built-in estimator."""
        params = [p for group in self.param_groups for p in group["params"]]
        if len(estimates) != len(params):
            raise ValueError(f"{type(self).__name__}.set_curvature: got {len(estimates)} "
                             f"estimates for {len(params)} parameters")
        for i, (p, d) in enumerate(zip(params, estimates)):
            if d is None:
                continue
            if d.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.set_curvature: estimate {i} has shape "
                                 f"{tuple(d.shape)}, its parameter {tuple(p.shape)}")
            self._estimates[p] = d.detach()

    def _estimate_from_graphs(self, due: list[bool]) -> list[Tensor]:
        """Hutchinson estimates for due parameters whose gradient carries its graph and that
        have no estimate yet, one product per probe distribution; the parameters estimated."""
        if self.estimator != "hutchinson":
            return []
        estimated: list[Tensor] = []
        by_distribution: dict[str, list[Tensor]] = {}
        for group, is_due in zip(self.param_groups, due):
            if is_due:
                by_distribution.setdefault(group["distribution"], []).extend(
                    p for p in group["params"] if p.grad is not None
                    and p.grad.grad_fn is not None and p not in self._estimates)
        for distribution, params in by_distribution.items():
            if params:
                with torch.enable_grad():
                    estimates = hutchinson_diagonal([p.grad for p in params], params,
                                                    generator=self._generator,
                                                    distribution=distribution)
                self._estimates.update(zip(params, estimates))
                estimated += params
        return estimated

    def _missing_message(self) -> str:
        name = type(self).__name__
        how = ("opt.backward(loss, logits=logits)" if self.estimator == "gnb"
               else "opt.backward(loss) instead of loss.backward() (or "
                    "loss.backward(create_graph=True) when opt.curvature_due)")
        return (f"{name}: this step refreshes the curvature estimate (every update_period "
                f"steps, starting with the first) but found none: call {how}, or give "
                f"estimates with opt.set_curvature(...)")

    def _estimates_for(self, slots: list[_Slot], group: dict[str, Any]) -> list[Tensor]:
        """Each slot's estimate as its real view, negated under ``maximize`` (the curvature
        of the objective actually minimized)."""
        out = []
        for slot in slots:
            d = self._estimates[slot.param]
            d = torch.view_as_real(d) if d.is_complex() else d
            out.append(-d if group["maximize"] else d)
        return out

    # ------------------------------------------------------------------------- step
    def state_dict(self) -> dict[str, Any]:
        """The optimizer state plus the estimator's random generator state (bit-exact resume)."""
        return {**super().state_dict(), "generator": self._generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        generator = state_dict.pop("generator", None)
        super().load_state_dict(state_dict)
        if generator is not None:
            self._generator.set_state(generator)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_generator_state": self._generator.get_state()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        generator_state = state.pop("_generator_state", None)
        super().__setstate__(state)
        self._generator = torch.Generator()
        if generator_state is not None:
            self._generator.set_state(generator_state)
        self._estimates = {}

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One step; on curvature steps, first refresh the estimate (see the module docs)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        due = [self._due(group) for group in self.param_groups]
        try:
            fresh = self._estimate_from_graphs(due) if any(due) else []
        finally:
            _detach_gradients(self.param_groups)  # free graphs kept by create_graph
        if fresh and self.process_group is not None:
            # local Hessian-vector products, from gradients DDP did not average (no_sync)
            grads = [p.grad for group in self.param_groups for p in group["params"]
                     if p.grad is not None]
            all_reduce(grads + [self._estimates[p] for p in fresh], self.process_group,
                       average=True)
        for index, (group, is_due) in enumerate(zip(self.param_groups, due)):
            slots = self._collect(index, group)
            if not slots:
                continue
            if is_due:
                missing = [s for s in slots if s.param not in self._estimates]
                if missing:
                    raise MissingCurvatureError(self._missing_message())
                self._apply_rule(self.refresh, group, slots, self._estimates_for(slots, group))
            self._update_group(group, slots)
        self._estimates.clear()
        self._finish_step()
        return loss


def _detach_gradients(groups: list[dict[str, Any]]) -> None:
    for group in groups:
        for p in group["params"]:
            if p.grad is not None and p.grad.grad_fn is not None:
                p.grad = p.grad.detach()
