r"""SSO: stochastic surrogate optimization in target space (Lavington et al., ICML 2023).

The loss is a function of the model's outputs (its *targets*) :math:`z = f(\theta, X)`. The
gradient with respect to the targets, :math:`\nabla_z L`, is the expensive oracle (in
imitation learning it needs the expert or the environment); the model's own forward and
backward passes are cheap. SSO spends one expensive gradient per batch to build a surrogate in
target space and then takes ``inner_steps`` cheap Armijo line-search steps on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, show
from stochopt.errors import NonFiniteError

__all__ = ["SSO", "surrogate"]

#: SSO's hyperparameters, all in its one parameter group
HYPERPARAMETERS = ("lr", "inner_steps", "inner_lr", "armijo_c", "backtrack", "grow",
                   "max_backtracks")
#: the counters :meth:`SSO.state_dict` saves
COUNTS = ("target_gradients", "surrogate_gradients", "surrogate_evaluations",
          "failed_line_searches")


def _check_group(owner: str, group: Mapping[str, Any]) -> None:
    """SSO's hyperparameters in one parameter group, each in its range."""
    check_real(owner, "lr", group["lr"], high_open=False)
    check_int(owner, "inner_steps", group["inner_steps"], low=1, high=10**9)
    check_real(owner, "inner_lr", group["inner_lr"])
    check_real(owner, "armijo_c", group["armijo_c"], high=1.0)
    check_real(owner, "backtrack", group["backtrack"], high=1.0)
    check_real(owner, "grow", group["grow"], low=1.0, low_open=False)
    check_int(owner, "max_backtracks", group["max_backtracks"], low=0, high=10**9)


def _check_counts(owner: str, counts: Any) -> dict[str, int]:
    """A saved ``counts``: exactly SSO's counters, each an integer >= 0."""
    if not isinstance(counts, Mapping) or set(counts) != set(COUNTS):
        got = sorted(map(str, counts)) if isinstance(counts, Mapping) else show(counts)
        raise ValueError(f"{owner}: counts must map exactly {list(COUNTS)} to integers >= 0, "
                         f"got {got}")
    return {k: check_int(owner, f"counts[{k!r}]", counts[k], low=0) for k in COUNTS}


def surrogate(z: Tensor, z_t: Tensor, grad: Tensor, loss_t: Tensor, eta: float) -> Tensor:
    r"""The SSO surrogate of a batch loss at targets ``z``, built at ``z_t``.

    .. math::
        h(z) = L(z_t) + \langle \nabla L(z_t), z - z_t \rangle
               + \frac{1}{2 \eta n} \lVert z - z_t \rVert_F^2,

    with :math:`L(z) = \frac1n \sum_i \ell_i(z_i)` the batch-mean loss over :math:`n` rows. If
    every :math:`\ell_i` is :math:`\beta`-smooth and :math:`\eta \le 1 / \beta`, then
    :math:`h \ge L` everywhere with equality at :math:`z_t` (a majorant), so minimizing
    :math:`h(f(\theta))` over :math:`\theta` cannot increase the full-batch loss.

    Args:
        z: targets, shape ``(n, ...)`` (a 0-d tensor counts as one row).
        z_t: the targets the surrogate is built at, same shape (no gradient).
        grad: :math:`\nabla_z L(z_t)`, same shape.
        loss_t: :math:`L(z_t)`, a scalar.
        eta: the target-space step size :math:`\eta > 0`.
    """
    rows = z.shape[0] if z.dim() > 0 else 1
    step = z - z_t
    return loss_t + (grad * step).sum() + step.pow(2).sum() / (2 * eta * rows)


