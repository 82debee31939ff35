"""The BO study: paired designs and noise, regret curves, reports, reproductions, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stochopt.tasks import Branin
from stochopt_bench import bo
from stochopt_bench.cli import main
from stochopt_bench.reproductions import bayesopt as repro


@pytest.fixture
def tiny(monkeypatch) -> str:
    monkeypatch.setitem(bo.PROBLEMS, "tiny", bo.Problem(Branin(), 4, 7, 1.0))
    return "tiny"


def _load(out: Path, method: str, noisy: bool = True) -> dict:
    return json.loads(bo._path(out, "tiny", noisy, method, 0).read_text())


def test_methods_share_the_design_and_the_noise_draws(tiny: str, tmp_path: Path) -> None:
    for method in ("gp-logei", "botorch-qlognei", "random"):
        bo.run_one(tmp_path, tiny, True, method, 0)
    ours, theirs, rand = (_load(tmp_path, m) for m in ("gp-logei", "botorch-qlognei", "random"))
    assert ours["X"][:4] == theirs["X"][:4]  # the same Sobol design
    for run in (ours, theirs, rand):
        assert len(run["y"]) == len(run["true"]) == 7
    noise = [[y - t for y, t in zip(r["y"], r["true"], strict=True)]
             for r in (ours, theirs, rand)]
    assert noise[0] == pytest.approx(noise[1], abs=1e-9)
    assert noise[0] == pytest.approx(noise[2], abs=1e-9)
    assert len(ours["seconds"]) == len(theirs["seconds"]) == 3
    assert [n for n, _ in ours["curve"]] == [7]  # recommendations every 10 evaluations + end
    assert "(kept)" in bo.run_one(tmp_path, tiny, True, "random", 0)  # resumes


def test_noise_free_curve_is_the_best_true_value_so_far(tiny: str, tmp_path: Path) -> None:
    bo.run_one(tmp_path, tiny, False, "random", 0)
    run = _load(tmp_path, "random", noisy=False)
    assert run["y"] == run["true"]
    minimum = Branin().minimum
    assert [r for _, r in run["curve"]] == pytest.approx(
        [min(run["true"][:n]) - minimum for n in range(1, 8)])


def _fake(out: Path, problem: str, method: str, seed: int, regret: float, noisy: bool) -> None:
    path = bo._path(out, problem, noisy, method, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"problem": problem, "noisy": noisy, "method": method,
                                "seed": seed, "curve": [[1, regret]], "seconds": [0.5]}))


def test_reproduction_verdicts_read_the_paired_numbers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(repro, "run_all", lambda *args: None)
    for problem in bo.PROBLEMS:
        for seed in range(10):
            _fake(tmp_path, problem, "gp-logei", seed, 10.0 ** -seed, noisy=True)
            _fake(tmp_path, problem, "gp-noisy_ei", seed, 10.0 ** (-seed - 1), noisy=True)
            for method, shift in (("gp-logei", 0), ("ibnn-logei", 0.5), ("dkl-logei", 3),
                                  ("ensemble-logei", 2), ("hmc-logei", 1)):
                _fake(tmp_path, problem, method, seed, 10.0 ** (shift - seed * 0.1), False)
    outcome = repro.NOISY_EI.run(None, tmp_path)
    assert outcome.verdict.verdict.startswith("reproduced")  # lower on every seed: p = 0.001
    assert "p (noisy EI lower) = 0.001" in outcome.verdict.measurement
    bnn = repro.BNN_SURROGATES.run(None, tmp_path).verdict.verdict
    # the same ranking everywhere, DKL always significantly worse, HMC beats the ensemble
    assert bnn.startswith("partly reproduced (1 of 3")
    assert "rankings do not differ across problems (first: gp, gp, gp)" in bnn
    assert "HMC beats the deep ensemble (median) on 3" in bnn
    table = bo.report(tmp_path, None)
    assert "| gp-noisy_ei | 10 |" in table


def test_cli_runs_resumes_and_plots(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bo"
    argv = ["bo", "branin", "--calls", "6", "--initial", "4", "--noise-std", "0.5", "--out",
            str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["regret_curve"]) == 6 and (out / "regret.png").stat().st_size > 0
    argv[3] = "7"
    assert main(argv) == 0
    assert "resuming" in capsys.readouterr().out
    assert len(json.loads((out / "summary.json").read_text())["regret_curve"]) == 7


def test_cli_rejects_a_wrong_dimension(capsys) -> None:
    assert main(["bo", "branin", "--dim", "3"]) == 2
    assert "--dim: branin is 2-dimensional, got 3" in capsys.readouterr().err
