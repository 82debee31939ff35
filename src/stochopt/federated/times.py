"""Clients' compute times in virtual time units: fixed (Fraboni et al.'s F-X scenario) or
random (exponential or log-normal around each client's mean)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, check_tensor, show
from stochopt.federated.weights import windows

__all__ = ["DISTRIBUTIONS", "ClientTimes"]

#: how a job's duration is drawn around the client's mean time
DISTRIBUTIONS = ("fixed", "exponential", "lognormal")


class ClientTimes:
    """Each client's time for one local job (K local steps), in virtual time units.

    A job of client :math:`i` takes :math:`\\tau_i` (``"fixed"``), an exponential draw of
    mean :math:`\\tau_i`, or a log-normal draw of mean :math:`\\tau_i` and log-scale
    ``sigma`` (``"lognormal"``). Draws come from the generator the caller passes, one per job.

    Args:
        mean: :math:`\\tau_i`, shape ``(M,)``, every entry > 0.
        distribution: one of :data:`DISTRIBUTIONS`.
        sigma: the log-normal's log-scale standard deviation (> 0; only for ``"lognormal"``).

    Example:
        >>> times = ClientTimes.scenario(5, slower=80)
        >>> [round(t, 2) for t in times.mean.tolist()]
        [1.0, 0.8, 0.6, 0.4, 0.2]
    """

    def __init__(self, mean: Sequence[float] | Tensor, *, distribution: str = "fixed",
                 sigma: float = 0.5) -> None:
        mean = check_tensor("ClientTimes", "mean", torch.as_tensor(mean, dtype=torch.float64),
                            ndim=1)
        if len(mean) == 0 or bool((mean <= 0).any()):
            raise ValueError(f"ClientTimes: mean must hold one positive time per client, got "
                             f"{[round(v, 6) for v in mean.tolist()[:8]]}")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"ClientTimes: distribution must be one of {DISTRIBUTIONS}, got "
                             f"{show(distribution)}")
        self.sigma = check_real("ClientTimes", "sigma", sigma)
        self.mean, self.distribution = mean, distribution

    @classmethod
    def scenario(cls, clients: int, slower: float, *, distribution: str = "fixed",
                 sigma: float = 0.5) -> ClientTimes:
        """Fraboni et al.'s scenario F-X: :math:`\\tau_i = 1 - i\\,(X/100)/(M-1)`, the
        fastest client X percent faster than the slowest (``slower`` = X in [0, 100))."""
        clients = check_int("ClientTimes.scenario", "clients", clients)
        slower = check_real("ClientTimes.scenario", "slower", slower, low=0.0, low_open=False,
                            high=100.0)
        step = slower / 100 / (clients - 1) if clients > 1 else 0.0
        return cls([1 - i * step for i in range(clients)], distribution=distribution,
                   sigma=sigma)

    def __len__(self) -> int:
        return len(self.mean)

    def __repr__(self) -> str:
        return f"ClientTimes(M={len(self)}, distribution={self.distribution!r})"

    def draw(self, client: int, rng: np.random.Generator) -> float:
        """One job's duration for ``client``."""
        tau = float(self.mean[client])
        if self.distribution == "fixed":
            return tau
        if self.distribution == "exponential":
            return float(rng.exponential(tau))
        mu = math.log(tau) - self.sigma**2 / 2  # E[exp(N(mu, s^2))] = tau
        return float(rng.lognormal(mu, self.sigma))

    def expected_windows(self, dt: float) -> Tensor:
        """:math:`\\mathbb{E}[\\lceil T_i/\\Delta t\\rceil] = \\sum_{k \\ge 0}
        P(T_i > k\\,\\Delta t)`: how many FedFix windows a job of client :math:`i` spans on
        average (exact for fixed and exponential times; for log-normal the series is summed
        until its terms fall below 1e-12)."""
        dt = check_real("ClientTimes.expected_windows", "dt", dt)
        if self.distribution == "fixed":
            return torch.tensor([float(windows(t, dt)) for t in self.mean.tolist()],
                                dtype=torch.float64)
        if self.distribution == "exponential":  # sum_k exp(-k dt/tau), a geometric series
            return 1 / -torch.expm1(-dt / self.mean)
        return torch.tensor([self._lognormal_windows(t, dt) for t in self.mean.tolist()],
                            dtype=torch.float64)

    def _lognormal_windows(self, tau: float, dt: float) -> float:
        """:math:`\\sum_{k\\ge0} P(T > k\\,\\Delta t)` for a log-normal :math:`T` of mean
        ``tau``."""
        mu = math.log(tau) - self.sigma**2 / 2
        total, k = 1.0, 1
        while True:
            z = (math.log(k * dt) - mu) / self.sigma
            term = 0.5 * math.erfc(z / math.sqrt(2))
            total += term
            if term < 1e-12:
                return total
            k += 1
