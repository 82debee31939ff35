"""StableEmbedding (Dettmers et al., 2022): an embedding that 8-bit optimizers train stably."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stochopt._checks import check_int, show
from stochopt.optim._storage import override_state_precision

__all__ = ["StableEmbedding"]


class StableEmbedding(nn.Embedding):
    r"""An embedding with Xavier-uniform initialization, a layer norm computed in float32
    after the lookup, and 32-bit optimizer state for its weight.

    The 8-bit optimizers paper finds that the highly non-uniform frequency of input tokens
    makes embedding gradients the hardest state to quantize; these three changes make 8-bit
    language-model training as stable as 32-bit.

    .. math:: y = \operatorname{LayerNorm}(W[x])

    Args:
        num_embeddings: vocabulary size (>= 1).
        embedding_dim: width (>= 1).
        padding_idx: as in ``nn.Embedding``: an index in ``[-num_embeddings, num_embeddings)``
            or None.
        device: where to create the parameters.
        dtype: a floating-point dtype of the weight (the layer norm always runs in float32).

    Raises:
        TypeError, ValueError: an argument of the wrong kind or out of range, named.

    Example:
        >>> emb = StableEmbedding(100, 16)
        >>> emb(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 16])

    References:
        Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise
        Quantization", ICLR 2022, arXiv:2110.02861, §2.3.

    Note:
        The 32-bit state is requested with :func:`stochopt.optim.override_state_precision`
        on the weight (``"fp32"``), so any stochopt optimizer honours it whatever the param
        group's ``state_precision``. The layer norm's own parameters follow the group (they
        are below the 8-bit size threshold anyway).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        owner = "StableEmbedding"
        num_embeddings = check_int(owner, "num_embeddings", num_embeddings, low=1)
        embedding_dim = check_int(owner, "embedding_dim", embedding_dim, low=1)
        if padding_idx is not None:
            padding_idx = check_int(owner, "padding_idx", padding_idx, low=-num_embeddings,
                                    high=num_embeddings - 1)
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"{owner}: dtype must be a floating-point torch.dtype or None, got "
                            f"{show(dtype)}")
        if device is not None:
            try:
                device = torch.device(device)
            except (RuntimeError, TypeError, ValueError):
                raise ValueError(f"{owner}: device must be a torch.device or a device name such "
                                 f"as 'cpu' or 'cuda:0', got {show(device)}") from None
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx, device=device,
                         dtype=dtype)
        self.norm = nn.LayerNorm(embedding_dim, device=device, dtype=torch.float32)
        override_state_precision(self.weight, "fp32")

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        self._fill_padding_idx_with_zero()

    def forward(self, input: Tensor) -> Tensor:
        embedded = F.embedding(input, self.weight, self.padding_idx, self.max_norm,
                               self.norm_type, self.scale_grad_by_freq, self.sparse)
        return self.norm(embedded.float()).to(self.weight.dtype)
