"""Independent float64 transcriptions of each optimizer's official update rule, in NumPy.

They share no code with the library: each is written from the paper and its official code
(cited per class, with the file and the commit it follows), statement by statement, keeping
the official order of operations. State keys use the library's names so tests can compare
state as well as parameters.

Common to all: ``maximize`` negates the gradient before anything else (as ``torch.optim``
does; none of the official codes has the flag), and an official in-place change of
``p.grad`` (L2 decay ``grad.add_(...)``) is written as a new array, since only parameters and
state are compared. Where the library goes beyond the official code (a refresh period, more
tensor ranks), the class docstring says which lines are the library's extension; every other
line is the official rule.
"""

from __future__ import annotations

import math

import numpy as np


class Reference:
    """Base: per-parameter state dicts and a step over lists of float64 arrays."""

    def __init__(self, **hp):
        self.hp = hp
        self.state: list[dict] = []

    def step(self, params: list[np.ndarray], grads: list[np.ndarray | None],
             estimates: list[np.ndarray | None] | None = None) -> None:
        """One step; curvature references also take the diagonal estimates of this step."""
        if not self.state:
            self.state = [{} for _ in params]
        self.before_step(params, grads)
        estimates = estimates or [None] * len(params)
        for p, g, d, st in zip(params, grads, estimates, self.state):
            if g is not None:
                if d is None:
                    self.step_one(p, g.copy(), st)
                else:
                    self.step_one(p, g.copy(), st, d.copy())

    def before_step(self, params, grads) -> None:
        pass

    def step_one(self, p: np.ndarray, g: np.ndarray, st: dict) -> None:
        raise NotImplementedError


class AdamWRef(Reference):
    """AdamW as ``torch.optim.AdamW`` computes it: ``_single_tensor_adam`` with
    ``decoupled_weight_decay=True`` in ``torch/optim/adam.py``, pytorch/pytorch commit
    cf30153c4c131c8164ee7798e5022d810682e2cb (torch 2.13.0), and its documented algorithm
    (Loshchilov & Hutter, arXiv:1711.05101; Kingma & Ba, arXiv:1412.6980).

    torch is the anchor because the library promises torch's signature and rule. The paper's
    Algorithm 2 multiplies the decay by the schedule multiplier alone (theta -= eta_t lambda
    theta); torch scales it by the learning rate (theta *= 1 - lr lambda), and so do we.
    """

    def step_one(self, p, g, st):
        lr, (b1, b2), eps, wd = (self.hp["lr"], self.hp["betas"], self.hp["eps"],
                                 self.hp["weight_decay"])
        if not st:
            st.update(step=0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p))
            if self.hp["amsgrad"]:
                st["max_exp_avg_sq"] = np.zeros_like(p)
        if self.hp["maximize"]:
            g = -g
        st["step"] += 1
        t = st["step"]
        p *= 1 - lr * wd
        st["exp_avg"][...] = b1 * st["exp_avg"] + (1 - b1) * g
        st["exp_avg_sq"][...] = b2 * st["exp_avg_sq"] + (1 - b2) * g * g
        v = st["exp_avg_sq"]
        if self.hp["amsgrad"]:
            st["max_exp_avg_sq"][...] = np.maximum(st["max_exp_avg_sq"], v)
            v = st["max_exp_avg_sq"]
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
        p -= lr / (1 - b1**t) * st["exp_avg"] / denom


