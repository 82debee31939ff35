"""A griffe extension for the API reference: the docstrings' reStructuredText roles as Markdown.

stochopt's docstrings are Google style with Sphinx roles (``:math:`\\alpha```, ``.. math::``
blocks, ``:class:`GP```). Before mkdocstrings parses them, this rewrites the math for
``pymdownx.arithmatex`` (``\\(...\\)`` inline, ``$$...$$`` blocks) and the cross-reference
roles as inline code, so that nothing renders as a literal role; an ``Example:`` section becomes
griffe's ``Examples:`` (its ``>>>`` lines rendered as code), a literal block's ``::`` a colon,
and an ``Args:`` entry that documents several parameters at once (``x0, y0: ...``) one entry
per parameter. It changes only the text the site shows, never the source.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_INLINE_MATH = re.compile(r":math:`([^`]+)`")
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")


def _math_blocks(text: str) -> str:
    """Each ``.. math::`` directive and its indented body as a ``$$`` block."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if not stripped.startswith(".. math::"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        body = [stripped[len(".. math::"):].strip()] if stripped[len(".. math::"):].strip() else []
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        body += textwrap.dedent("\n".join(block)).split("\n")
        body = [b for b in body if b.strip()]  # a blank line would end arithmatex's block
        joined = "\n".join(body)
        if ("&" in joined or "\\\\" in joined) and "\\begin{" not in joined:
            # Sphinx aligns a multi-line directive by itself; MathJax needs the environment
            body = ["\\begin{aligned}", *body, "\\end{aligned}"]
        out += ["", f"{indent}$$"] + [f"{indent}{b}" for b in body] + [f"{indent}$$", ""]
    return "\n".join(out)


_GROUPED_ARG = re.compile(r"^(\s+)(\*{0,2}\w+(?:, \*{0,2}\w+)+): (.*)$")


def _split_grouped_args(text: str) -> str:
    """``a, b: description`` (with its continuation lines) as one entry for each name."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _GROUPED_ARG.match(lines[i])
        i += 1
        if match is None:
            out.append(lines[i - 1])
            continue
        indent, names, first = match.groups()
        rest: list[str] = []
        while i < len(lines) and len(lines[i]) - len(lines[i].lstrip()) > len(indent):
            rest.append(lines[i])
            i += 1
        for name in names.split(", "):
            out += [f"{indent}{name}: {first}", *rest]
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with its math and cross-reference roles in Markdown."""
    text = _math_blocks(text)
    text = re.sub(r"^(\s*)Example:$", r"\1Examples:", text, flags=re.MULTILINE)
    text = re.sub(r"(\S)::$", r"\1:", text, flags=re.MULTILINE)
    text = _split_grouped_args(text)
    # MathJax's \text{} is plain text: LaTeX's escaped underscore would show its backslash
    text = re.sub(r"\\text\{([^{}]*)\}", lambda m: m.group(0).replace("\\_", "_"), text)
    text = _INLINE_MATH.sub(lambda m: rf"\({m.group(1)}\)", text)
    return _ROLE.sub(lambda m: f"`{m.group(1).removesuffix('()')}`", text)


class RstRoles(griffe.Extension):
    """Rewrites every docstring's reStructuredText roles when its object is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
