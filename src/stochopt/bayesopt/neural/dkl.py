"""Deep kernel learning: a Matérn-5/2 ARD GP on the features of a tanh MLP, trained jointly
on the GP's log marginal likelihood (with the GP's priors)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stochopt.bayesopt.gp import GP
from stochopt.bayesopt.neural.mlp import init_mlp, mlp_features, mlp_forward

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
        self.widths, self.pretrain_steps = tuple(widths), pretrain_steps
        self.train_steps, self.lr, self.dtype = train_steps, lr, dtype

    @property
    def kernel_dim(self) -> int:
        return self.widths[-1]

    def _features(self, U: Tensor) -> Tensor:
        return mlp_features(self.net, U)[0].to(torch.float64)

    def fit(self, X: Tensor, y: Tensor, bounds: Tensor,
            generator: torch.Generator | None = None) -> DKL:
        generator = generator or torch.Generator().manual_seed(0)
        self._set_data(X, y, bounds)
        params = [p.requires_grad_()
                  for p in init_mlp(1, X.shape[1], self.widths, generator, dtype=self.dtype)]
        optimizer = torch.optim.Adam(params, lr=self.lr, fused=True)
        for _ in range(self.pretrain_steps):
            optimizer.zero_grad()
            (self.z - mlp_forward(params, self.X)[0].to(torch.float64)).square().mean().backward()
            optimizer.step()
        self.net = params[:-2]
        raw = self._initial_raw(0, generator)
        optimizer = torch.optim.Adam([*self.net, raw], lr=self.lr, fused=True)
        for _ in range(self.train_steps):
            optimizer.zero_grad()
            self._negative_log_posterior(raw).backward()
            optimizer.step()
        self.net = [p.detach() for p in self.net]
        return self._condition(self._unpack(raw))