class AdaBeliefRef(Reference):
    """``AdaBelief.step`` of adabelief-pytorch 0.2.1 (Zhuang et al., arXiv:2010.07468):
    ``pypi_packages/adabelief_pytorch0.2.1/adabelief_pytorch/AdaBelief.py`` of
    juntang-zhuang/Adabelief-Optimizer, last changed in commit
    1059ccab1bdf0d18bfd44028579e4909bb866cee (repository head
    2855178eff6776762793f915ce2c615f776a1e4b); identical to the file pip installs.

    Kept from it: eps added to ``exp_avg_var`` in place every step (before the AMSGrad
    maximum), and the rectified step dividing by ``sqrt(exp_avg_var)``, not by the AMSGrad
    maximum. Its step-size cache (``group["buffer"]``) holds values that depend on the step
    alone, so it is computed afresh here.
    """

    def step_one(self, p, g, st):
        hp = self.hp
        lr, (b1, b2), eps, wd = hp["lr"], hp["betas"], hp["eps"], hp["weight_decay"]
        if not st:
            st.update(step=0, exp_avg=np.zeros_like(p), exp_avg_var=np.zeros_like(p))
            if hp["amsgrad"]:
                st["max_exp_avg_var"] = np.zeros_like(p)
        if hp["maximize"]:
            g = -g
        if hp["weight_decouple"]:
            p *= 1.0 - (wd if hp["fixed_decay"] else lr * wd)
        elif wd != 0:
            g = g + wd * p
        m, s = st["exp_avg"], st["exp_avg_var"]
        st["step"] += 1
        t = st["step"]
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        m[...] = b1 * m + (1 - b1) * g
        residual = g - m
        s[...] = b2 * s + (1 - b2) * residual * residual
        s += eps  # in place, in both branches of the official code
        if hp["amsgrad"]:
            st["max_exp_avg_var"][...] = np.maximum(st["max_exp_avg_var"], s)
            denom = np.sqrt(st["max_exp_avg_var"]) / math.sqrt(bc2) + eps
        else:
            denom = np.sqrt(s) / math.sqrt(bc2) + eps
        if not hp["rectify"]:
            p -= lr / bc1 * m / denom
            return
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho >= 5:
            r = math.sqrt((1 - b2**t) * (rho - 4) / (rho_inf - 4) * (rho - 2) / rho
                          * rho_inf / (rho_inf - 2))
            p -= r / bc1 * lr * m / (np.sqrt(s) + eps)
        elif hp["degenerated_to_sgd"]:
            p -= 1.0 / bc1 * lr * m


class DiffGradRef(Reference):
    """``diffgrad.step`` of ``diffGrad_v2.py`` in shivram1987/diffGrad, added in commit
    93fb7fcdf1ddefea04d4273b91f42f1c6e0da4b4 and unchanged up to the repository head
    73233ba4708701cf552bcecb1f065d46d2d77164 (Dubey et al., arXiv:1909.11015).

    The official L2 term is ``grad.add_(weight_decay, p.data)``, in place on ``p.grad``; the
    decayed gradient enters both moments and the stored previous gradient, as here.
    """

    def step_one(self, p, g, st):
        lr, (b1, b2), eps, wd = (self.hp["lr"], self.hp["betas"], self.hp["eps"],
                                 self.hp["weight_decay"])
        if not st:
            st.update(step=0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p),
                      previous_grad=np.zeros_like(p))
        if self.hp["maximize"]:
            g = -g
        st["step"] += 1
        t = st["step"]
        if wd != 0:
            g = g + wd * p
        st["exp_avg"][...] = b1 * st["exp_avg"] + (1 - b1) * g
        st["exp_avg_sq"][...] = b2 * st["exp_avg_sq"] + (1 - b2) * g * g
        denom = np.sqrt(st["exp_avg_sq"]) + eps
        diff = np.abs(st["previous_grad"] - g)
        dfc = 1.0 / (1.0 + np.exp(-diff))
        st["previous_grad"][...] = g
        step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        p -= step_size * (st["exp_avg"] * dfc) / denom


class AdaGradRef(Reference):
    """AdaGrad as ``torch.optim.Adagrad`` computes it: ``_single_tensor_adagrad`` in
    ``torch/optim/adagrad.py``, pytorch/pytorch commit
    cf30153c4c131c8164ee7798e5022d810682e2cb (torch 2.13.0), and its documented algorithm
    (Duchi, Hazan & Singer, JMLR 12, 2011, whose diagonal rule it is; the paper has no code).
    """

    def step_one(self, p, g, st):
        hp = self.hp
        if not st:
            st.update(step=0, sum=np.full_like(p, hp["initial_accumulator_value"]))
        if hp["maximize"]:
            g = -g
        st["step"] += 1
        clr = hp["lr"] / (1 + (st["step"] - 1) * hp["lr_decay"])
        g = g + hp["weight_decay"] * p
        st["sum"] += g * g
        p -= clr * g / (np.sqrt(st["sum"]) + hp["eps"])


