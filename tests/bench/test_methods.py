"""The harness builds stochopt's optimizers through the library's factory."""

from __future__ import annotations

import torch

from stochopt import optim
from stochopt_bench.methods import OPTIMIZERS, Method


def test_the_harness_names_are_the_factorys_plus_torch_anchors() -> None:
    ours = [name for name in OPTIMIZERS if not name.startswith("torch.")]
    assert ours == list(optim.available())
    assert {"torch.AdamW", "torch.SGD"} <= set(OPTIMIZERS)


def test_a_method_builds_through_the_factory(monkeypatch) -> None:
    calls = []
    real = optim.create
    monkeypatch.setattr(optim, "create", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    params = [torch.nn.Parameter(torch.zeros(3))]
    opt = Method("m", "AdamW8bit", 0.01, {"weight_decay": 0.1}).build(params, "beale")
    assert calls == ["AdamW8bit"] and type(opt) is optim.AdamW8bit
    assert opt.param_groups[0]["weight_decay"] == 0.1
    anchor = Method("t", "torch.AdamW", 0.01).build([torch.nn.Parameter(torch.zeros(3))], "x")
    assert type(anchor) is torch.optim.AdamW and calls == ["AdamW8bit"]
