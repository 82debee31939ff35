"""Deep kernel learning: a Matérn-5/2 ARD GP on the features of a tanh MLP, trained jointly
on the GP's log marginal likelihood (with the GP's priors)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from stochopt.bayesopt._linalg import robust_cholesky
from stochopt.bayesopt._validate import NotReadyError, check_data, check_generator, restore_on_error
from stochopt.bayesopt.gp import GP, Hyperparameters
from stochopt.bayesopt.kernels import scaled_sq_distance
from stochopt.bayesopt.neural.base import check_network
from stochopt.bayesopt.neural.mlp import init_mlp, mlp_features, mlp_features_vjp, mlp_vjp

__all__ = ["DKL"]


class DKL(GP):
    """A :class:`~stochopt.bayesopt.gp.GP` whose kernel sees :math:`g_\\phi(x)`, a tanh MLP.

    As in the study's code: 3 x 128 tanh features, pre-trained with a linear head on the
    standardized outputs (1000 Adam steps at 1e-3, mean squared error), then network and GP
    hyperparameters trained together by Adam at 1e-3 on the negative log marginal likelihood
    plus priors. The study ran 5000 joint steps (1000 on Ackley); the default here is 1000.
    The study's code trained the joint loss on un-standardized outputs; here both stages use
    the standardized ones. The network runs in ``dtype`` (float32 default), the GP in float64.

    References:
        Wilson, Hu, Salakhutdinov & Xing, "Deep Kernel Learning", AISTATS 2016; Li, Rudner &
        Wilson, ICLR 2024.
    """

    def __init__(self, noise: float | None = None, widths: Sequence[int] = (128, 128, 128),
                 pretrain_steps: int = 1000, train_steps: int = 1000, lr: float = 1e-3,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__("matern52", noise, restarts=1)
        widths = check_network("DKL", widths, dtype, lr, {"pretrain_steps": pretrain_steps,
                                                           "train_steps": train_steps})
        self.widths, self.pretrain_steps = widths, pretrain_steps
        self.train_steps, self.lr, self.dtype = train_steps, lr, dtype

    @property
    def kernel_dim(self) -> int:
        return self.widths[-1]

    def _lengthscale_count(self, d: int) -> int:
        return self.widths[-1]

    def _features(self, U: Tensor) -> Tensor:
        return mlp_features(self.net, U)[0].to(torch.float64)

    def fit(self, X: Tensor, y: Tensor, bounds: Tensor,
            generator: torch.Generator | None = None) -> DKL:
        """Pre-train the network, train it jointly with the GP's hyperparameters, then
        condition on ``(X, y)`` (shapes as :meth:`GP.fit`; bad input changes nothing)."""
        X, y, bounds = check_data("DKL.fit", X, y, bounds)
        generator = check_generator("DKL.fit", generator) or torch.Generator().manual_seed(0)
        with restore_on_error(self):
            self._set_data(X, y, bounds)
            params = init_mlp(1, X.shape[1], self.widths, generator, dtype=self.dtype)
            self._train(params, self.pretrain_steps, self._pretrain_gradients)
            self.net = params[:-2]
            raw = self._initial_raw(0, generator).detach()
            self._train([*self.net, raw], self.train_steps,
                        lambda _: self._joint_gradients(raw))
            return self._condition(self._unpack(raw))

    def condition(self, X: Tensor, y: Tensor, bounds: Tensor, hp: Hyperparameters) -> DKL:
        """Condition on ``(X, y)`` with the trained network and fixed hyperparameters."""
        if not hasattr(self, "net"):
            raise NotReadyError("DKL.condition: fit first (the network is learned by fit)")
        return super().condition(X, y, bounds, hp)

    def _train(self, params: list[Tensor], steps: int,
               gradients: Callable[[list[Tensor]], list[Tensor]]) -> None:
        """``steps`` of Adam on ``params`` (updated in place) with ``gradients(params)``."""
        optimizer = torch.optim.Adam(params, lr=self.lr, fused=True)
        for _ in range(steps):
            for p, grad in zip(params, gradients(params), strict=True):
                p.grad = grad
            optimizer.step()

    def _pretrain_gradients(self, params: list[Tensor]) -> list[Tensor]:
        """The gradient of the mean squared error of the network with a linear head."""
        out, vjp = mlp_vjp(params, self.X)
        residual = self.z - out[0].to(torch.float64)
        return vjp((-2 / len(residual) * residual).to(self.dtype)[None])

    def _joint_gradients(self, raw: Tensor) -> list[Tensor]:
        r"""The gradient of :meth:`_negative_log_posterior` with respect to the network's
        hidden layers and ``raw``, written out (2x faster than autograd here). With
        :math:`\alpha = K^{-1}(z - \mu)`, :math:`G = \tfrac12(K^{-1} - \alpha\alpha^\top)`
        (the gradient with respect to K) and the Matérn-5/2 kernel
        :math:`\sigma^2(1 + t + t^2/3)e^{-t}` of :math:`A = g_\phi(X)/\ell`,
        :math:`t = \sqrt5 r`: :math:`\partial K/\partial r^2 = -\tfrac56\sigma^2(1 + t)e^{-t}`,
        so with :math:`M = G \odot \partial K/\partial r^2`,
        :math:`\partial A = 4(\mathrm{diag}(M1)A - MA)`, :math:`\partial\log\ell =
        -1^\top(\partial A \odot A)`, :math:`\partial\log\sigma^2 = 1^\top(G \odot K)1`,
        :math:`\partial\mu = -1^\top\alpha`; plus the priors' terms (see :class:`GP`)."""
        d, rho = self.kernel_dim, raw.detach()
        features, features_vjp = mlp_features_vjp(self.net, self.X)
        F = features[0].to(torch.float64)
        hp = self._unpack(rho)
        A = F / hp.lengthscales
        t = math.sqrt(5) * scaled_sq_distance(F, F, hp.lengthscales).clamp(min=1e-36).sqrt()
        decay = torch.exp(-t)
        K = hp.outputscale * (1 + t + t.square() / 3) * decay
        L = robust_cholesky(K + hp.noise * torch.eye(len(F), dtype=torch.float64))
        alpha = torch.cholesky_solve((self.z - hp.mean)[:, None], L)
        G = 0.5 * (torch.cholesky_inverse(L) - alpha @ alpha.T)
        M = G * (-5 / 6 * hp.outputscale) * (1 + t) * decay
        dA = 4 * (M.sum(1, keepdim=True) * A - M @ A)
        loc = math.sqrt(2) + 0.5 * math.log(d)
        grad = torch.zeros_like(rho)
        grad[:d] = -(dA * A).sum(0) + (rho[:d] - loc) / 3 + 1
        grad[d] = (G * K).sum() + rho[d] + 1
        if self.known_noise is None:
            grad[d + 1] = G.trace() * rho[d + 1].exp() + rho[d + 1] + 5
        grad[d + 2] = -alpha.sum() + rho[d + 2]
        dF = (dA / hp.lengthscales).to(features.dtype)
        return [*features_vjp(dF[None]), grad]
