"""Reproductions: registered suites are valid; the verdict rule reads the numbers right."""

from __future__ import annotations

from pathlib import Path

from stochopt_bench.report import Row
from stochopt_bench.reproductions import (
    REPRODUCTIONS,
    Verdict,
    adabelief,
    compare,
    record_section,
    sophia,
)
from stochopt_bench.reproductions._base import best_learning_rates


def _row(method: str, mean: float, std: float, higher: bool = True) -> Row:
    return Row(task="t", method=method, optimizer="x", seeds=3, metric="m",
               higher_is_better=higher, final_mean=mean, final_std=std, best_mean=mean,
               reached=3, steps_to_target=100.0, time_to_target=1.0, step_ms=1.0,
               state_bytes_per_param=8.0, diverged=0)


def test_compare_uses_the_metric_direction_and_seed_noise() -> None:
    assert compare([_row("a", 0.95, 0.001), _row("b", 0.90, 0.001)], "a", "b")[2] == "better"
    assert compare([_row("a", 0.90, 0.001), _row("b", 0.95, 0.001)], "a", "b")[2] == "worse"
    assert compare([_row("a", 0.91, 0.05), _row("b", 0.90, 0.05)], "a", "b")[2].startswith("no")
    loss = [_row("a", 1.0, 0.001, higher=False), _row("b", 1.2, 0.001, higher=False)]
    better, noise, word = compare(loss, "a", "b")
    assert word == "better" and abs(better - 0.2) < 1e-12 and noise < 0.01


def test_adabelief_reproduction_is_registered_and_judged() -> None:
    assert REPRODUCTIONS["adabelief"] is adabelief.ADABELIEF
    rows = {"digits-cnn": [_row("adam", 0.95, 0.01), _row("adabelief", 0.97, 0.001)]}
    assert adabelief.judge(rows).verdict.startswith("reproduced")
    rows = {"digits-cnn": [_row("adam", 0.97, 0.001), _row("adabelief", 0.90, 0.001)]}
    assert adabelief.judge(rows).verdict.startswith("not reproduced")
    rows = {"digits-cnn": [_row("adam", 0.97, 0.05), _row("adabelief", 0.96, 0.05)]}
    assert "within seed noise of Adam's on every task" in adabelief.judge(rows).verdict


def _record(label: str, lr: float, losses: list[float], seed: int = 0) -> dict:
    curve = [{"step": 100 * i, "val_loss": v} for i, v in enumerate(losses)]
    return {"method": {"label": label, "lr": lr}, "seed": seed, "curve": curve,
            "summary": {"metric": "val_loss", "higher_is_better": False, "final": losses[-1]}}


def test_sophia_picks_the_best_rate_and_measures_steps_to_adamw_loss() -> None:
    families = {"adamw": ({}, (1e-3, 1e-2)), "sophiag": ({}, (1e-3, 1e-2))}
    grid = [_record("adamw-lr0.001", 1e-3, [3, 2.0]), _record("adamw-lr0.01", 1e-2, [3, 1.8]),
            _record("sophiag-lr0.001", 1e-3, [3, 1.7]), _record("sophiag-lr0.01", 1e-2, [3, 2])]
    assert best_learning_rates(grid, families) == {"adamw": 1e-2, "sophiag": 1e-3}
    seeded = [_record("adamw", 1e-2, [3, 2.5, 2.2, 2.0, 1.9], seed) for seed in range(3)]
    seeded += [_record("sophiag", 1e-3, [3, 2.2, 1.85, 1.8, 1.7], seed) for seed in range(3)]
    line, speedup = sophia.speedup_line(seeded, "sophiag", "adamw")
    assert speedup == sophia.STEPS / 200 and "at step 200" in line
    slow = [r for r in seeded if r["method"]["label"] == "adamw"]
    slow += [_record("sophiag", 1e-3, [3, 2.5, 2.4, 2.3, 2.2], seed) for seed in range(3)]
    assert sophia.speedup_line(slow, "sophiag", "adamw")[1] == 0.0


def test_record_section_rewrites_only_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "reproductions.md"
    doc.write_text("# Reproductions\n\nIntro stays.\n")
    figure = tmp_path / "adabelief-charlm" / "charlm.png"
    figure.parent.mkdir()
    figure.write_bytes(b"\x89PNG")
    repro = REPRODUCTIONS["adabelief"]
    record_section(doc, repro, Verdict("- first", "v1"), [figure], "run 1")
    record_section(doc, repro, Verdict("- second", "v2"), [figure], "run 2")
    text = doc.read_text()
    assert text.count("<!-- reproduction:adabelief -->") == 1
    assert "Intro stays." in text and "- second" in text and "- first" not in text
    assert (tmp_path / "figures" / "adabelief-charlm.png").is_file()
    assert "![adabelief-charlm](figures/adabelief-charlm.png)" in text


