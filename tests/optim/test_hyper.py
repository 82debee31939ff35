"""Hyperparameter specs: messages name the argument, show the value and the valid range."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochopt.optim._hyper import Choice, Flag, Integer, Pair, Real


@pytest.mark.parametrize(("spec", "value", "message"), [
    (Real("lr"), -0.1, r"^Opt: lr must be in \[0, inf\), got -0\.1$"),
    (Real("rho", low=0.0, low_closed=False), 0.0, r"rho must be in \(0, inf\), got 0\.0"),
    (Real("p", high=1.0, high_closed=True), 1.5, r"p must be in \[0, 1\], got 1\.5"),
    (Real("lr"), math.nan, r"lr must be in \[0, inf\), got nan"),
    (Real("lr"), torch.tensor(-1.0), r"lr must be in \[0, inf\), got tensor\(-1\.\)"),
    (Pair("betas", ("b1", "b2")), (0.9, 1.0), r"betas\[1\] must be in \[0, 1\), got 1\.0"),
    (Choice("mode", ("a", "b")), "c", r"mode must be one of 'a', 'b', got 'c'"),
    (Real("lr"), 10**400, r"lr must be in \[0, inf\), got 1000"),
    (Real("lr"), -(10**400), r"lr must be in \[0, inf\), got -1000"),
    (Integer("period"), 0, r"period must be in \[1, inf\), got 0"),
])
def test_out_of_range_values_raise_value_error(spec, value, message) -> None:
    with pytest.raises(ValueError, match=message):
        spec.check("Opt", value)


@pytest.mark.parametrize(("spec", "value", "message"), [
    (Real("lr"), "0.1", r"lr must be a real number or a 0-d tensor, got '0\.1'"),
    (Real("lr"), True, r"lr must be a real number, got the bool True"),
    (Real("lr"), torch.ones(2), r"lr given as a tensor must be a floating-point tensor with one"),
    (Real("lr"), torch.tensor(1), r"floating-point tensor"),
    (Pair("betas", ("b1", "b2")), (0.9,), r"betas must be a pair of reals, got \(0\.9,\)"),
    (Flag("amsgrad"), "no", r"amsgrad must be True or False, got 'no'"),
    (Choice("mode", ("a", "b")), None, r"mode must be one of 'a', 'b', got None"),
    (Real("lr"), np.float32(0.5), r"lr must be a real number .*numpy\.float32; pass float"),
    (Integer("period"), 2.0, r"period must be an integer, got 2\.0"),
])
def test_wrong_types_raise_type_error(spec, value, message) -> None:
    with pytest.raises(TypeError, match=message):
        spec.check("Opt", value)


def test_valid_values_pass() -> None:
    Real("lr").check("Opt", 0.0)
    Real("lr").check("Opt", torch.tensor(1e-3))
    Pair("betas", ("b1", "b2")).check("Opt", [0.0, 0.999])
    Flag("amsgrad").check("Opt", False)
    Choice("mode", ("a", "b")).check("Opt", "b")
    assert Pair("betas", ("b1", "b2")).fields() == ("b1", "b2")
    assert Flag("amsgrad").static and not Real("lr").static
