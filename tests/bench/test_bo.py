"""The BO study: paired designs and noise, regret curves, reports, reproductions, CLI;
damaged run records and bad command-line values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stochopt.bayesopt import Study
from stochopt.tasks import Branin, Hartmann6
from stochopt_bench import bo
from stochopt_bench.cli import main
from stochopt_bench.reproductions import bayesopt as repro
from tests.contract import raises_clearly


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


# ------------------------------------------------------------------- damaged records, bad input
def test_a_damaged_record_is_reported_moved_aside_and_run_again(tiny: str, tmp_path: Path
                                                                ) -> None:
    bo.run_one(tmp_path, tiny, False, "random", 0)
    path = bo._path(tmp_path, tiny, False, "random", 0)
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # truncated, as by a crash of an old writer
    message = bo.run_one(tmp_path, tiny, False, "random", 0)
    assert str(path) in message and "not valid JSON" in message and "run again" in message
    rerun, first = json.loads(path.read_text()), json.loads(good)
    assert rerun.pop("wall") > 0 and first.pop("wall") > 0 and rerun == first  # run again
    assert path.with_name(path.name + ".damaged").read_text() == good[: len(good) // 2]
    other = json.loads(good) | {"seed": 1}  # another run's record under this name
    path.write_text(json.dumps(other))
    assert "it records the run ('tiny', False, 'random', 1)" in bo.run_one(
        tmp_path, tiny, False, "random", 0)
    assert path.with_name(path.name + ".damaged2").exists()


def test_the_report_names_damaged_records_and_tabulates_the_rest(tmp_path: Path) -> None:
    for seed in range(5):
        _fake(tmp_path, "branin", "random", seed, 0.1, noisy=False)
    broken = bo._path(tmp_path, "branin", False, "random", 3)
    broken.write_text('{"problem": "branin", "noisy": false')
    missing = bo._path(tmp_path, "branin", False, "random", 4)
    missing.write_text(json.dumps({"problem": "branin", "noisy": False, "method": "random",
                                   "seed": 4, "curve": [], "seconds": []}))
    said: list[str] = []
    table = bo.report(tmp_path, None, said.append)
    assert "| random | 3 |" in table
    assert len(said) == 2 and str(broken) in said[0] and "truncated" in said[0]
    assert str(missing) in said[1] and "'curve'" in said[1] and "moved aside" in said[1]
    assert bo.report(tmp_path, None, said.append) == table and len(said) == 2


def test_jobs_are_checked_before_any_runs(tiny: str, tmp_path: Path) -> None:
    good = (tmp_path, tiny, False, "random", 0)
    for job, words in (((tmp_path, "nope", False, "random", 0), "unknown problem 'nope'"),
                       ((tmp_path, tiny, False, "forest", 0), "unknown method 'forest'"),
                       ((tmp_path, tiny, 1, "random", 0), "noisy must be True or False"),
                       ((tmp_path, tiny, False, "random", -1), "seed must be in"),
                       ((tmp_path, tiny, False, "random", 1.5), "seed must be an integer")):
        with raises_clearly(words):
            bo.run_all([good, job], 1, print)
    assert not (tmp_path / "runs").exists()  # nothing ran
    (tmp_path / "file").write_text("")
    with raises_clearly("is a file"):
        bo.run_all([(tmp_path / "file", tiny, False, "random", 0)], 1, print)


def test_cli_out_pointing_at_a_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        assert main(["bo", "branin", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"stochopt: error: --out {out}") and "Traceback" not in err


@pytest.mark.parametrize(("argv", "words"), [
    (["--calls", "0"], "argument --calls: must be an integer >= 1, got 0"),
    (["--calls", "x"], "argument --calls: must be an integer, got 'x'"),
    (["--initial", "-2"], "argument --initial: must be an integer >= 1"),
    (["--q", "0"], "argument --q: must be an integer >= 1"),
    (["--seed", "-1"], "argument --seed: must be an integer in [0, 2**63 - 1], got -1"),
    (["--noise-std", "nan"], "argument --noise-std: must be a finite number >= 0"),
    (["--noise-std", "-0.5"], "argument --noise-std: must be a finite number >= 0"),
    (["--dim", "1"], "argument --dim: must be an integer in [2, 21201], got 1"),
])
def test_cli_bad_values_are_argparse_errors(argv: list[str], words: str, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bo", "ackley", *argv])
    assert caught.value.code == 2 and words in capsys.readouterr().err


def test_cli_damaged_or_foreign_checkpoint_is_a_clear_error(tmp_path: Path, capsys) -> None:
    checkpoint = tmp_path / "study.json"
    checkpoint.write_text('{"format": 1, "bou')
    assert main(["bo", "branin", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"BO checkpoint {checkpoint} is damaged" in err and "delete it" in err
    Study(Hartmann6().bounds).save(checkpoint)
    assert main(["bo", "branin", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path} holds another study: {checkpoint} searches the box" in err
    assert "to start afresh" in err


def test_cli_out_holding_a_study_with_other_settings_says_how_to_start_afresh(
        tmp_path: Path, capsys) -> None:
    argv = ["bo", "branin", "--calls", "3", "--initial", "3", "--out", str(tmp_path)]
    assert main(argv) == 0
    before = (tmp_path / "study.json").read_text()
    for extra, words in ((["--surrogate", "ibnn"], "surrogate: 'gp' saved, 'ibnn' given"),
                         (["--seed", "2"], "seed: 0 saved, 2 given"),
                         (["--noise-std", "1"], "noise_std: 0.0 saved, 1.0 given")):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert f"--out {tmp_path} holds another study, with other settings ({words})" in err
        assert f"delete {tmp_path / 'study.json'} (or the whole directory)" in err
    assert (tmp_path / "study.json").read_text() == before  # nothing ran
    # an interrupted run (checkpoint, no summary yet) keeps its noise level too
    (tmp_path / "summary.json").unlink()
    assert main([*argv, "--noise-std", "1"]) == 2
    assert "noise_std: 0.0 saved, 1.0 given" in capsys.readouterr().err


def test_cli_space_file_searches_integers_and_log_scales(tmp_path: Path, capsys) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"x0": {"type": "float", "low": 0.5, "high": 10.0, "log": True},
                                 "x1": {"type": "int", "low": 0, "high": 15}}))
    out = tmp_path / "out"
    argv = ["bo", "branin", "--calls", "6", "--initial", "4", "--space", str(space), "--out",
            str(out)]
    assert main(argv) == 0
    saved = Study.load(out / "study.json")
    assert saved.space is not None and torch.equal(saved.X[:, 1], saved.X[:, 1].round())
    assert (saved.X[:, 0] >= 0.5).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regret_best"] == pytest.approx(
        min(float(Branin()(x)) for x in saved.X) - Branin().minimum)
    assert main(["bo", "branin", "--calls", "6", "--out", str(out)]) == 2
    assert "searches the space" in capsys.readouterr().err
    space.write_text(json.dumps({"x0": {"type": "float", "low": -9.0, "high": 1.0}}))
    assert main([*argv[:-1], str(tmp_path / "other")]) == 2
    assert "branin has 2 coordinates, the space has 1 parameters" in capsys.readouterr().err


def test_quartiles_of_nothing_say_so() -> None:
    with raises_clearly("quartiles: values is empty"):
        bo.quartiles([])