def test_8bit_gap_is_relative_to_the_32bit_loss() -> None:
    from stochopt_bench.reproductions import eightbit

    rows = [_row("adamw-32bit", 1.50, 0.01, higher=False), _row("adamw-8bit", 1.515, 0.01,
                                                                  higher=False)]
    assert abs(eightbit.relative_gap(rows, "adamw-32bit", "adamw-8bit") - 0.01) < 1e-12
    suites = (eightbit._suite("charlm"), eightbit._suite("charlm-stable"))
    assert {s.tasks[0].name for s in suites} == {"charlm", "charlm-stable"}
    assert REPRODUCTIONS["8bit"] is eightbit.EIGHTBIT


def test_batch_lr_picks_the_best_rate_per_batch_and_fits_the_slope() -> None:
    from stochopt_bench.reproductions import batch_lr

    def record(family: str, lr: float, batch: int, loss: float) -> dict:
        return {"method": {"label": f"{family}-lr{lr:g}", "lr": lr}, "batch_size": batch,
                "curve": [{"val_loss": loss}]}

    records = [record("sgd", lr, b, abs(lr - b / 100)) for b in (8, 32, 128)
               for lr in (0.08, 0.32, 1.28)]
    records.append(record("sgd", 5.0, 8, float("nan")))  # a diverged run never wins
    best = batch_lr.best_lr_by_batch(records, "sgd")
    assert best == {8: 0.08, 32: 0.32, 128: 1.28}
    assert abs(batch_lr.slope(best) - 1.0) < 1e-12
    assert abs(batch_lr.slope({4: 1.0, 16: 2.0, 64: 4.0}) - 0.5) < 1e-12


def test_last_iterate_study_runs_and_reports_gaps_and_sparsity() -> None:
    from stochopt_bench.reproductions import last_iterate

    problem = last_iterate.lasso_problem()
    record = last_iterate.run_prox_sgd(problem, "fixed 1/sqrt(T)", 200, seed=0)
    assert record["gap_last"] >= 0 and record["gap_average"] >= 0
    assert record["nonzeros_average"] == 200 and record["nonzeros_last"] <= 200
    assert int((problem["optimum"] != 0).sum()) == 10


def test_adadagrad_grows_the_batch_and_respects_the_sample_budget(monkeypatch) -> None:
    from stochopt_bench.reproductions import adadagrad

    monkeypatch.setattr(adadagrad, "EPOCHS", 2)
    fixed = adadagrad.train("fixed-16", seed=0)
    grown = adadagrad.train("adaptive-0.5", seed=0)
    assert fixed["steps"] == 2 * 1400 // 16 and fixed["final_batch"] == 16
    assert grown["final_batch"] > 2 and grown["samples"] <= 2 * 1400
    assert grown["steps"] < 1400  # fewer steps than batch 2 would take


def test_bilevel_reproductions_tune_on_mean_validation_loss(tmp_path: Path) -> None:
    from stochopt_bench.reproductions import bilevel

    assert REPRODUCTIONS["hyper-cleaning"] is bilevel.HYPER_CLEANING
    assert REPRODUCTIONS["regularization-tuning"] is bilevel.REGULARIZATION_TUNING
    calls = []

    def run(method: str, lr: float, seed: int) -> dict:
        calls.append((method, lr, seed))
        diverged = lr == 10.0 and seed == 4  # best on seed 0, diverges on the other
        return {"val_loss": float("inf") if diverged else 1.0 / lr}

    methods = {"m": (None, (1.0, 3.0, 10.0))}
    result = bilevel._tuned(tmp_path, methods, run, "k")
    assert result["m"][0] == 3.0  # 10 is best on seed 0 but infinite on seed 4
    assert [r["val_loss"] for r in result["m"][1]] == [1 / 3] * 3
    n = len(calls)
    bilevel._tuned(tmp_path, methods, run, "k")  # cached: nothing runs again
    assert len(calls) == n


def _sophia_finals(method: dict) -> float:
    """The fake study's final metric: AdamW best at 3e-3, SophiaG at (6e-3, rho 0.4), SophiaH
    at (3e-3, rho 0.04); Adam beats AdaHessian on digits."""
    lr, rho = method["lr"], method["options"].get("rho")
    return {"torch.AdamW": {1e-3: 1.8, 3e-3: 1.5, 1e-2: 1.55}.get(lr, 9.0),
            "SophiaG": 1.45 if (lr, rho) == (6e-3, 0.4) else 1.6,
            "SophiaH": 1.48 if (lr, rho) == (3e-3, 0.04) else 1.6,
            "torch.Adam": 0.98, "AdaHessian": 0.97}[method["optimizer"]]


