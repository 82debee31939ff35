"""Search spaces: the unit-cube encoding pinned by hand, rounding inside the kernel, JSON,
validation, and a Study / minimize over real, log-scale, integer and categorical parameters."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from stochopt.bayesopt import Categorical, Float, Int, Space, Study, minimize
from tests.contract import raises_clearly

F64 = torch.float64
FAST = {"raw_samples": 64, "restarts": 2}
SPACE = Space({"lr": Float(1e-4, 1.0, log=True), "width": Float(-1.0, 3.0),
               "layers": Int(0, 3), "batch": Int(1, 64, log=True),
               "act": Categorical(["relu", "tanh", None])})


def test_encoding_follows_the_documented_formulas() -> None:
    X = torch.tensor([[1e-2, 0.0, 2.0, 8.0, 1.0]], dtype=F64)
    U = SPACE.to_unit(X)
    # log10 1e-2 is halfway between -4 and 0; 0 is a quarter of [-1, 3]; the integer 2 in
    # [-0.5, 3.5] is at 2.5 / 4; log 8 in [log 0.5, log 64.5]; "tanh" is the second choice
    batch = (math.log(8) - math.log(0.5)) / (math.log(64.5) - math.log(0.5))
    expected = torch.tensor([[0.5, 0.25, 0.625, batch, 0.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(U, expected, rtol=0, atol=1e-15)
    assert SPACE.width == 7 and len(SPACE) == 5
    torch.testing.assert_close(SPACE.from_unit(U), X, rtol=1e-14, atol=0)
    assert SPACE.params(X) == [{"lr": pytest.approx(1e-2), "width": 0.0, "layers": 2,
                                "batch": 8, "act": "tanh"}]


def test_every_integer_owns_an_equal_interval_and_choices_go_by_argmax() -> None:
    space = Space({"k": Int(0, 3), "c": Categorical(["a", "b"])})
    u = torch.tensor([0.0, 0.2499, 0.2501, 0.7499, 0.7501, 1.0], dtype=F64)
    U = torch.stack([u, torch.zeros(6, dtype=F64), torch.full((6,), 0.1, dtype=F64)], -1)
    assert space.from_unit(U)[:, 0].tolist() == [0, 0, 1, 2, 3, 3]
    assert space.from_unit(U)[:, 1].tolist() == [1] * 6  # 0.1 beats 0.0


def test_rounding_snaps_discrete_coordinates_and_keeps_the_real_gradient() -> None:
    U = torch.tensor([[0.3, 0.41, 0.55, 0.2, 0.1, 0.7, 0.2]], dtype=F64, requires_grad=True)
    R = SPACE.round_unit(U)
    assert R[0, :2].tolist() == [0.3, 0.41]  # real coordinates pass through
    assert R[0, 2].item() == pytest.approx(2.5 / 4) and R[0, 4:].tolist() == [0.0, 1.0, 0.0]
    (grad,) = torch.autograd.grad((R * torch.arange(1, 8)).sum(), U)
    assert grad[0].tolist() == [1.0, 2.0, 0, 0, 0, 0, 0]
    assert torch.equal(SPACE.round_unit(R.detach()), R.detach())  # idempotent


def test_json_round_trip_and_clear_errors() -> None:
    text = json.dumps(SPACE.to_json())
    assert Space.from_json(json.loads(text)) == SPACE
    for spec, words in (({"a": {"type": "real", "low": 0, "high": 1}}, "'a' needs \"type\""),
                        ({"a": {"type": "float", "low": 0}}, "'a' of type 'float' takes"),
                        ({"a": {"type": "int", "low": 0, "high": 1, "step": 2}}, "'step'"),
                        ({"a": {"type": "float", "low": 1, "high": 0}}, "'a': Float: need"),
                        ({"a": {"type": "categorical", "choices": []}}, "'a': Categorical"),
                        ([1], "non-empty object"), ({}, "non-empty object")):
        with raises_clearly("Space.from_json", match=words.replace("(", r"\(")):
            Space.from_json(spec)


@pytest.mark.parametrize(("make", "words"), [
    (lambda: Float(0.0, 1.0, log=True), "log=True needs low > 0, got low=0.0"),
    (lambda: Float(1.0, 1.0), "need low < high"),
    (lambda: Float(0.0, math.inf), "high must be a finite real number"),
    (lambda: Float("0", 1.0), "low must be a finite real number, got '0'"),
    (lambda: Int(0, 5, log=True), "log=True needs low >= 1, got low=0"),
    (lambda: Int(0.5, 2), "low must be an integer, got 0.5"),
    (lambda: Int(3, 2), "need low <= high"),
    (lambda: Categorical("ab"), "non-empty sequence"),
    (lambda: Categorical(["a", "a"]), "distinct, got 'a' twice"),
    (lambda: Categorical([[1]]), "choices[0] must be a string"),
    (lambda: Space({"a": (0, 1)}), "'a' must be a Float, Int or Categorical"),
    (lambda: Space({}), "non-empty dict"),
])
def test_bad_dimensions_name_the_argument_and_value(make, words) -> None:
    with raises_clearly(match=words.replace("(", r"\(").replace("[", r"\[")):
        make()


def test_study_over_a_space_asks_valid_values_and_takes_dicts(tmp_path: Path) -> None:
    study = Study(SPACE, n_initial=4, seed=0, **FAST)
    X = torch.cat([study.ask() for _ in range(4)])
    assert X.shape == (4, 5) and torch.equal(X[:, 2:], X[:, 2:].round())
    low, high = SPACE.bounds.T
    assert ((low <= X) & (high >= X)).all()
    params = study.params(X)
    study.tell(params, [p["lr"] + p["layers"] for p in params])  # dicts are accepted
    assert len(study.pending) == 0 and torch.equal(study.X, X)
    x = study.ask()
    assert torch.equal(x[:, 2:], x[:, 2:].round())
    study.save(tmp_path / "s.json")
    loaded = Study.load(tmp_path / "s.json")
    assert loaded.space == SPACE and torch.equal(loaded.pending, x)
    assert torch.equal(loaded.ask(), study.ask())  # continues exactly


def test_tell_refuses_values_the_space_cannot_hold() -> None:
    study = Study(SPACE)
    good = {"lr": 0.1, "width": 0.0, "layers": 1, "batch": 2, "act": None}
    for row, words in ((good | {"layers": 1.5}, "'layers') must be an integer"),
                       (good | {"act": "gelu"}, "['act'] must be one of ['relu', 'tanh', None]"),
                       (good | {"lr": 2.0}, "outside the bounds"),
                       ({"lr": 0.1}, "must be a dict with the keys")):
        with raises_clearly("Study.tell", match=words.replace("[", r"\[").replace("(", r"\(")
                            .replace(")", r"\)")):
            study.tell([row], [1.0])
    assert study.n == 0


def test_minimize_finds_the_best_choice_and_integers() -> None:
    seen: list[dict] = []

    def f(p: dict) -> float:
        seen.append(p)
        return ((math.log10(p["lr"]) + 2) ** 2 + (p["layers"] - 2) ** 2
                + {"relu": 1.0, "tanh": 0.0, None: 2.0}[p["act"]])

    space = {"lr": Float(1e-4, 1.0, log=True), "layers": Int(0, 5),
             "act": Categorical(["relu", "tanh", None])}
    result = minimize(f, space, 16, n_initial=6, seed=0, **FAST)
    assert all(isinstance(p["layers"], int) and p["act"] in ("relu", "tanh", None)
               for p in seen)
    best = result.params_best
    # the exact optimum is lr = 1e-2, layers = 2, tanh (value 0); 16 calls get within 0.1
    assert best["layers"] == 2 and best["act"] == "tanh" and result.y_best < 0.1
    assert result.params_recommended is not None


def test_malformed_specs_and_rows_get_clear_messages() -> None:
    with raises_clearly("Space.from_json", match="'a' needs \"type\""):
        Space.from_json({"a": {"type": ["float"], "low": 0, "high": 1}})  # unhashable type
    with raises_clearly("Space", match="use Space.from_json"):
        Space({"a": {"type": "float", "low": 0, "high": 1}})
    with raises_clearly("Study.tell", match=r"must be a dict with the keys .*got \[1, 'lr'\]"):
        Study(SPACE).tell([{1: 0.0, "lr": 0.1}], [1.0])


def test_minimize_names_the_space_when_a_checkpoint_holds_another(tmp_path: Path) -> None:
    path = tmp_path / "study.json"
    minimize(lambda p: p["a"], {"a": Float(1.0, 10.0)}, 2, n_initial=2, checkpoint=path)
    with raises_clearly("minimize", match=r"differs in \['space'\].*'log': False.*'log': True"):
        minimize(lambda p: p["a"], {"a": Float(1.0, 10.0, log=True)}, 3, n_initial=2,
                 checkpoint=path)