class AdaGradNormRef(Reference):
    """AdaGrad-Norm, Algorithm 1 of Ward, Wu & Bottou (arXiv:1806.01811, JMLR 2020):
    b_{j+1}^2 = b_j^2 + ||G(x_j)||^2, then x_{j+1} = x_j - eta G(x_j) / b_{j+1}, with the norm
    over every parameter ("global" mode, the paper's algorithm).

    "row" mode follows ``adagradnorm.py`` of timlautk/AdAdaGrad, commit
    135b9aad291ae91ab4aa7e726adc2c0ea833443b (Lau, Liu & Kolar, arXiv:2402.11215): one
    accumulator per slice along dim 0 of 2-d and 4-d tensors. The rest is the library's
    design, not an official rule: "tensor" mode; "row" on tensors of other ranks (the
    official code gives 1-d tensors per-coordinate sums, 3-d ones fall to the same branch);
    L2 decay ``g + lambda theta`` before the norm (the official code subtracts
    ``lr * lambda * grad`` from theta); no 1e-10 added to b. None of these is a paper rule.
    """

    def before_step(self, params, grads):
        wd, sign = self.hp["weight_decay"], -1.0 if self.hp["maximize"] else 1.0
        self.global_sq = sum(float(np.sum((sign * g + wd * p) ** 2))
                             for p, g in zip(params, grads) if g is not None)

    def step_one(self, p, g, st):
        hp = self.hp
        mode = hp["mode"]
        if not st:
            shape = (p.shape[0],) + (1,) * (p.ndim - 1) if mode == "row" and p.ndim >= 2 else ()
            st.update(step=0, sum_sq=np.full(shape, hp["initial_accumulator_value"]))
        if hp["maximize"]:
            g = -g
        st["step"] += 1
        g = g + hp["weight_decay"] * p
        if mode == "global":
            st["sum_sq"] += self.global_sq
        elif mode == "tensor" or p.ndim < 2:
            st["sum_sq"] += np.sum(g * g)
        else:
            for i in range(p.shape[0]):
                st["sum_sq"][i] += np.sum(g[i] ** 2)
        p -= hp["lr"] * g / np.sqrt(st["sum_sq"])


class AdaHessianRef(Reference):
    """``Adahessian.step`` of ``image_classification/optim_adahessian.py`` in
    amirgholami/adahessian, last changed in commit 935a0476aeb8f76b397d9ef4f04d59d7783abfec
    (repository head 85ebc00ce873c8497a64ca80bbfa5d996109efea); Yao et al., arXiv:2006.00719.

    ``d`` is the raw Hutchinson product z * Hz; the official code takes ``|Hz|``, which is
    ``|z * Hz|`` for its Rademacher probes, and averages it over dims 2 and 3 of 4-d kernels.
    Library extensions (the official rule when ``update_period == 1`` and no tensor has 3 or
    5+ dims): the estimate refreshes every ``update_period`` steps, the EMA takes fresh
    estimates only and its bias correction counts refreshes; tensors of 3 or 5+ dims are
    averaged over dims 2 and up (the official code has no branch for them).
    """

    def step_one(self, p, g, st, d=None):
        hp = self.hp
        (b1, b2), k = hp["betas"], hp["update_period"]
        if not st:
            st.update(step=0, exp_avg=np.zeros_like(p), exp_hessian_diag_sq=np.zeros_like(p))
            self.refreshes = getattr(self, "refreshes", {})
        if hp["maximize"]:
            g = -g
            d = None if d is None else -d
        if st["step"] % k == 0:
            D = np.abs(d)
            if D.ndim >= 3:
                D = np.broadcast_to(D.mean(axis=tuple(range(2, D.ndim)), keepdims=True), D.shape)
            st["exp_hessian_diag_sq"][...] = b2 * st["exp_hessian_diag_sq"] + (1 - b2) * D * D
            self.refreshes[id(st)] = self.refreshes.get(id(st), 0) + 1
        st["step"] += 1
        n = self.refreshes[id(st)]
        st["exp_avg"][...] = b1 * st["exp_avg"] + (1 - b1) * g
        power = hp["hessian_power"]
        denom = np.sqrt(st["exp_hessian_diag_sq"]) ** power / math.sqrt(1 - b2**n) ** power
        denom = denom + hp["eps"]
        p[...] = p - hp["lr"] * (st["exp_avg"] / (1 - b1 ** st["step"]) / denom
                                 + hp["weight_decay"] * p)


