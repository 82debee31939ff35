"""The factory: every exported optimizer by name (any case), and clear errors for others."""

from __future__ import annotations

import pytest
import torch

import stochopt.optim as optim
from stochopt.optim import AdaGrad, AdamW8bit, available, create
from tests.contract import raises_clearly


def test_available_lists_every_exported_optimizer_8bit_variants_included() -> None:
    exported = {name for name in optim.__all__ if isinstance(getattr(optim, name), type)
                and issubclass(getattr(optim, name), torch.optim.Optimizer)}
    assert set(available()) == exported - {"ElementwiseOptimizer", "CurvatureOptimizer"}
    assert {"AdamW", "AdamW8bit", "SophiaG", "SophiaG8bit", "AdaGradNorm"} <= set(available())
    assert list(available()) == sorted(available())
    assert len({name.casefold() for name in available()}) == len(available())  # unambiguous


@pytest.mark.parametrize(("name", "cls"), [("AdamW8bit", AdamW8bit), ("adamw8bit", AdamW8bit),
                                           ("Adagrad", AdaGrad), ("ADAGRAD", AdaGrad)])
def test_create_builds_the_named_optimizer_with_its_arguments(name, cls) -> None:
    w = torch.nn.Parameter(torch.zeros(3))
    opt = create(name, [w], lr=0.25, weight_decay=0.0)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.25 and opt.param_groups[0]["params"] == [w]


def test_every_available_name_creates_its_optimizer() -> None:
    for name in available():
        opt = create(name, [torch.nn.Parameter(torch.zeros(3))])
        assert type(opt).__name__ == name


def test_create_refuses_unknown_names_and_arguments() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    with raises_clearly(match=r"no optimizer is called 'Adam'.*available: AdaBelief, .*AdamW8bit"):
        create("Adam", params)
    with raises_clearly(match=r"name must be a string"):
        create(None, params)
    with pytest.raises(TypeError, match="weight_decy"):  # the constructor's own check
        create("AdamW", params, weight_decy=0.1)