class SSO(torch.optim.Optimizer):
    r"""Stochastic surrogate optimization: projected SGD in target space, by inner line search.

    Symbols: :math:`\eta` = ``lr`` (target-space step), :math:`m` = ``inner_steps``,
    :math:`\alpha_0` = ``inner_lr``, :math:`c` = ``armijo_c``, :math:`\rho` = ``backtrack``.
    At outer step :math:`t`, on batch :math:`B`:

    .. math::
        z_t &= f(\theta_t, X_B), \qquad G_t = \nabla_z L_B(z_t)
              \quad \text{(the one expensive gradient)} \\
        h_t(\theta) &= L_B(z_t) + \langle G_t, f(\theta, X_B) - z_t \rangle
              + \tfrac{1}{2 \eta n} \lVert f(\theta, X_B) - z_t \rVert_F^2 \\
        \theta &\leftarrow \theta - \alpha \nabla h_t(\theta) \quad (m \text{ times}),
              \text{ with the largest } \alpha \in \{\alpha_0 \rho^k\} \text{ such that }
              h_t(\theta - \alpha \nabla h_t) \le h_t(\theta) - c \alpha \lVert \nabla h_t
              \rVert^2.

    Minimizing :math:`h_t` exactly projects the target-space SGD step
    :math:`z_t - \eta n G_t` onto the model's reachable targets (in the metric of the batch);
    with :math:`m = 1` SSO is close to SGD with a line search. Each inner step costs one
    forward and backward pass of the model per tried step size, and no target-space gradient.

    Use a ``torch.optim.lr_scheduler`` on ``lr`` for the paper's decreasing :math:`\eta_t`.
    Counters (``counts``) record target-space gradients, surrogate gradients and surrogate
    evaluations; they are saved by ``state_dict``.

    Non-finite values: a step whose targets, loss or target-space gradient at :math:`z_t` is
    NaN or infinite raises :class:`~stochopt.errors.NonFiniteError` before anything changes
    (parameters and counters as they were: catch it to skip the batch); a trial step whose
    surrogate value is not finite is not accepted (the line search backtracks).

    Args:
        params: the model's parameters (one group: the line search is over all of them).
        lr: :math:`\eta`, the target-space step (> 0). With :math:`\beta`-smooth per-row
            losses, :math:`\eta \le 1/\beta` makes the surrogate a majorant.
        inner_steps: :math:`m \ge 1`, surrogate steps per expensive gradient.
        inner_lr: :math:`\alpha_0`, the first step size tried at every outer step, finite
            (official code: 10).
        armijo_c: :math:`c \in (0, 1)`, sufficient decrease (official code: 0.5).
        backtrack: :math:`\rho \in (0, 1)`, step shrink factor per failed trial (0.9).
        grow: finite factor :math:`\ge 1` applied to the accepted step before the next inner
            step (official code: :math:`1.8^{1/\text{batches per epoch}}`; 1 keeps it).
        max_backtracks: trials per inner step before giving up; an inner step that finds no
            sufficient decrease leaves the parameters where they are.

    Example:
        >>> model = torch.nn.Linear(3, 1, dtype=torch.float64)
        >>> opt = SSO(model.parameters(), lr=1.0, inner_steps=5)
        >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
        >>> loss = opt.step(lambda: model(x), lambda z: 0.5 * (z - y).pow(2).sum(-1).mean())

    References:
        Lavington, Vaswani, Babanezhad, Schmidt & Le Roux, "Target-based Surrogates for
        Stochastic Optimization", ICML 2023, arXiv:2302.02607.

    Departures from the official code: the surrogate is normalized per row as above (the code
    averages :math:`s G z + (z - z_t)^2` over rows and outputs with the batch-mean gradient, so
    its step :math:`s` depends on the batch size); an inner step with no sufficient decrease is
    not taken (the code takes the last, smallest trial step anyway).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1.0, *,
                 inner_steps: int = 10, inner_lr: float = 10.0, armijo_c: float = 0.5,
                 backtrack: float = 0.9, grow: float = 1.0, max_backtracks: int = 100) -> None:
        defaults = {"lr": lr, "inner_steps": inner_steps, "inner_lr": inner_lr,
                    "armijo_c": armijo_c, "backtrack": backtrack, "grow": grow,
                    "max_backtracks": max_backtracks}
        super().__init__(params, defaults)
        self.counts = dict.fromkeys(COUNTS, 0)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add the one parameter group (its hyperparameters checked first); a second is
        refused, since the line search moves all parameters together."""
        if self.param_groups:
            raise ValueError("SSO: params must form one parameter group (the line search "
                             "moves all parameters together), got a second one")
        if not isinstance(param_group, Mapping):
            raise TypeError(f"SSO: a parameter group must be a dict, got {show(param_group)}")
        _check_group("SSO", {**self.defaults, **param_group})
        super().add_param_group(param_group)

    def step(self, outputs: Callable[[], Tensor],  # type: ignore[override]
             loss: Callable[[Tensor], Tensor]) -> Tensor:
        """One outer step on a batch.

        Args:
            outputs: recomputes the model's outputs (targets) on the batch, shape ``(n, ...)``;
                called once per surrogate evaluation.
            loss: the batch-mean loss as a function of the targets; its gradient is the
                expensive oracle, taken once.

        Returns:
            The batch loss at the targets before the step.

        Raises:
            NonFiniteError: the targets, the loss or its gradient at :math:`z_t` is not
                finite (nothing changed).
            ValueError, TypeError: a closure returned the wrong thing, or a hyperparameter of
                the group is out of range (nothing changed).
        """
        group = self.param_groups[0]
        _check_group("SSO.step", group)  # a scheduler or the user may have changed the group
        if not callable(outputs) or not callable(loss):
            raise TypeError(f"SSO.step: outputs and loss must be callables, got "
                            f"{show(outputs)} and {show(loss)}")
        params = [p for p in group["params"] if p.requires_grad]
        z_t, loss_t, grad = self._target_gradient(outputs, loss)
        self.counts["target_gradients"] += 1

        def h() -> Tensor:
            self.counts["surrogate_evaluations"] += 1
            return surrogate(outputs(), z_t, grad, loss_t, group["lr"])

        alpha = float(group["inner_lr"])
        for _ in range(group["inner_steps"]):
            alpha = self._armijo_step(h, params, alpha, group) * group["grow"]
        return loss_t

    @staticmethod
    def _target_gradient(outputs: Callable[[], Tensor], loss: Callable[[Tensor], Tensor]
                         ) -> tuple[Tensor, Tensor, Tensor]:
        """:math:`z_t`, :math:`L(z_t)` and :math:`\\nabla_z L(z_t)`, checked: a tensor of
        targets that depends on the parameters, one loss value computed from them, all
        finite."""
        with torch.enable_grad():
            z_full = outputs()
            if not isinstance(z_full, Tensor) or not z_full.is_floating_point():
                raise TypeError(f"SSO.step: outputs() must return a floating-point tensor of "
                                f"targets, got {show(z_full)}")
            if not z_full.requires_grad:
                raise ValueError("SSO.step: outputs() must depend on the parameters (its "
                                 "result does not require grad)")
            z_t = z_full.detach()
            z = z_t.clone().requires_grad_(True)
            loss_t = loss(z)
            if not isinstance(loss_t, Tensor) or loss_t.numel() != 1:
                raise ValueError(f"SSO.step: loss(z) must return one value (a 0-d tensor), "
                                 f"got {show(loss_t)}")
            if not loss_t.requires_grad:
                raise ValueError("SSO.step: loss(z) must be computed from the targets z (its "
                                 "result does not require grad)")
            (grad,) = torch.autograd.grad(loss_t.reshape(()), z)
        for name, value in (("the targets outputs()", z_t), ("the loss", loss_t),
                            ("the target-space gradient", grad)):
            if not bool(torch.isfinite(value).all()):
                raise NonFiniteError(f"SSO.step: {name} at z_t is not finite; the step was "
                                     f"not taken (nothing changed)")
        return z_t, loss_t.detach().reshape(()), grad

    def _armijo_step(self, h: Callable[[], Tensor], params: list[Tensor], alpha: float,
                     group: dict[str, Any]) -> float:
        """One backtracking gradient step on the surrogate; returns the accepted step size
        (the last one tried when none is accepted, so the next inner step starts there)."""
        with torch.enable_grad():
            value = h()
            grads = torch.autograd.grad(value, params, allow_unused=True)
        self.counts["surrogate_gradients"] += 1
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        norm2 = sum(float(g.pow(2).sum()) for g in grads)
        if norm2 == 0.0:  # a stationary point of the surrogate: nothing to search
            return alpha
        start = [p.detach().clone() for p in params]
        with torch.no_grad():
            for _ in range(group["max_backtracks"] + 1):
                for p, p0, g in zip(params, start, grads):
                    p.copy_(p0 - alpha * g)
                if float(h()) <= float(value) - group["armijo_c"] * alpha * norm2:
                    return alpha
                alpha *= group["backtrack"]
            for p, p0 in zip(params, start):
                p.copy_(p0)
        self.counts["failed_line_searches"] += 1
        return alpha

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["counts"] = dict(self.counts)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: its counters (if saved) and its one group's
        hyperparameters are checked before anything changes (torch then checks the group's
        size)."""
        owner = "SSO.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}: state_dict must be a mapping, got {show(state_dict)}")
        state_dict = dict(state_dict)
        counts = state_dict.pop("counts", None)
        if counts is not None:
            counts = _check_counts(owner, counts)
        if set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{owner}: expected the keys 'state', 'param_groups' (and "
                             f"'counts'), got {sorted(map(str, state_dict))}")
        groups = state_dict["param_groups"]
        if not isinstance(groups, list | tuple) or len(groups) != 1:
            got = len(groups) if isinstance(groups, list | tuple) else show(groups)
            raise ValueError(f"{owner}: param_groups must hold one group, got {got}")
        if not isinstance(groups[0], Mapping) or not isinstance(groups[0].get("params"),
                                                                list | tuple):
            raise ValueError(f"{owner}: the group must be a dict with a list of 'params', got "
                             f"{show(groups[0])}")
        missing = [k for k in HYPERPARAMETERS if k not in groups[0]]
        if missing:
            raise ValueError(f"{owner}: the group lacks SSO's hyperparameters {missing} (a "
                             f"state dict of another optimizer?)")
        _check_group(owner, groups[0])
        if not isinstance(state_dict["state"], Mapping) or state_dict["state"]:
            raise ValueError(f"{owner}: state must be an empty dict (SSO keeps no "
                             f"per-parameter state), got {show(state_dict['state'])}")
        super().load_state_dict(state_dict)
        if counts is not None:
            self.counts = counts