def test_sophia_tunes_rho_with_lr_reuses_seed_0_and_reports_win_rates(
        tmp_path: Path, micro_record: dict) -> None:
    import json

    from stochopt_bench.store import run_path

    made = []

    def fake(spec, method, seed: int) -> dict:  # a run whose loss falls linearly to its final
        made.append((spec.label, method.label, seed))
        final = _sophia_finals(method.as_dict()) + 0.001 * seed
        metric, higher = ("val_accuracy", True) if spec.name == "digits-cnn" else ("val_loss",
                                                                                   False)
        start = 0.1 if higher else 3.0
        curve = [{"step": s, "time": s / 100, "train_loss": None, "val_loss": 1.0,
                  metric: start + (final - start) * s / 400} for s in range(0, 401, 100)]
        if "rho" in method.options:
            for point in curve[1:]:
                point["win_rate"] = method.options["rho"]
        return {**micro_record, "task": spec.label, "task_name": spec.name,
                "method": method.as_dict(), "seed": seed, "curve": curve,
                "summary": {"metric": metric, "higher_is_better": higher, "target": 0.0,
                            "final": curve[-1][metric], "best": curve[-1][metric],
                            "steps_to_target": None, "time_to_target": None}}

    def execute(suite) -> list[dict]:  # resumes records already in place, as the runner does
        records = []
        for spec, method, seed in suite.runs():
            path = run_path(tmp_path / suite.name, spec.label, method.label, seed)
            records.append(json.loads(path.read_text()) if path.exists()
                           else fake(spec, method, seed))
        return records

    outcome = sophia.SOPHIA.run(execute, tmp_path)
    seeded = [m for m in made if m[0] == "charlm" and "-lr" not in m[1]]
    assert sorted(seeded) == [("charlm", m, s) for m in ("adamw", "sophiag", "sophiah")
                              for s in (1, 2)]  # seed 0 is the grid's run
    text = outcome.verdict.measurement
    assert "| sophiag | 0.4 | 0.006 | 1.4500 | 0.400 / 0.400 / 0.400 |" in text
    assert "| sophiah | 0.04 | 0.003 | 1.4800 | 0.040 / 0.040 / 0.040 |" in text
    assert "sophiag at lr 0.006, rho 0.4 (AdamW lr 0.003)" in text
    assert "win rate by step (100: 0.400, 200: 0.400, 300: 0.400, 400: 0.400)" in text
    assert "SophiaG vs SophiaH" in text and "differ by at most 0.0300" in text
    assert ("win rates over the second half of training: sophiag 0.40-0.40, sophiah "
            "0.04-0.04; not all within the authors' 0.1-0.5" in outcome.verdict.verdict)
    assert "final loss 1.4510 vs 1.4810 (SophiaG better, difference -0.0300" in text


def test_sophia_best_settings_and_win_rates() -> None:
    families = {"a": ({}, (1.0,)), "s-rho1": ({}, (1.0, 2.0)), "s-rho2": ({}, (1.0, 2.0))}
    grid = [_record("a-lr1", 1.0, [3, 2]), _record("s-rho1-lr1", 1.0, [3, 1.9]),
            _record("s-rho1-lr2", 2.0, [3, 1.8]), _record("s-rho2-lr1", 1.0, [3, 1.7]),
            _record("s-rho2-lr2", 2.0, [3, 2.5])]
    assert sophia.best_settings(grid, families, ["a", "s"]) == {"a": ("a", 1.0),
                                                                "s": ("s-rho2", 1.0)}
    runs = [_record("s", 1.0, [3, 2, 1], seed) for seed in range(2)]
    runs[0]["curve"][1]["win_rate"], runs[1]["curve"][1]["win_rate"] = 0.1, 0.3
    runs[0]["curve"][2]["win_rate"] = 0.5  # seed 1 has none at step 200: left out
    assert sophia.win_rates(runs, "s") == [(100, 0.2)]
    assert sophia.win_rate_line(runs, "s", at=(100, 200)) == "win rate by step (100: 0.200)"


def test_sophia_verdict_counts_fewer_steps_only_beyond_the_curves_resolution() -> None:
    """One evaluation interval sooner (400 -> 375 steps, 1.07x) is the curves' resolution, not
    a speedup; two intervals (400 -> 350, 1.14x) is."""
    interval = sophia.TASKS["charlm"].eval_every
    late = {"sophiag": (0.2, 0.3)}
    one = sophia.STEPS / (sophia.STEPS - interval)
    two = sophia.STEPS / (sophia.STEPS - 2 * interval)
    assert sophia._verdict({"sophiag": one}, "equal", 14.0, late).startswith(
        "Sophia: not reproduced: Sophia reaches AdamW's final loss at most one evaluation")
    assert sophia._verdict({"sophiag": two}, "equal", 14.0, late).startswith(
        "Sophia: partly reproduced: Sophia needs fewer steps than AdamW (best 1.14x)")
    assert sophia._verdict({"sophiag": 2.0}, "equal", 14.0, late).startswith(
        "Sophia: reproduced")
