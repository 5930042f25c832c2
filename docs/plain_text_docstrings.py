"""Griffe extension: show trainer.functional's plain-text derivations, their formulas typeset.

The docstrings of ``trainer.functional`` are plain text: formulas in Unicode, aligned in
indented blocks under lines such as "Backward, with g = ∂L/∂y:". Read as Markdown, those
blocks would be folded into the paragraph above them and lose their line breaks. So, per
paragraph (lines between blank lines):

- a paragraph with an indented line, or the first paragraph of a class (by the project's
  convention the forward formula), is a derivation. Its formula lines (the indented ones,
  and those of a class's first paragraph that do not read as prose) become display math,
  through ``unicode_math.to_latex``: consecutive ones one display, aligned at their first
  "=" and in the columns the source lines them up in; a more indented line without its own
  "=" continues the formula above it. Its other lines stay prose. A formula the converter
  cannot take stays preformatted, line for line, as does a derivation with no formula it
  can take;
- any other paragraph becomes Markdown prose: its ``code`` stays code, Sphinx roles
  (:func:`x`) become code, and ``*`` and ``_`` are plain characters, as in "x: (*, in)".

A docstring with a ``$`` is taken to be Markdown with LaTeX math already and left alone.
Loaded by mkdocstrings (see mkdocs.yml); ``docs/check_math.py`` checks every formula with
the vendored KaTeX.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import griffe

sys.path.insert(0, str(Path(__file__).resolve().parent))  # mkdocstrings loads this by path
from unicode_math import (is_paired, is_prose, split_prose_tail, split_relation,  # noqa: E402
                          to_latex)

SCOPE = "trainer.functional"
SPHINX_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`~?([^`]+)`")
CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)")  # the capture keeps them in re.split's result
SEGMENT = re.compile(r"\S(?:\S| {1,2}(?=\S))*")  # a line's formulas: runs of 3+ spaces apart
HPHANTOM_RELATION = r"\hphantom{{}={}}"  # a continued right-hand side, under the one above
# Formulas shown as written, though they convert: the text of a line of each. Their layout
# is a table whose columns the display would lose.
AS_WRITTEN = ["(k,)    · (k,)", "(n, k)  · (k,)", "(k,)    · (k, m)",  # matmul's ranks
              "(*a, n, k) · (*b, k, m)"]


def is_preformatted(paragraph: list[str], first_of_class: bool) -> bool:
    return first_of_class or any(line.startswith((" ", "\t")) for line in paragraph)


def as_prose(paragraph: str) -> str:
    parts = CODE_SPAN.split(SPHINX_ROLE.sub(r"`\1`", paragraph))
    return "".join(part if CODE_SPAN.fullmatch(part) else re.sub(r"([*_])", r"\\\1", part)
                   for part in parts)


def ends_in_prose(line: str) -> bool:
    """The line's sentence goes on: it ends with a word of prose ("... over h ∈ [...) and")."""
    latex = to_latex(line, whole=False) or ""
    return latex.endswith("}") and bool(re.search(r"\\text\{[^{}]*[a-z]\}$", latex))


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def segments(line: str) -> list[tuple[int, str]]:
    """A line's pieces (column, text): runs of 3+ spaces apart, but "dP̃     = g Vᵀ" one."""
    out: list[tuple[int, str]] = []
    for match in SEGMENT.finditer(line):
        if out and (re.match(r"(?:=:|:=|\+=|=|←) ", match[0])
                    or re.fullmatch(r"[\w'-]+:", out[-1][1])):  # "constant:   y[j] = ..."
            out[-1] = (out[-1][0], out[-1][1] + " " + match[0])
        else:
            out.append((match.start(), match[0]))
    return out


def formula_rows(lines: list[str]) -> list[list[tuple[int, str]]] | None:
    """One formula (its line and the lines continuing it) as rows of cells (column, LaTeX):
    column -1 for the left-hand side, 0 for the right-hand side (from its relation on),
    else the column the source starts a further piece at. None if a piece does not convert
    or the formula's brackets do not pair."""
    if not is_paired("\n".join(lines)) or any(
            text in line for line in lines for text in AS_WRITTEN):
        return None
    rows, columns = [], set()
    for number, line in enumerate(lines):
        cells = []
        for index, (column, text) in enumerate(segments(line)):
            split = split_relation(text) if index == 0 and number == 0 else None
            if split:
                parts = [(-1, split[0]), (0, split[1])]
            elif index == 0 and not any(abs(column - c) <= 2 for c in columns):
                parts = [(0, text)]  # a head without a relation, or a continued right side
            else:
                parts = [(column, text)]
                columns.add(column)
            for where, part in parts:
                latex = to_latex(part, whole=False)
                if latex is None:
                    return None
                cells.append((where, latex))
        rows.append(cells)
    return rows


