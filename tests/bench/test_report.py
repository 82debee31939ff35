"""Reports: aggregated rows, markdown and figures from run records."""

from __future__ import annotations

from pathlib import Path

from stochopt_bench.report import summarize, write_report
from stochopt_bench.runner import run_suite
from stochopt_bench.suite import load_suite


def test_report_from_records(tiny_suite_file: Path, tmp_path: Path) -> None:
    records = run_suite(load_suite(str(tiny_suite_file)), tmp_path)
    rows = summarize(records)
    assert list(rows) == ["rosenbrock", "breast-cancer-logreg"]
    adamw = rows["rosenbrock"][0]
    finals = [r["summary"]["final"] for r in records
              if r["task"] == "rosenbrock" and r["method"]["label"] == "adamw"]
    assert adamw.seeds == 2 and adamw.final_mean == sum(finals) / 2
    assert adamw.state_bytes_per_param == 18.0
    logreg = rows["breast-cancer-logreg"][1]
    assert logreg.metric == "val_accuracy" and logreg.higher_is_better

    path = write_report(tmp_path)
    text = path.read_text()
    assert "## rosenbrock" in text and "## breast-cancer-logreg" in text
    assert "| adamw | AdamW |" in text and "torch.Adam" in text
    for task in rows:
        png = tmp_path / f"{task}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({task}.png)" in text
