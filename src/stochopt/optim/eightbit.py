"""8-bit names users expect: thin aliases that default ``state_precision`` to ``"8bit"``.

Every stochopt optimizer takes ``state_precision="8bit"``; these names only change that
default (Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise
Quantization", ICLR 2022, arXiv:2110.02861).

Non-finite values follow the optimizer each aliases, except that a NaN or infinite state value
is stored as 0 (it does not enter its block's scale, so the rest of the block is unharmed); the
parameter entry it came from is non-finite all the same.
"""

from __future__ import annotations

from functools import partialmethod

from stochopt.optim.adabelief import AdaBelief
from stochopt.optim.adagrad import AdaGrad
from stochopt.optim.adamw import AdamW
from stochopt.optim.diffgrad import DiffGrad
from stochopt.optim.sophia import SophiaG

__all__ = ["AdaBelief8bit", "AdaGrad8bit", "AdamW8bit", "DiffGrad8bit", "SophiaG8bit"]


class AdamW8bit(AdamW):
    """:class:`AdamW` with 8-bit block-wise state."""

    __init__ = partialmethod(AdamW.__init__, state_precision="8bit")


class AdaBelief8bit(AdaBelief):
    """:class:`AdaBelief` with 8-bit block-wise state."""

    __init__ = partialmethod(AdaBelief.__init__, state_precision="8bit")


class DiffGrad8bit(DiffGrad):
    """:class:`DiffGrad` with 8-bit block-wise state."""

    __init__ = partialmethod(DiffGrad.__init__, state_precision="8bit")


class AdaGrad8bit(AdaGrad):
    """:class:`AdaGrad` with 8-bit block-wise state."""

    __init__ = partialmethod(AdaGrad.__init__, state_precision="8bit")


class SophiaG8bit(SophiaG):
    """:class:`SophiaG` with 8-bit block-wise state."""

    __init__ = partialmethod(SophiaG.__init__, state_precision="8bit")
