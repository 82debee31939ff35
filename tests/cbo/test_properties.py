"""Property-based: random arguments to the consensus methods, schedules and ``minimize``
either work or raise a documented exception naming an argument; random energies, NaN and
infinities included, give weights that follow the documented policy."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from stochopt.cbo import (
    CBO,
    ConsensusHopping,
    EffectiveSampleSizeAlpha,
    MultiplicativeAlpha,
    consensus_point,
    consensus_weights,
    minimize,
)
from tests.contract import PROPERTIES, assert_clear_error

F64 = torch.float64
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0, 1, -1, 0.5, 2**63, "1", None, True, [1.0], "isotropic"]),
)
ENERGIES = st.lists(st.one_of(st.floats(-1e6, 1e6), st.sampled_from([math.nan, math.inf,
                                                                      -math.inf])),
                    min_size=1, max_size=6)
CONSTRUCTORS = {
    CBO: ["dt", "lamda", "sigma", "alpha", "noise"],
    ConsensusHopping: ["sigma", "alpha"],
    EffectiveSampleSizeAlpha: ["eta", "minimum", "maximum"],
}


@PROPERTIES
@given(cls=st.sampled_from(list(CONSTRUCTORS)), data=st.data())
def test_constructors_work_or_name_the_argument(cls, data) -> None:
    names = data.draw(st.lists(st.sampled_from(CONSTRUCTORS[cls]), max_size=3, unique=True))
    kwargs = {name: data.draw(VALUES, label=name) for name in names}
    try:
        cls(**kwargs)
    except Exception as error:
        assert_clear_error(error, *kwargs)


@PROPERTIES
@given(alpha=VALUES, factor=VALUES, maximum=VALUES)
def test_multiplicative_alpha_works_or_names_the_argument(alpha, factor, maximum) -> None:
    try:
        schedule = MultiplicativeAlpha(alpha, factor=factor, maximum=maximum)
    except Exception as error:
        assert_clear_error(error, "alpha", "factor", "maximum")
        return
    values = schedule(10, torch.zeros(2, 3, dtype=F64))  # alpha r^10 may underflow to 0
    assert bool(((values >= 0) & values.isfinite()).all())


@PROPERTIES
@given(energy=ENERGIES, alpha=st.one_of(st.floats(0, 1e300), VALUES))
def test_weights_follow_the_non_finite_policy(energy, alpha) -> None:
    e = torch.tensor(energy, dtype=F64)
    try:
        weights = consensus_weights(e, alpha)
    except Exception as error:
        assert_clear_error(error, "alpha")
        return
    counted = ~(e.isnan() | (e == math.inf))
    if not counted.any():  # no particle with a usable energy: no consensus
        assert weights.isnan().all()
        return
    assert bool((weights[~counted] == 0).all())
    assert math.isclose(float(weights.sum()), 1.0, rel_tol=1e-12)
    if (e == -math.inf).any():  # the minima take everything
        assert bool((weights[e != -math.inf] == 0).all())
    x = torch.where(counted.unsqueeze(-1), 1.0, math.nan).to(F64).expand(len(energy), 2)
    assert bool(torch.isfinite(consensus_point(x, e, alpha)).all())  # NaN never spreads


SHAPES = st.lists(st.integers(0, 3), min_size=0, max_size=4).map(tuple)


@PROPERTIES
@given(shape=SHAPES, fill=st.sampled_from([0.5, math.nan]), seed=VALUES,
       iterations=st.sampled_from([0, 2, -1, 1.5]))
def test_minimize_works_or_names_the_argument(shape, fill, seed, iterations) -> None:
    x0 = torch.full(shape, fill, dtype=F64)
    try:
        result = minimize(lambda x: x.square().sum(-1), x0, CBO(), max_iterations=iterations,
                          seed=seed)
    except Exception as error:
        assert_clear_error(error, "x0", "seed", "max_iterations")
        return
    assert result.x.shape == (x0.shape[0] if x0.ndim == 3 else 1, x0.shape[-1])
