"""Non-IID client datasets: the Dirichlet label split (Hsu, Qi & Brown 2019), as used by
Fraboni et al. for CIFAR10 (alpha = 0.1)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, check_seed, show

__all__ = ["dirichlet_split", "importance"]


def dirichlet_split(labels: Tensor, clients: int, alpha: float, *, seed: int = 0,
                    min_size: int = 1, tries: int = 100) -> list[Tensor]:
    """Each class's examples shared among ``clients`` in proportions drawn from
    :math:`\\mathrm{Dir}(\\alpha\\,\\mathbf{1}_M)`: small ``alpha`` gives each client few
    classes, large ``alpha`` an IID split.

    Args:
        labels: integer class labels, shape ``(N,)``.
        clients: :math:`M` >= 1.
        alpha: the concentration > 0.
        seed: the split's seed (a NumPy generator; the split is the same on every machine).
        min_size: the fewest examples a client may get; the draw is repeated (up to ``tries``
            times) until every client has at least this many.
        tries: the most draws before giving up.

    Returns:
        One sorted index tensor per client; together they partition ``range(N)``.

    Raises:
        ValueError: ``min_size * clients > N``, or no draw in ``tries`` gave every client
            ``min_size`` examples (the message says to raise ``alpha`` or lower
            ``min_size``).

    Example:
        >>> parts = dirichlet_split(torch.arange(100) % 10, 4, alpha=0.5, seed=1)
        >>> sum(len(p) for p in parts)
        100
    """
    owner = "dirichlet_split"
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise TypeError(f"{owner}: labels must be a 1-d integer tensor, got {show(labels)}")
    clients = check_int(owner, "clients", clients)
    alpha = check_real(owner, "alpha", alpha)
    seed = check_seed(owner, "seed", seed)
    min_size = check_int(owner, "min_size", min_size, low=0)
    tries = check_int(owner, "tries", tries)
    if min_size * clients > len(labels):
        raise ValueError(f"{owner}: min_size={min_size} for {clients} clients needs "
                         f"{min_size * clients} examples, but labels has {len(labels)}")
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    for _ in range(tries):
        parts: list[list[int]] = [[] for _ in range(clients)]
        for k in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == k))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for part, chunk in zip(parts, np.split(members, cuts)):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [torch.tensor(sorted(p), dtype=torch.int64) for p in parts]
    raise ValueError(f"{owner}: no split in {tries} draws gave every one of {clients} clients "
                     f"at least {min_size} examples with alpha={alpha:g}; raise alpha or "
                     f"lower min_size")


def importance(sizes: list[int] | Tensor, kind: str = "ratio") -> Tensor:
    """The clients' importance :math:`p_i`: ``"ratio"`` (:math:`n_i/\\sum_j n_j`, the
    federated objective over all examples) or ``"uniform"`` (:math:`1/M`)."""
    n = torch.as_tensor(sizes, dtype=torch.float64)
    if n.ndim != 1 or len(n) == 0 or bool((n < 0).any()) or float(n.sum()) <= 0:
        raise ValueError(f"importance: sizes must be one count >= 0 per client with a "
                         f"positive total, got {show(sizes)}")
    if kind == "ratio":
        return n / n.sum()
    if kind == "uniform":
        return torch.full_like(n, 1 / len(n))
    raise ValueError(f"importance: kind must be 'ratio' or 'uniform', got {show(kind)}")