class SophiaGRef(Reference):
    """Official ``sophia.py`` SophiaG, ``_single_tensor_sophiag``, at commit
    2fc52f24d4bc008658111b0237a70953ada22398 (the file's last change; repository head
    a7e157229b71d58cf995d32854f1be15c265b350); Liu et al., arXiv:2305.14342.

    Official: under ``maximize`` only the gradient is negated (``update_hessian`` squares
    the resampled-label gradient, so h is never negative); the step is
    ``-lr * sign(m) * min(|m| / (rho * bs * h + 1e-15), 1)``. The library's extensions:
    ``bs = 1``, since ``d`` already carries the factor B (see :func:`gnb_estimate_ref`);
    ``eps`` is an argument; and the paper's schedule: the estimate of step t = 1, k + 1, ...
    enters h before that step's update (the official script refreshes after step k - 1).
    """

    def step_one(self, p, g, st, d=None):
        hp = self.hp
        b1, b2 = hp["betas"]
        if not st:
            st.update(step=0, exp_avg=np.zeros_like(p), hessian=np.zeros_like(p))
        if hp["maximize"]:
            g = -g  # and never d
        if st["step"] % hp["update_period"] == 0:  # update_hessian: h = b2 h + (1 - b2) d
            st["hessian"][...] = b2 * st["hessian"] + (1 - b2) * d
        st["step"] += 1
        p *= 1 - hp["lr"] * hp["weight_decay"]
        st["exp_avg"][...] = b1 * st["exp_avg"] + (1 - b1) * g
        ratio = np.minimum(np.abs(st["exp_avg"]) / (hp["rho"] * st["hessian"] + hp["eps"]), 1.0)
        p -= hp["lr"] * np.sign(st["exp_avg"]) * ratio


def gnb_estimate_ref(x, weight, bias, labels, grad_clip=0.0):
    """The official resampled-label step for a softmax regression ``logits = x W^T + b``
    (``train_sophiag.py`` at commit a7e157229b71d58cf995d32854f1be15c265b350): the mean
    cross-entropy of all ``N`` predictions against sampled ``labels``, its gradient, clipped
    by ``clip_grad_norm_(..., grad_clip)`` unless ``grad_clip == 0``, squared by
    ``update_hessian``, times ``bs = N`` (as its step does): ``[d_W, d_b]``.

    ``x`` is ``(..., n_in)`` (``(B, T, n_in)`` for a language model), ``labels`` ``(...)``;
    the gradient is written in closed form, ``(softmax - onehot) / N`` per prediction.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1, weight.shape[1])  # (N, n_in)
    labels = np.asarray(labels).reshape(-1)  # (N,)
    n = x.shape[0]
    z = x @ weight.T + bias  # (N, V)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    residual = probs.copy()
    residual[np.arange(n), labels] -= 1.0  # d(mean CE)/d logits, times N
    g_w, g_b = residual.T @ x / n, residual.sum(axis=0) / n
    if grad_clip != 0.0:
        total = math.sqrt(float(np.sum(g_w**2) + np.sum(g_b**2)))
        coef = min(grad_clip / (total + 1e-6), 1.0)
        g_w, g_b = g_w * coef, g_b * coef
    return [n * g_w * g_w, n * g_b * g_b]


def gauss_newton_diagonal_ref(x, weight, bias):
    """The exact diagonal of the Gauss-Newton matrix of the mean cross-entropy of a softmax
    regression, the expectation of the Gauss-Newton-Bartlett estimate (Liu et al.,
    arXiv:2305.14342, Section 2.3): ``J^T (diag(p) - p p^T) J`` averaged over the ``N``
    predictions, whose diagonal is ``mean_n p_nc (1 - p_nc) x_ni^2`` for ``W[c, i]`` and
    ``mean_n p_nc (1 - p_nc)`` for ``b[c]``: ``[GN_W, GN_b]``."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, weight.shape[1])  # (N, n_in)
    z = x @ weight.T + bias
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    variance = probs * (1 - probs)  # (N, V)
    return [variance.T @ (x * x) / x.shape[0], variance.mean(axis=0)]


