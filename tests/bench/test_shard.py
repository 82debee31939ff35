"""Shards: a deterministic share of a suite's runs; every run in exactly one shard; a suite run
in shards and merged reports what the suite run whole does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stochopt_bench.cli import main
from stochopt_bench.shard import Shard, parse_shard
from stochopt_bench.suite import parse_suite
from tests.contract import raises_clearly

#: 2 tasks x 2 methods x 3 seeds, a few milliseconds a run
SHARDED = {
    "name": "sharded", "seeds": [0, 1, 2],
    "tasks": [{"name": "rosenbrock", "steps": 20}, {"name": "breast-cancer-logreg", "steps": 10}],
    "methods": {"adamw": {"optimizer": "AdamW", "lr": 0.01},
                "sgd": {"optimizer": "torch.SGD", "lr": 0.001, "momentum": 0.9}},
}


def _names(runs: list) -> list[tuple[str, str, int]]:
    return [(spec.label, method.label, seed) for spec, method, seed in runs]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 12, 13])
def test_every_run_is_in_exactly_one_shard_and_shards_are_balanced(count: int) -> None:
    runs = parse_suite(SHARDED).runs()
    shards = [_names(Shard(i, count).select(runs)) for i in range(1, count + 1)]
    flat = [run for shard in shards for run in shard]
    assert sorted(flat) == sorted(_names(runs)) and len(flat) == len(set(flat))
    sizes = [len(shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1


def test_shards_do_not_depend_on_the_order_of_the_suite_file() -> None:
    reordered = {**SHARDED, "seeds": [2, 0, 1], "tasks": SHARDED["tasks"][::-1],
                 "methods": dict(reversed(list(SHARDED["methods"].items())))}
    a, b = parse_suite(SHARDED).runs(), parse_suite(reordered).runs()
    for i in (1, 2, 3):
        assert sorted(_names(Shard(i, 3).select(a))) == sorted(_names(Shard(i, 3).select(b)))
    # by rank of (task, method, seed): breast-cancer-logreg/adamw/0 is first, so in shard 1
    assert ("breast-cancer-logreg", "adamw", 0) in _names(Shard(1, 3).select(a))


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "1-2", "a/b", "", "1/", "/2", "-1/2",
                                  "1.5/2", "2"])
def test_a_bad_shard_names_the_flag_the_value_and_the_rule(text: str) -> None:
    with raises_clearly("--shard", match=re.escape(repr(text)) + ".*1 <= i <= n"):
        parse_shard(text)


def test_shard_checks_its_fields() -> None:
    assert parse_shard(" 2/3 ") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"
    with raises_clearly("index"):
        Shard(True, 2)  # type: ignore[arg-type]
    with raises_clearly("Shard", match="3/2"):
        Shard(3, 2)


def _without_timings(report: str) -> str:
    """``report.md`` less what differs between two runs of the same records' configurations:
    the wall-clock columns (time to target, step time) and the merge note."""
    lines = []
    for line in re.sub(r"Merged from .*\n\n", "", report).splitlines():
        cells = line.split(" | ")
        if line.startswith("| ") and len(cells) == 8:  # a task's table: drop time and step
            line = " | ".join(cells[:5] + cells[7:])
        lines.append(line)
    return "\n".join(lines)


def _curves(directory: Path) -> dict[str, list]:
    import json

    return {p.name: [(q["step"], q["val_loss"], q["train_loss"])
                     for q in json.loads(p.read_text())["curve"]]
            for p in sorted((directory / "runs").glob("*.json"))}


def test_a_suite_run_in_two_shards_merges_into_the_report_of_the_whole(tmp_path: Path,
                                                                        capsys) -> None:
    suite_file = tmp_path / "sharded.toml"
    suite_file.write_text(_toml(SHARDED))
    whole, one, two, merged = (tmp_path / d for d in ("whole", "one", "two", "merged"))
    assert main(["bench", str(suite_file), "--out", str(whole)]) == 0
    assert main(["bench", str(suite_file), "--out", str(one), "--shard", "1/2"]) == 0
    assert main(["bench", str(suite_file), "--out", str(two), "--shard", "2/2"]) == 0
    printed = capsys.readouterr().out
    assert "6 of 12 runs (shard 1/2)" in printed and "6 of 12 runs (shard 2/2)" in printed
    assert len(_curves(one)) == len(_curves(two)) == 6
    assert {**_curves(one), **_curves(two)} == _curves(whole)  # same runs, same losses

    assert main(["report", str(one), str(two), "--out", str(merged)]) == 0
    assert capsys.readouterr().err == ""  # nothing missing, nothing damaged
    text = (merged / "report.md").read_text()
    assert f"Merged from 2 results directories: {one} (6 runs), {two} (6 runs)." in text
    assert _without_timings(text) == _without_timings((whole / "report.md").read_text())
    assert "| time to target (s) |" not in _without_timings(text) and "| adamw | AdamW |" in text
    assert sorted(p.name for p in merged.glob("*.png")) == ["breast-cancer-logreg.png",
                                                            "rosenbrock.png"]


def _toml(suite: dict) -> str:
    tasks = ", ".join(f'{{ name = "{t["name"]}", steps = {t["steps"]} }}' for t in suite["tasks"])
    lines = [f'name = "{suite["name"]}"', f"seeds = {suite['seeds']}", f"tasks = [{tasks}]"]
    for label, method in suite["methods"].items():
        lines.append(f"[methods.{label}]")
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in method.items()]
    return "\n".join(lines) + "\n"


def test_more_shards_than_runs_is_refused_before_anything_is_written(tmp_path: Path,
                                                                     capsys) -> None:
    suite_file = tmp_path / "sharded.toml"
    suite_file.write_text(_toml(SHARDED))
    out = tmp_path / "out"
    assert main(["bench", str(suite_file), "--out", str(out), "--shard", "13/13"]) == 2
    err = capsys.readouterr().err
    assert "--shard 13/13: suite sharded has 12 run(s)" in err and "at most 12" in err
    assert not out.exists()
