"""The runner: what a record holds, and resuming an interrupted suite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stochopt_bench.runner import run_one, run_suite
from stochopt_bench.store import load_runs
from stochopt_bench.suite import load_suite


def test_a_record_holds_config_curves_timing_and_memory(tiny_suite_file: Path) -> None:
    suite = load_suite(str(tiny_suite_file))
    spec, method, seed = suite.runs()[0]  # rosenbrock, AdamW
    steps_seen = []
    record = run_one(spec, method, seed, on_step=lambda step, total: steps_seen.append(step))
    assert steps_seen == list(range(1, 151))
    assert record["method"] == {"label": "adamw", "optimizer": "AdamW",
                                "lr": {"rosenbrock": 5e-2, "breast-cancer-logreg": 1e-2},
                                "options": {}}
    assert record["versions"]["torch"] and record["machine"]["logical_cpus"] >= 1
    curve = record["curve"]
    assert [p["step"] for p in curve] == [0, 50, 100, 150]
    assert all(b["time"] > a["time"] for a, b in zip(curve, curve[1:]))
    assert curve[-1]["val_loss"] < curve[0]["val_loss"]
    assert record["summary"]["final"] == curve[-1]["val_loss"]
    assert record["step_time"]["median"] > 0
    # AdamW keeps step, exp_avg, exp_avg_sq: 4 + 2 * 2 * 8 bytes for 2 float64 parameters
    assert record["state_bytes"] == 4 + 2 * 2 * 8
    assert record["state_bytes_per_param"] == (4 + 32) / 2
    assert json.loads(json.dumps(record)) == record


def test_same_seed_same_record_curve(tiny_suite_file: Path) -> None:
    suite = load_suite(str(tiny_suite_file))
    spec, method, seed = suite.runs()[-1]  # breast cancer, torch Adam, seed 1
    a, b = run_one(spec, method, seed), run_one(spec, method, seed)
    assert [p["val_loss"] for p in a["curve"]] == [p["val_loss"] for p in b["curve"]]


def test_finished_runs_are_not_redone(tiny_suite_file: Path, tmp_path: Path) -> None:
    suite = load_suite(str(tiny_suite_file))
    first = run_suite(suite, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")}
    assert len(stamps) == len(suite.runs()) == len(first)
    calls = []
    second = run_suite(suite, tmp_path, on_step=lambda *a: calls.append(a))
    assert calls == []  # nothing trained again
    assert second == first
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").glob("*.json")}


def test_killed_suite_resumes_without_losing_or_redoing_runs(tmp_path: Path) -> None:
    suite_file = tmp_path / "kill.toml"
    suite_file.write_text(
        'name = "kill"\nseeds = [0, 1]\ntasks = [{ name = "rosenbrock", steps = 1500 }]\n'
        + "".join(f'[methods.m{i}]\noptimizer = "AdamW"\nlr = {lr}\n'
                  for i, lr in enumerate((1e-2, 2e-2, 5e-2))))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "stochopt_bench.cli", "bench", str(suite_file),
               "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs_dir = out / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(runs_dir.glob("*.json"))) < 2:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # mid-suite, most likely mid-run
    process.wait()
    finished = {p: (p.stat().st_mtime_ns, p.read_text()) for p in runs_dir.glob("*.json")}
    assert 2 <= len(finished) < 6, "the suite should have been killed part-way"
    assert all(json.loads(text)["complete"] for _, text in finished.values())

    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=300)
    records = load_runs(out)
    assert len(records) == 6
    for path, (stamp, text) in finished.items():
        assert path.stat().st_mtime_ns == stamp and path.read_text() == text  # not redone
    assert (out / "report.md").is_file()


def test_schedule_batch_size_and_gradient_norms_reach_the_run() -> None:
    from stochopt_bench.methods import build_schedule
    from stochopt_bench.suite import parse_suite

    suite = parse_suite({
        "name": "s", "tasks": [{"name": "digits-mlp", "steps": 20, "batch_size": 8}],
        "methods": {"sgd": {"optimizer": "torch.SGD", "lr": 0.1,
                            "schedule": {"kind": "linear", "warmup": 4}}},
    })
    spec, method, seed = suite.runs()[0]
    record = run_one(spec, method, seed)
    assert record["task"] == "digits-mlp@8" and record["batch_size"] == 8
    assert len(record["grad_norm_l2"]) == 20 and all(v > 0 for v in record["grad_norm_l1"])
    schedule = build_schedule(method.schedule, 0.1, 20)
    assert schedule(0) == 0.1 / 5 and schedule(4) == 0.1 and schedule(19) < 0.01


def test_an_optimizer_that_refuses_a_non_finite_step_ends_the_run_as_diverged() -> None:
    from stochopt_bench.suite import parse_suite

    # lr 1e200 puts Rosenbrock's point at ~1e200 after one step; the next gradient is infinite
    # and AdaGradNorm(nonfinite="raise") refuses it: the run is recorded, not the suite stopped
    suite = parse_suite({
        "name": "s", "tasks": [{"name": "rosenbrock", "steps": 10}],
        "methods": {"agn": {"optimizer": "AdaGradNorm", "lr": 1e200, "nonfinite": "raise"}},
    })
    spec, method, seed = suite.runs()[0]
    record = run_one(spec, method, seed)
    assert record["diverged"] is True
    assert record["curve"][-1]["step"] == 2


def test_the_win_rate_is_recorded_at_each_evaluation_where_the_optimizer_has_one(
        tmp_path: Path) -> None:
    import pytest

    from stochopt.errors import DamagedFileError
    from stochopt_bench.report import figures
    from stochopt_bench.store import check_record
    from stochopt_bench.suite import parse_suite

    suite = parse_suite({
        "name": "s", "seeds": [0], "tasks": [{"name": "rosenbrock", "steps": 100}],
        "methods": {"sophiah": {"optimizer": "SophiaH", "lr": 0.01, "rho": 0.5},
                    "adamw": {"optimizer": "AdamW", "lr": 0.01}},
    })
    (spec, sophia, seed), (_, adamw, _) = suite.runs()
    record = run_one(spec, sophia, seed)
    curve = record["curve"]
    assert "win_rate" not in curve[0]  # before the first step it is undefined
    assert [p["step"] for p in curve if "win_rate" in p] == [50, 100]
    assert all(0.0 <= p["win_rate"] <= 1.0 for p in curve[1:])
    check_record(record, "sophia")
    plain = run_one(spec, adamw, seed)
    assert all("win_rate" not in p for p in plain["curve"])  # older records look like this
    check_record(plain, "adamw")
    broken = {**record, "curve": [curve[0], {**curve[1], "win_rate": "high"}]}
    with pytest.raises(DamagedFileError, match=r"'curve\[1\]\.win_rate' entry is 'high'"):
        check_record(broken, "broken")
    assert figures([record, plain], tmp_path) == {"rosenbrock": "rosenbrock.png"}


def _losses(record: dict) -> list:
    return [[p[k] for k in ("step", "train_loss", "val_loss", "val_accuracy")]
            for p in record["curve"]] + [record["grad_norm_l2"]]


def test_the_warm_up_changes_neither_the_recorded_losses_nor_the_global_generators() -> None:
    import random

    import numpy as np
    import torch

    from stochopt_bench.runner import warm_up
    from stochopt_bench.suite import parse_suite

    # minibatches and a curvature estimate that draws probes: every source of randomness
    suite = parse_suite({"name": "w", "tasks": [{"name": "digits-mlp", "steps": 8}],
                         "methods": {"h": {"optimizer": "SophiaH", "lr": 0.01}}})
    spec, method, seed = suite.runs()[0]
    cold = run_one(spec, method, seed)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    warm_up(spec, method, seed)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert (np.random.get_state()[1] == states[1]).all() and random.getstate() == states[2]
    warm = run_one(spec, method, seed)
    assert _losses(warm) == _losses(cold) and len(warm["curve"]) == 2


def test_each_task_and_method_is_warmed_up_once_before_its_first_timed_run(
        tiny_suite_file: Path, tmp_path: Path, monkeypatch) -> None:
    from stochopt_bench import runner

    events: list[tuple] = []
    real_warm_up, real_run_one = runner.warm_up, runner.run_one

    def warm_up(spec, method, seed):
        events.append(("warm", spec.label, method.label, seed))
        real_warm_up(spec, method, seed)

    def timed(spec, method, seed, on_step=None):
        events.append(("run", spec.label, method.label, seed))
        return real_run_one(spec, method, seed, on_step)

    monkeypatch.setattr(runner, "warm_up", warm_up)
    monkeypatch.setattr(runner, "run_one", timed)
    suite = load_suite(str(tiny_suite_file)).runs()
    runner.run_suite(load_suite(str(tiny_suite_file)), tmp_path)
    expected = []
    for spec, method, seed in suite:
        if seed == 0:
            expected.append(("warm", spec.label, method.label, 0))
        expected.append(("run", spec.label, method.label, seed))
    assert events == expected
    events.clear()
    runner.run_suite(load_suite(str(tiny_suite_file)), tmp_path)  # resumed: nothing to warm
    assert events == []
