"""StableEmbedding (Dettmers et al., 2022): an embedding that 8-bit optimizers train stably."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stochopt._checks import check_int, show
from stochopt.optim._storage import override_state_precision

_WEIGHT_STATE = "fp32"  # the optimizer-state precision the paper gives the embedding

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
        dtype: a floating-point dtype of the weight (the layer norm's parameters are created
            in float32, and the norm is computed in at least float32 whatever their dtype).

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
        group's ``state_precision``. The module re-applies the request whenever a new
        Parameter object takes the weight's place (``copy.deepcopy``, pickling,
        ``load_state_dict(..., assign=True)``, ``to_empty`` after meta-device
        initialization, ``.to(...)``, ``emb.weight = ...``), so an optimizer built after
        any of them keeps it. bitsandbytes' StableEmbedding registers the module in a
        process-wide manager instead, which a deep copy escapes. The layer norm's own
        parameters follow the group (they are below the 8-bit size threshold anyway).
        ``reset_parameters`` also resets the layer norm, so meta-device initialization
        (``to_empty`` then ``reset_parameters()``) leaves no parameter uninitialized.
        After ``model.to(torch.bfloat16)`` the norm's parameters are bf16 too; the norm
        still runs in float32 (bitsandbytes' forward fails there) and the output has the
        weight's dtype.
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

    # The weight's 32-bit request lives on the Parameter object (where optimizers look); torch
    # puts a new object in its place through one of these three.
    def register_parameter(self, name: str, param: nn.Parameter | None) -> None:
        """Register as ``nn.Module`` does (construction, ``emb.weight = ...``,
        ``load_state_dict(..., assign=True)``), tagging a new weight for 32-bit state."""
        super().register_parameter(name, param)
        if name == "weight" and param is not None:
            override_state_precision(param, _WEIGHT_STATE)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> StableEmbedding:
        """``.to``, ``.half``, ``to_empty``, ...: may replace the weight without registering."""
        result = super()._apply(fn, recurse)
        self._tag_weight()
        return result

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling and ``copy.deepcopy`` (which copies a Parameter without its attributes)."""
        super().__setstate__(state)
        self._tag_weight()

    def _tag_weight(self) -> None:
        weight = self._parameters.get("weight")
        if weight is not None:
            override_state_precision(weight, _WEIGHT_STATE)

    def reset_parameters(self) -> None:
        """Xavier-uniform weight (zero padding row) and a fresh layer norm."""
        nn.init.xavier_uniform_(self.weight)
        self._fill_padding_idx_with_zero()
        norm = self._modules.get("norm")  # absent while nn.Embedding.__init__ runs
        if norm is not None:
            norm.reset_parameters()

    def forward(self, input: Tensor) -> Tensor:
        embedded = F.embedding(input, self.weight, self.padding_idx, self.max_norm,
                               self.norm_type, self.scale_grad_by_freq, self.sparse)
        compute = torch.promote_types(self.weight.dtype, torch.float32)  # at least float32
        weight, bias = self.norm.weight, self.norm.bias
        normalized = F.layer_norm(embedded.to(compute), self.norm.normalized_shape,
                                  None if weight is None else weight.to(compute),
                                  None if bias is None else bias.to(compute), self.norm.eps)
        return normalized.to(self.weight.dtype)
