"""The documentation site: every page's examples run, and ``mkdocs build --strict`` passes.

The page runner executes the ```` ```python ```` blocks of each page under ``docs/`` in order,
in one fresh namespace, in a temporary working directory, with the global seed fixed; blocks
fenced as ``bash``, ``console``, ``text`` (or anything else) are not run. A failing block is
reported with its page and line, and its traceback points at the page's own lines. Pages call
``torch.compile`` on the ``aot_eager`` backend here: the same graphs (and the same refusals)
without inductor's C compile, which would take most of a minute.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))

# Pages whose examples a test of their own runs (with its checks and warning filters), so the
# page runner leaves them to it: page -> that test file, which must name the page.
RUN_ELSEWHERE = {"guide/integrations.md": "tests/integrations/test_readme.py"}

_FENCE = re.compile(r"^(?P<indent> *)```+\s*(?P<lang>[\w-]*)")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```` ```python ```` blocks of a page: (line of the first code line, code)."""
    blocks: list[tuple[int, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        i += 1
        if opening is None:
            continue
        indent, start, body = opening["indent"], i + 1, []
        while i < len(lines) and not (lines[i].startswith(indent + "```")
                                      and not lines[i].strip().strip("`")):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"the code block opened at line {start - 1} is never closed")
        i += 1
        if opening["lang"] in ("python", "py"):
            blocks.append((start, "\n".join(body) + "\n"))
    return blocks


def test_python_blocks_are_found_with_their_lines() -> None:
    page = "text\n```python\na = 1\n```\n```bash\nmake test\n```\n  ```py\n  b = 2\n  ```\n"
    assert python_blocks(page) == [(3, "a = 1\n"), (9, "b = 2\n")]
    with pytest.raises(ValueError, match="line 2 is never closed"):
        python_blocks("\n```python\na = 1\n")


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if page in RUN_ELSEWHERE:
        runner = ROOT / RUN_ELSEWHERE[page]
        assert f"docs/{page}" in runner.read_text(), f"{runner} does not run docs/{page}"
        pytest.skip(f"run with its own checks by {RUN_ELSEWHERE[page]}")
    path = DOCS / page
    blocks = python_blocks(path.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch.manual_seed(0)
    torch._dynamo.reset()
    namespace: dict[str, object] = {"__name__": "__docs__"}
    failure = None
    try:
        for line, code in blocks:
            # padded so that tracebacks give the page's own line numbers
            compiled = compile("\n" * (line - 1) + code, str(path), "exec")
            try:
                exec(compiled, namespace)
            except Exception as error:
                frames = traceback.extract_tb(error.__traceback__)
                at = [frame.lineno for frame in frames if frame.filename == str(path)]
                detail = "".join(traceback.format_exception(error)[-6:])
                failure = (f"docs/{page}, line {at[-1] if at else line} (in the block at line "
                           f"{line}): {type(error).__name__}: {error}\n{detail}")
                break
    finally:
        torch._dynamo.reset()
    if failure is not None:
        pytest.fail(failure, pytrace=False)


# guide pages about the command line (their examples are ```bash blocks)
GUIDES_WITHOUT_EXAMPLES = {
    "guide/distributed.md", "guide/harness.md", "guide/suites.md", "guide/tuning.md",
}


def test_every_method_page_has_a_runnable_example() -> None:
    for page in PAGES:
        if page.startswith("guide/") and page not in GUIDES_WITHOUT_EXAMPLES:
            assert python_blocks((DOCS / page).read_text()), f"docs/{page} has no python block"
    assert python_blocks((DOCS / "getting-started.md").read_text())


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_use_only_public_names(page: str) -> None:
    for line, code in python_blocks((DOCS / page).read_text()):
        private = re.search(r"stochopt[\w.]*\._\w+", code)
        assert private is None, f"docs/{page}, block at line {line}: {private.group()} is private"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="mkdocs is not installed (it is in the docs extra: pip install -e "
                           "'.[docs]')")
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-5000:]
    assert (tmp_path / "reference" / "optim" / "index.html").is_file()
