"""Independent float64 transcriptions of each optimizer's official update rule, in NumPy.

They share no code with the library: each is written from the paper and its official code
(cited per class), statement by statement, keeping the official order of operations. State
keys use the library's names so tests can compare state as well as parameters.
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
    """torch.optim.AdamW's documented algorithm (Loshchilov & Hutter, arXiv:1711.05101)."""

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
    """adabelief-pytorch 0.2.1 ``AdaBelief.step`` (Zhuang et al., arXiv:2010.07468)."""

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
    """Official ``diffGrad_v2.py`` (Dubey et al., arXiv:1909.11015)."""

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
    """torch.optim.Adagrad's documented algorithm (Duchi et al., JMLR 2011)."""

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
    """AdaGrad-Norm (Ward, Wu & Bottou, arXiv:1806.01811): b² += ‖g‖², θ -= η g / b."""

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
    """Official ``image_classification/optim_adahessian.py`` (Yao et al., arXiv:2006.00719),
    with the estimate refreshed every ``update_period`` steps (EMA of fresh estimates only,
    bias correction by the number of refreshes); ``d`` is the raw z * Hz."""

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
    """Official ``sophia.py`` SophiaG (Liu et al., arXiv:2305.14342) with ``bs = 1`` (the
    estimate d already carries the factor B) and the paper's schedule: the estimate of step
    t = 1, k + 1, ... enters h before that step's update."""

    def clip_step(self, m, hess):
        hp = self.hp
        ratio = np.minimum(np.abs(m) / (hp["rho"] * hess + hp["eps"]), 1.0)
        return hp["lr"] * np.sign(m) * ratio

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
        p -= self.clip_step(st["exp_avg"], st["hessian"])


class SophiaHRef(SophiaGRef):
    """Sophia-H as the paper's Algorithm 1 states it: clip(m / max(rho h, eps), 1)."""

    def clip_step(self, m, hess):
        hp = self.hp
        return hp["lr"] * np.clip(m / np.maximum(hp["rho"] * hess, hp["eps"]), -1.0, 1.0)


class ProxSGDRef(Reference):
    """Composite stochastic mirror descent (Liu & Zhou, arXiv:2312.08531), Euclidean proxes,
    with running uniform and suffix averages of the iterates."""

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