class SophiaHRef(Reference):
    """Sophia-H as the paper states it (Liu et al., arXiv:2305.14342, Algorithms 1 and 3):
    h an EMA of the Hutchinson estimates ``d``, refreshed on steps t = 1, k + 1, ... before
    that step's update, and ``theta -= lr * clip(m / max(rho h, eps), 1)`` after the
    decoupled decay, with no bias correction. The last official SophiaH (``sophia.py`` at
    commit c503211be0c4585aa17f8a1dea10db8472be9f93) differs (bias-corrected step size,
    ``gamma * relu(h) + 1e-12``), as the library's docstring lists. The library's convention
    under ``maximize``: ``d`` is the estimate for the loss ``f`` whose gradient is given, so
    it is negated with the gradient (the curvature of ``-f``; the official code negated only
    the gradient and had no estimator).
    """

    def step_one(self, p, g, st, d=None):
        hp = self.hp
        b1, b2 = hp["betas"]
        if not st:
            st.update(step=0, exp_avg=np.zeros_like(p), hessian=np.zeros_like(p))
        if hp["maximize"]:
            g = -g
            d = None if d is None else -d
        if st["step"] % hp["update_period"] == 0:
            st["hessian"][...] = b2 * st["hessian"] + (1 - b2) * d
        st["step"] += 1
        p *= 1 - hp["lr"] * hp["weight_decay"]
        st["exp_avg"][...] = b1 * st["exp_avg"] + (1 - b1) * g
        denominator = np.maximum(hp["rho"] * st["hessian"], hp["eps"])
        p -= hp["lr"] * np.clip(st["exp_avg"] / denominator, -1.0, 1.0)


class ProxSGDRef(Reference):
    """Composite stochastic mirror descent (Liu & Zhou, arXiv:2312.08531) with the
    Euclidean mirror map: x_{t+1} = argmin_x h(x) + <g_t, x> + ||x - x_t||^2 / (2 eta), whose
    closed forms are written here from their definitions (soft thresholding for l1, then
    division by 1 + eta l2 for the elastic net, clipping for a box). The paper has no code.
    The uniform and suffix averages of the iterates x_1, ..., x_t (not x_0) are the library's
    additions, kept as running means.
    """

    def step_one(self, p, g, st):
        hp = self.hp
        lr, start = hp["lr"], hp["suffix_start"]
        if not st:
            st.update(step=0, average=np.zeros_like(p))
            if start > 0:
                st["suffix_average"] = np.zeros_like(p)
        if hp["maximize"]:
            g = -g
        st["step"] += 1
        z = p - lr * g
        if hp["prox"] in ("l1", "elastic_net"):
            z = np.sign(z) * np.maximum(np.abs(z) - lr * hp["l1"], 0.0)
            if hp["prox"] == "elastic_net":
                z = z / (1 + lr * hp["l2"])
        elif hp["prox"] == "box":
            z = np.clip(z, hp["lower"], hp["upper"])
        p[...] = z
        st["average"] += (p - st["average"]) / st["step"]
        if start > 0 and st["step"] > start:
            st["suffix_average"] += (p - st["suffix_average"]) / (st["step"] - start)
