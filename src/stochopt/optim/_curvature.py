r"""Optimizers that also read a diagonal curvature estimate, refreshed every k steps.

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
other steps it is a plain ``loss.backward()``. ``step`` frees every graph it used. The Hugging
Face ``Trainer`` and PyTorch Lightning call ``loss.backward()`` themselves: there
:mod:`stochopt.integrations` makes the change.

Real models (attention, ``torch.compile``) need one more line, the forward under
:meth:`~CurvatureOptimizer.curvature_forward`, which does nothing on other steps::

    with opt.curvature_forward():
        logits = model(x)
    loss = loss_fn(logits, y)
    opt.backward(loss)      # SophiaG: opt.backward(loss, logits=logits)
    opt.step()

What it does on curvature steps, and why:

* Hutchinson estimators (SophiaH, AdaHessian) differentiate the gradient again (a double
  backward). The fused ``scaled_dot_product_attention`` kernels (flash, memory-efficient,
  cuDNN, and the CPU flash kernel that ``nn.TransformerEncoderLayer`` and
  ``nn.MultiheadAttention`` call) have none, so attention runs on the math kernel
  (``sdpa_kernel(SDPBackend.MATH)``: it holds the ``(T, T)`` attention matrix, on that step
  only). ``nn.MultiheadAttention``'s fast path needs no switch: it runs only where no
  gradient is recorded.
* ``torch.compile``'d code cannot be differentiated twice (aot_autograd has no double
  backward: no setting changes that), so it runs eagerly
  (``torch.compiler.set_stance("force_eager")``); the other steps stay compiled.
* SophiaG takes two backward passes through the logits' graph, the first keeping it. A
  compiled graph whose backward first ran on an ordinary step (a new input shape, any
  recompile) has donated its saved activations and refuses the second pass
  (``torch._functorch.config.donated_buffer``), so compiled code runs eagerly on curvature
  steps too, unless ``torch._functorch.config.donated_buffer = False`` was set before the
  model first ran: curvature steps then stay compiled. Fused attention kernels are fine.

Without it, :meth:`~CurvatureOptimizer.backward` finds the fused attention node or compiled
region in the loss's (or logits') graph and raises :class:`~stochopt.errors.UnsupportedError`
naming the fix, before any gradient is computed, on the first step; ``step`` does the same,
before drawing a probe, for any other node without a double backward in gradients kept by
hand (``loss.backward(create_graph=True)``). SophiaG refuses a compiled graph with donated
buffers at the first step even where the second pass would still work, since the next
recompile would break it mid-run. ``model._orig_mod`` (the module ``torch.compile``
wrapped) is another way to run a curvature step's forward uncompiled.

Under DDP, pass ``process_group=`` (e.g. ``torch.distributed.group.WORLD``): estimates are
then averaged over the ranks, so they equal the whole batch's. Every rank draws the same
Hutchinson probes from the same seed (the whole batch's Hessian is probed along one
direction); Gauss-Newton-Bartlett labels come from a stream of each rank's own, derived from
the shared generator and the rank (see :func:`~stochopt.curvature.gauss_newton_bartlett`),
as the whole batch's labels are drawn independently. The generator advances alike on every
rank, so a state dict saved by one rank resumes on any rank and any world size.

DDP cannot keep gradient graphs, so a Hutchinson optimizer's curvature steps run their
forward and backward under ``ddp.no_sync()`` and the optimizer averages those gradients
itself::

    with ddp.no_sync() if opt.curvature_due else contextlib.nullcontext():
        loss = loss_fn(ddp(x), y)
        opt.backward(loss)
    opt.step()

Gauss-Newton-Bartlett optimizers need no ``no_sync``: their sampled-label gradients are
averaged before they are squared. Under ``ZeroRedundancyOptimizer`` (each rank holding part of
the parameters) curvature optimizers are refused: a probe spans every parameter. On DTensor
(FSDP2) parameters the update and refresh run shard by shard, but the built-in estimators are
refused (FSDP2 keeps no gradient graph); estimates come from ``set_curvature``.

Under ``maximize=True`` the optimizer minimizes :math:`-f`. A Hutchinson estimate
:math:`z \odot \nabla^2 f\, z` is of the loss :math:`f` given to ``backward`` (or, from
``set_curvature``, of the loss the gradients are of), so it is negated into one of
:math:`-f`, whose Hessian is :math:`-\nabla^2 f` (AdaHessian squares its absolute value, so
the sign never matters to it; Sophia-H's :math:`\max(\gamma h, \epsilon)` then clips where
:math:`-f` is concave). A Gauss-Newton-Bartlett estimate is never negated: it is the
non-negative Gauss-Newton diagonal of the cross-entropy at the logits, the curvature Sophia-G
needs whatever the sign of the loss (as in the official code, which negates only the
gradient); negated, it made Sophia-G's denominator :math:`\gamma h + \epsilon` negative and
its steps unbounded.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch import Tensor

from stochopt._checks import check_seed, show
from stochopt._distributed import all_reduce, built_by_zero, is_dtensor
from stochopt.curvature import gauss_newton_bartlett, hutchinson_diagonal
from stochopt.curvature._args import check_logits, check_scalar_loss, first_nonfinite
from stochopt.errors import MissingCurvatureError, UnsupportedError
from stochopt.optim._engine import ElementwiseOptimizer, _Slot
from stochopt.optim._graphs import (
    check_gradient_graphs,
    check_retainable,
    check_twice_differentiable,
    curvature_forward,
)
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
        seed = check_seed(type(self).__name__, "seed", seed)
        _check_process_group(type(self).__name__, process_group)
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

    def curvature_forward(self) -> contextlib.AbstractContextManager[None]:
        """A context for each step's forward pass: on curvature steps (:attr:`curvature_due`)
        it runs the forward the way the estimator needs, where torch allows it; on other
        steps it does nothing (fused kernels, compiled code).

        On a curvature step, ``torch.compile``'d code runs eagerly
        (``torch.compiler.set_stance("force_eager")``: aot_autograd has no double backward,
        and compiled graphs with donated buffers cannot be run backward twice; SophiaG keeps
        it compiled when ``torch._functorch.config.donated_buffer`` is off), and, for
        Hutchinson estimators (SophiaH, AdaHessian), attention runs on the math kernel
        (``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``: the fused kernels have no
        double backward). Use it for the forward only: :meth:`backward` and :meth:`step` go
        outside it. See the module docs.

        Example:
            >>> from stochopt.optim import SophiaH
            >>> model = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
            >>> opt = SophiaH(model.parameters(), lr=1e-3)
            >>> with opt.curvature_forward():
            ...     loss = model(torch.randn(4, 5, 16)).square().mean()
            >>> opt.backward(loss)
            >>> opt.step()
        """
        if not self.curvature_due:
            return contextlib.nullcontext()
        return curvature_forward(self.estimator)

    # ------------------------------------------------------------------- estimates in
    def backward(self, loss: Tensor, *, logits: Tensor | None = None) -> None:
        """``loss.backward()``, plus what the next step needs to refresh the curvature.

        Both arguments are checked before anything runs; a call that raises has drawn no
        labels and changed no gradient.

        Args:
            loss: the training loss (a scalar tensor with its gradient graph).
            logits: the model outputs, shape ``(..., V)``, that ``loss`` was computed from
                (with their graph, finite); required by the Gauss-Newton-Bartlett estimator on
                curvature steps, ignored otherwise.

        Raises:
            TypeError, ValueError: a loss that is not a scalar with a graph; logits that are
                not a floating tensor of shape ``(..., V)``, or, when they are used, have no
                graph or a NaN or infinite entry.
            UnsupportedError: on a curvature step, a graph the estimator cannot use (a fused
                attention kernel or compiled code for a double backward, a compiled graph
                with donated buffers for a second pass), before any gradient is computed;
                the message names the fix (:meth:`curvature_forward`).
        """
        owner = f"{type(self).__name__}.backward"
        check_scalar_loss(owner, loss)
        due = self.curvature_due
        uses_logits = due and self.estimator == "gnb"
        if logits is not None:
            check_logits(owner, logits, graph=uses_logits, finite=uses_logits)
        if due and any(is_dtensor(p) for g in self.param_groups for p in g["params"]):
            raise UnsupportedError(
                f"{owner}: the built-in curvature estimators do not run "
                f"on DTensor (FSDP2) parameters: FSDP2's gradient reduce-scatter keeps no "
                f"graph for Hessian-vector products, and sampled-label gradients would need "
                f"their own reduction. Compute estimates yourself and pass them with "
                f"opt.set_curvature(...) before step(), or train under DDP")
        if uses_logits:
            if logits is None:
                raise ValueError(
                    f"{owner}: logits=... is required on curvature steps "
                    f"(the next step refreshes the Gauss-Newton-Bartlett estimate, which "
                    f"resamples labels from the model's predictions)")
            check_retainable(owner, logits)
            self._backward_with_labels(loss, logits)
        elif due and self.estimator == "hutchinson":
            check_twice_differentiable(owner, loss)
            with warnings.catch_warnings():
                # torch warns that create_graph ties each parameter to its gradient in a
                # reference cycle; step() detaches the gradients, which breaks it.
                warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph")
                loss.backward(create_graph=True)
        else:
            loss.backward()

    def _backward_with_labels(self, loss: Tensor, logits: Tensor) -> None:
        """The Gauss-Newton-Bartlett estimates of the due groups, then ``loss.backward()``;
        if the backward pass fails, the label generator is rewound and nothing is kept."""
        due = [(p, g.get("label_grad_clip", math.inf)) for g in self.param_groups
               if self._due(g) for p in g["params"] if p.requires_grad]
        params, clips = [p for p, _ in due], [c for _, c in due]
        generator_state = self._generator.get_state()
        try:
            estimates = gauss_newton_bartlett(logits, params, generator=self._generator,
                                              process_group=self.process_group,
                                              max_norm=clips)
            loss.backward()
        except BaseException:
            self._generator.set_state(generator_state)
            raise
        self._estimates.update(zip(params, estimates))

    def set_curvature(self, estimates: Sequence[Tensor | None]) -> None:
        """Give the diagonal estimates for the next curvature step yourself (e.g. from a
        custom or all-reduced estimator): one per parameter, in param-group order, shaped
        like the parameter (complex where it is), floating point, finite, on its device;
        ``None`` leaves a parameter to the built-in estimator. A Hutchinson optimizer takes
        the curvature of the loss the gradients are of (negated under ``maximize``), SophiaG
        the non-negative Gauss-Newton diagonal, used as given (see the module docs).

        All estimates are checked before any is kept: a call that raises keeps none.

        Raises:
            TypeError, ValueError: naming the estimate at fault.
        """
        owner = f"{type(self).__name__}.set_curvature"
        params = [p for group in self.param_groups for p in group["params"]]
        if isinstance(estimates, Tensor | str) or not isinstance(estimates, Sequence):
            raise TypeError(f"{owner}: estimates must be a list or tuple with one tensor (or "
                            f"None) per parameter, got {show(estimates)}")
        if len(estimates) != len(params):
            raise ValueError(f"{owner}: got {len(estimates)} "
                             f"estimates for {len(params)} parameters")
        for i, (p, d) in enumerate(zip(params, estimates)):
            if d is not None:
                _check_estimate(owner, i, p, d)
        bad = first_nonfinite(estimates)
        if bad is not None:
            raise ValueError(f"{owner}: estimate {bad} has a NaN or infinite entry; a "
                             f"curvature estimate must be finite (it would stay in the "
                             f"curvature average for good)")
        for p, d in zip(params, estimates):
            if d is not None:
                self._estimates[p] = d.detach()

    def _estimate_from_graphs(self, due: list[bool]) -> list[Tensor]:
        """Hutchinson estimates for due parameters whose gradient carries its graph and that
        have no estimate yet, one product per probe distribution; the parameters estimated."""
        if self.estimator != "hutchinson":
            return []
        by_distribution: dict[str, list[Tensor]] = {}
        for group, is_due in zip(self.param_groups, due):
            if is_due:
                by_distribution.setdefault(group["distribution"], []).extend(
                    p for p in group["params"] if p.grad is not None
                    and p.grad.grad_fn is not None and p not in self._estimates)
        fresh: dict[Tensor, Tensor] = {}
        generator_state = self._generator.get_state()
        try:
            for distribution, params in by_distribution.items():
                if params:
                    with torch.enable_grad():
                        estimates = hutchinson_diagonal([p.grad for p in params], params,
                                                        generator=self._generator,
                                                        distribution=distribution)
                    fresh.update(zip(params, estimates))
        except BaseException:  # as if no probe had been drawn
            self._generator.set_state(generator_state)
            raise
        self._estimates.update(fresh)
        return list(fresh)

    def _missing_message(self) -> str:
        name = type(self).__name__
        how = ("opt.backward(loss, logits=logits)" if self.estimator == "gnb"
               else "opt.backward(loss) instead of loss.backward() (or "
                    "loss.backward(create_graph=True) when opt.curvature_due)")
        return (f"{name}: this step refreshes the curvature estimate (every update_period "
                f"steps, starting with the first) but found none: call {how}, or give "
                f"estimates with opt.set_curvature(...)")

    def _check_step(self, due: list[bool]) -> None:
        """Before a step changes anything: every gradient can be applied, and every due
        parameter with a gradient has an estimate or the graph to compute one."""
        for index, (group, is_due) in enumerate(zip(self.param_groups, due)):
            for position, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    self._check_sparse(index, position, p, group)
                from_graph = self.estimator == "hutchinson" and p.grad.grad_fn is not None
                if is_due and p not in self._estimates and not from_graph:
                    raise MissingCurvatureError(self._missing_message())
        if self.estimator == "hutchinson":
            check_gradient_graphs(f"{type(self).__name__}.step", (
                p.grad for group, is_due in zip(self.param_groups, due) if is_due
                for p in group["params"] if p.grad is not None and p not in self._estimates))

    def _estimates_for(self, slots: list[_Slot], group: dict[str, Any]) -> list[Tensor]:
        """Each slot's estimate as its real view; a Hutchinson estimate is negated under
        ``maximize`` (the curvature of :math:`-f`, the objective minimized), a
        Gauss-Newton-Bartlett one never (see the module docs)."""
        negate = group["maximize"] and self.estimator == "hutchinson"
        out = []
        for slot in slots:
            d = self._estimates[slot.param]
            d = torch.view_as_real(d) if d.is_complex() else d
            out.append(-d if negate else d)
        return out

    # ------------------------------------------------------------------------- step
    def state_dict(self) -> dict[str, Any]:
        """The optimizer state plus the estimator's random generator state (bit-exact resume).
        Under ``process_group`` the generator is the same on every rank (each derives its
        label stream from it and its rank), so any rank's state dict resumes every rank."""
        return {**super().state_dict(), "generator": self._generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict whole (see the engine's ``load_state_dict``), and the random
        generator state saved with it; a state dict without one keeps this optimizer's
        generator. A call that raises (a bad generator state included) changes nothing."""
        generator = self._checked_generator(state_dict)
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "generator"})
        if generator is not None:
            self._generator.set_state(generator)

    def check_state_dict(self, state_dict: Any
                         ) -> tuple[list[dict[str, Any]], dict[Tensor, dict[str, Any]]]:
        """The engine's checks, and the saved generator state's."""
        self._checked_generator(state_dict)
        return super().check_state_dict(
            {k: v for k, v in state_dict.items() if k != "generator"})

    def _checked_generator(self, state_dict: Any) -> Tensor | None:
        """The saved generator state (``None`` if there is none), tried on a scratch
        generator of this optimizer's device first."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}: state_dict must be a dict with 'state' and "
                            f"'param_groups', got {show(state_dict)}")
        generator = state_dict.get("generator")
        if generator is None:
            return None
        if isinstance(generator, Tensor):  # a trainer may have moved all the state to a GPU
            generator = generator.cpu()
        try:
            torch.Generator(device=self._generator.device).set_state(generator)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{owner}: state_dict['generator'] is not the state of a "
                             f"{self._generator.device} torch.Generator ({show(generator)}: "
                             f"{error}); load a state dict saved by "
                             f"{type(self).__name__}.state_dict()") from None
        return generator

    def __getstate__(self) -> dict[str, Any]:
        """The engine's pickled state, the generator state and ``process_group`` (``None``
        unless it is ``"world"``: a process group object belongs to one process, as the
        engine's ``shard_group``)."""
        group = self.process_group if isinstance(self.process_group, str) else None
        return {**super().__getstate__(), "_generator_state": self._generator.get_state(),
                "process_group": group}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling (which restores the generator) or installing a loaded state dict
        (``load_state_dict`` restores the generator itself); pending estimates are dropped."""
        state = dict(state)
        unpickling = "_generator_state" in state or "_generator" not in self.__dict__
        generator_state = state.pop("_generator_state", None)
        super().__setstate__(state)
        if unpickling:
            self._generator = torch.Generator()
            if generator_state is not None:
                self._generator.set_state(generator_state)
        self.__dict__.setdefault("process_group", None)
        self._estimates = {}

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One step; on curvature steps, first refresh the estimate (see the module docs)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        due = [self._due(group) for group in self.param_groups]
        self._check_step(due)
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


def _check_process_group(owner: str, group: Any) -> None:
    """``None``, ``"world"`` or a ``torch.distributed`` process group."""
    is_group = dist.is_available() and isinstance(group, dist.ProcessGroup)
    if not (group is None or is_group or (isinstance(group, str) and group == "world")):
        raise TypeError(f"{owner}: process_group must be None, 'world' or a "
                        f"torch.distributed process group (e.g. torch.distributed.group.WORLD),"
                        f" got {show(group)}")


def _check_estimate(owner: str, index: int, p: Tensor, d: Any) -> None:
    """Estimate ``index``, for parameter ``p``: a floating tensor of its shape, complex where
    it is, on its device (finiteness is checked for all estimates at once)."""
    at = f"estimate {index}"
    if not isinstance(d, Tensor):
        raise TypeError(f"{owner}: {at} must be a tensor or None, got {show(d)}")
    if d.shape != p.shape:
        raise ValueError(f"{owner}: {at} has shape {tuple(d.shape)}, its parameter "
                         f"{tuple(p.shape)}")
    if not (d.is_floating_point() or d.is_complex()) or d.is_complex() != p.is_complex():
        kind = "complex" if p.is_complex() else "real floating-point"
        raise TypeError(f"{owner}: {at} has dtype {d.dtype}; its parameter ({p.dtype}) needs "
                        f"a {kind} estimate")
    if d.device != p.device:
        raise ValueError(f"{owner}: {at} is on {d.device}, its parameter on {p.device}")
