"""Package-level contracts: public names, typing marker, a quiet library."""

from __future__ import annotations

from pathlib import Path

import torch

import stochopt
from stochopt import optim


def test_public_names_are_exported_and_documented() -> None:
    for module in (stochopt, optim, stochopt.errors):
        for name in module.__all__:
            obj = getattr(module, name)
            assert obj.__doc__ or isinstance(obj, str), f"{module.__name__}.{name}: no docstring"


def test_package_is_typed() -> None:
    assert (Path(stochopt.__file__).parent / "py.typed").is_file()


def test_library_does_not_print(capsys) -> None:
    w = torch.ones(3, requires_grad=True)
    for cls in (optim.AdamW, optim.AdaBelief, optim.DiffGrad, optim.AdaGrad, optim.AdaGradNorm):
        opt = cls([w])
        w.grad = torch.ones(3)
        opt.step()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
