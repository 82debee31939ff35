"""Ask/tell, exact resumption, constraints, batches, recommendations and input errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stochopt.bayesopt import GP, Study, minimize
from stochopt.tasks import Branin

FAST = {"raw_samples": 64, "restarts": 3}
BRANIN = Branin()


def _branin(x: torch.Tensor) -> float:
    return float(BRANIN(x))


def test_killed_and_resumed_run_has_the_same_trajectory(tmp_path: Path) -> None:
    whole = minimize(_branin, BRANIN.bounds, 9, seed=3, n_initial=5, **FAST)
    path = tmp_path / "study.json"
    first = minimize(_branin, BRANIN.bounds, 7, seed=3, n_initial=5, checkpoint=path, **FAST)
    assert len(first.y) == 7
    resumed = minimize(_branin, BRANIN.bounds, 9, checkpoint=path)  # settings come from file
    assert torch.equal(resumed.X, whole.X) and torch.equal(resumed.y, whole.y)
    assert len(resumed.fit_seconds) == 4
    with pytest.raises(ValueError, match=r"differs in \['seed'\]"):
        minimize(_branin, BRANIN.bounds, 10, checkpoint=path, seed=4)


def test_ask_tell_reproduces_minimize() -> None:
    study = Study(BRANIN.bounds, seed=1, n_initial=4, **FAST)
    while study.n < 6:
        X = study.ask()
        study.tell(X, BRANIN(X))
    ran = minimize(_branin, BRANIN.bounds, 6, seed=1, n_initial=4, **FAST)
    assert torch.equal(study.result(recommend=False).X, ran.X)


def test_constrained_minimum_is_found_and_feasible() -> None:
    def f(x: torch.Tensor) -> tuple[float, list[float]]:
        return float(x.square().sum()), [float(0.5 - x[0])]  # feasible where x >= 0.5

    result = minimize(f, [[-1.0, 1.0]], 12, n_constraints=1, n_initial=4, seed=0, **FAST)
    assert result.constraints.shape == (12, 1)
    assert result.x_best.item() >= 0.5 and result.y_best < 0.25 + 0.05
    assert result.x_recommended.item() >= 0.5


def test_batches_have_q_points_and_the_design_comes_first() -> None:
    study = Study([[0.0, 1.0], [0.0, 2.0]], q=3, n_initial=4, seed=0, **FAST)
    sizes = []
    while study.n < 10:
        X = study.ask()
        sizes.append(len(X))
        study.tell(X, (X - 0.5).square().sum(-1))
    assert sizes == [3, 1, 3, 3]
    assert study.settings["acquisition"] == "qei"


def test_recommendation_is_the_smallest_posterior_mean_among_evaluated_points() -> None:
    g = torch.Generator().manual_seed(0)
    study = Study([[0.0, 1.0]], n_initial=12, seed=0)
    for _ in range(12):
        x = study.ask()
        study.tell(x, (x[:, 0] - 0.4).square() + 0.05 * torch.randn(1, dtype=torch.float64,
                                                                       generator=g))
    X, y = study.X, study.y
    model = GP().fit(X, y, study.bounds, study._generator(0))
    assert torch.equal(study.recommend(), X[int(model.posterior(X).mean.argmin())])


def test_callback_can_stop_the_run() -> None:
    seen: list[int] = []
    result = minimize(_branin, BRANIN.bounds, 20, n_initial=3,
                      callback=lambda r: seen.append(len(r.y)) or len(r.y) >= 4, **FAST)
    assert seen == [1, 2, 3, 4] and len(result.y) == 4


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"bounds": [[1.0, 0.0]]}, "lower < upper"),
    ({"bounds": [1.0, 2.0]}, "shape (d, 2)"),
    ({"surrogate": "forest"}, "surrogate must be one of"),
    ({"acquisition": "ucb"}, "acquisition must be one of"),
    ({"q": 2, "acquisition": "logei"}, "q=2 needs a batch acquisition"),
    ({"noise": -1.0}, "noise must be None"),
    ({"n_initial": 0}, "n_initial must be an integer in .1, 2..31 - 1., got 0"),
])
def test_bad_settings_name_the_argument_and_value(kwargs: dict, message: str) -> None:
    bounds = kwargs.pop("bounds", [[0.0, 1.0]])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Study(bounds, **kwargs)


def test_tell_rejects_mismatched_shapes_and_non_finite_points() -> None:
    study = Study([[0.0, 1.0]])
    with pytest.raises(ValueError, match=r"y must have shape \(b,\) = \(2,\)"):
        study.tell(torch.zeros(2, 1), torch.zeros(3))
    with pytest.raises(ValueError, match="X must be finite"):
        study.tell(torch.full((1, 1), float("nan")), [1.0])


def test_checkpoint_of_an_unknown_format_is_refused(tmp_path: Path) -> None:
    study = Study([[0.0, 1.0]])
    state = study.state_dict() | {"format": 99}
    with pytest.raises(ValueError, match="unknown checkpoint format 99"):
        Study.from_state_dict(state)