def display(formulas: list[list[list[tuple[int, str]]]]) -> str:
    """Consecutive formulas as one display: a line alone as itself, its pieces \\qquad apart;
    several lines in an aligned environment, at their relations and in the further columns
    that two lines or more share in the source (a piece in a column of its own follows the
    one before it, \\qquad apart)."""
    rows = [row for formula in formulas for row in formula]
    starts = sorted(where for row in rows for where, _ in row if where > 0)
    columns: list[int] = []  # two characters either way are one column
    for where in starts:
        if not columns or where > columns[-1] + 2:
            columns.append(where)
    shared = [c for c in columns if sum(c <= w <= c + 2 for w in starts) > 1]
    lines = []
    for row in rows:
        cells = ["", ""] + ["", ""] * len(shared)
        last = 1
        for where, latex in row:
            if where <= 0:
                last = where + 1
            elif any(c <= where <= c + 2 for c in shared):
                last = 3 + 2 * next(k for k, c in enumerate(shared) if c <= where <= c + 2)
            elif cells[last]:
                latex = rf"{cells[last]} \qquad {latex}"
            cells[last] = latex
        if not cells[0] and cells[1] and not cells[1].startswith(("=", r"\leftarrow", r"\mathrel")):
            cells[1] = f"{HPHANTOM_RELATION} {cells[1]}"
        while len(cells) > 2 and not cells[-1]:
            cells.pop()
        lines.append(" & ".join(cells))
    if len(rows) == 1:
        return " ".join(cells[:2]).replace(HPHANTOM_RELATION, "").strip() + "".join(
            rf" \qquad {cell}" for cell in cells[2:] if cell)
    return r"\begin{aligned} " + r" \\ ".join(lines) + r" \end{aligned}"


def derivation(paragraph: list[str], first_of_class: bool) -> list[tuple[str, str, str]]:
    """A derivation paragraph as blocks (kind, text, source): ("prose", text, text),
    ("math", LaTeX, the lines it typesets) or ("pre", text, text)."""
    if any(re.match(r"\s*[*-] ", line) for line in paragraph):  # a list: not formulas
        return [("pre", "\n".join(paragraph), "\n".join(paragraph))]
    kinds: list[str] = []  # per line: "prose" or "formula"
    lines = list(paragraph)
    head, remark = 0, ""  # the indent of the formula being continued; an open remark
    for number, line in enumerate(lines):
        indented = line.startswith((" ", "\t"))
        introduces = line.endswith(":") and number + 1 < len(lines) and (
            indent(lines[number + 1]) > indent(line))  # "Backward, with g = ∂L/∂y:"
        continues = number and kinds[-1] == "formula" and (
            indented and indent(line) > head
            or first_of_class and not indented and ends_in_prose(lines[number - 1]))
        if remark or not indented and line.startswith("(") and split_relation(line) is None:
            remark += line + "\n"  # "(α = alpha, s = scale, ...)", on one line or more
            kinds.append("prose")
            remark = "" if is_paired(remark) else remark
            continue
        # a class's first paragraph: its forward formula, until an indented block; the
        # lines after that block read as the rest of a derivation's do
        forward = first_of_class and not any(l.startswith(" ") for l in lines[:number])
        kinds.append("formula" if (indented or forward) and not introduces
                     and (continues or not is_prose(line)) else "prose")
        head = head if continues else indent(line)
    for number in range(len(lines) - 1):  # a first line's sentence going on below it
        if not lines[number].startswith(" ") and kinds[number] == "formula" \
                and kinds[number + 1] == "prose" and not lines[number + 1].startswith(" "):
            split = split_prose_tail(lines[number])
            if split:
                lines[number] = split[0]
                lines[number + 1] = split[1] + " " + lines[number + 1]
            else:
                kinds[number] = "prose"
    blocks: list[tuple[str, Any]] = []  # prose lines, and formulas: [line, continuations]
    for line, kind in zip(lines, kinds):
        if kind == "prose":
            blocks.append(("prose", line))
        elif (blocks and blocks[-1][0] == "formula" and indent(line) > indent(blocks[-1][1][0])
              and (split_relation(line.strip()) is None
                   or not is_paired("\n".join(blocks[-1][1])))):
            blocks[-1][1].append(line)
        else:
            blocks.append(("formula", [line]))
    out: list[tuple[str, str]] = []
    for kind, value in blocks:
        if kind == "formula":
            rows = formula_rows(value)
            kind, value, source = ("math", [rows], value) if rows else ("pre", value, value)
        else:
            value, source = [value], [value]
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + value, out[-1][2] + source)
        else:
            out.append((kind, value, source))
    if not any(kind == "math" for kind, _, _ in out):
        text = "\n".join(paragraph)
        return [("prose" if all(kind == "prose" for kind, _, _ in out) else "pre", text, text)]
    return [(kind, display(value) if kind == "math" else "\n".join(value), "\n".join(source))
            for kind, value, source in out]


def as_markdown(docstring: str, is_class: bool) -> str:
    """The cleaned (dedented) plain-text ``docstring`` as Markdown, as the module says."""
    paragraphs: list[list[str]] = [[]]
    for line in docstring.splitlines():
        if line.strip():
            paragraphs[-1].append(line.rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    blocks = []
    for index, paragraph in enumerate(p for p in paragraphs if p):
        if not is_preformatted(paragraph, is_class and index == 0):
            blocks.append(as_prose("\n".join(paragraph)))
            continue
        for kind, text, _ in derivation(paragraph, is_class and index == 0):
            if kind == "math":
                blocks.append(f"$$\n{text}\n$$")
            elif kind == "pre":
                # attr_list classes on the fence: the stylesheet wraps these, not other code
                blocks.append("``` { .text .derivation }\n" + text + "\n```")
            else:
                blocks.append(as_prose(text))
    return "\n\n".join(blocks)


class PlainTextDerivations(griffe.Extension):
    """Rewrites the docstrings of trainer.functional's modules and classes on load."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if (docstring is None or not obj.path.startswith(SCOPE)
                or obj.kind not in (griffe.Kind.MODULE, griffe.Kind.CLASS)
                or "$" in docstring.value):
            return
        docstring.value = as_markdown(docstring.value, obj.kind is griffe.Kind.CLASS)
