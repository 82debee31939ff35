"""The dynamic maps equal bitsandbytes' create_dynamic_map bit for bit."""

from __future__ import annotations

import logging

import pytest
import torch

from stochopt.quant import dynamic_map


@pytest.fixture(scope="module")
def bnb_functional():
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    return pytest.importorskip("bitsandbytes.functional")


@pytest.mark.parametrize("signed", [True, False])
def test_maps_equal_bitsandbytes(bnb_functional, signed: bool) -> None:
    ours = dynamic_map(signed)
    assert torch.equal(ours, bnb_functional.create_dynamic_map(signed=signed))


def test_map_shape_and_range() -> None:
    signed, unsigned = dynamic_map(True), dynamic_map(False)
    assert signed.shape == unsigned.shape == (256,)
    assert bool((signed[1:] >= signed[:-1]).all()) and bool((unsigned[1:] >= unsigned[:-1]).all())
    assert signed.max() == 1.0 and signed.min() > -1.0 and (signed == 0).sum() == 1
    assert unsigned.min() == 0.0 and unsigned.max() == 1.0
    smallest = signed[signed > 0].min().item()
    assert smallest == pytest.approx(5.5e-7, rel=1e-6)  # seven decades below the block max
