"""The library never imports the harness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import stochopt


def test_library_source_never_mentions_the_harness() -> None:
    root = Path(stochopt.__file__).parent
    offenders = [p for p in root.rglob("*.py") if "stochopt_bench" in p.read_text()]
    assert offenders == []


def test_importing_the_library_loads_no_harness_module() -> None:
    code = ("import sys, stochopt, stochopt.optim, stochopt.tasks; "
            "print([m for m in sys.modules if m.startswith('stochopt_bench')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
