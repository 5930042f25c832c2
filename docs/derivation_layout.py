"""How a derivation paragraph of a plain-text docstring is laid out: which lines are
formulas, which prose, and the formulas as LaTeX displays (see plain_text_docstrings.py).

A formula line is indented, or, in a class's first paragraph (its forward formula), not yet
past an indented block; a line that opens with a word of prose ("Backward, with ...", "the
rows each ...") or introduces an indented block (ends with ":") is prose. A more indented
line without its own relation, or inside a bracket left open, continues the formula above
it. A line's pieces are runs of 3+ spaces apart; a display aligns its lines at their first
relation (=, ←, +=) and in the further columns that two lines or more share in the source.
"""

from __future__ import annotations

import re
from typing import Any

from unicode_lexicon import RELATIONS, Unconvertible, tokenize
from unicode_math import Converter, paired, to_latex

SEGMENT = re.compile(r"\S(?:\S| {1,2}(?=\S))*")  # a line's formulas: runs of 3+ spaces apart
HPHANTOM_RELATION = r"\hphantom{{}={}}"  # a continued right-hand side, under the one above
# Formulas shown as written, though they convert: the text of a line of each. Their layout
# is a table whose columns the display would lose.
AS_WRITTEN = ["(k,)    · (k,)", "(n, k)  · (k,)", "(k,)    · (k, m)",  # matmul's ranks
              "(*a, n, k) · (*b, k, m)"]


def is_paired(formula: str) -> bool:
    try:
        return paired(tokenize(formula))
    except Unconvertible:
        return False


def split_relation(formula: str) -> tuple[str, str] | None:
    """``formula`` cut before its first relation (=, ←, +=) outside brackets and with a
    space before it (not stride=s), for aligning lines at it; None without one."""
    try:
        tokens = tokenize(formula)
    except Unconvertible:
        return None
    depth = 0
    for j, (kind, text) in enumerate(tokens):
        depth += kind == "symbol" and text in "([{⌊⌈"
        depth -= kind == "symbol" and text in ")]}⌋⌉"
        if (depth == 0 and kind == "symbol" and text in RELATIONS and j
                and tokens[j - 1][0] == "space"):
            return ("".join(t for _, t in tokens[:j]).rstrip(), "".join(t for _, t in tokens[j:]))
    return None


def is_prose(line: str) -> bool:
    """A line of prose, not a formula: it opens with a word that reads as prose ("the",
    "Softmax cross entropy ...", "LSTM over ...", not "mean(x)", "loss_i =" nor a label
    "constant:") or with a string that a word follows ('mean' divides ...)."""
    try:
        tokens = [t for t in tokenize(line) if t != ("symbol", "(")]
    except Unconvertible:
        return False
    while tokens and tokens[0][0] == "space":
        tokens.pop(0)
    if not tokens:
        return True
    kind, text = tokens[0]
    after = tokens[1:3]
    if kind == "string":
        return len(after) == 2 and after[0][0] == "space" and after[1][0] == "word"
    if kind == "word" and after[:1] == [("symbol", "=")] and len(tokens) > 3 and (
            tokens[2][0] in ("word", "number", "string")):  # "ignore_index=None says ..."
        return is_prose("".join(text for _, text in tokens[3:]))
    if kind == "word" and re.fullmatch(r"[A-Z][a-z]+|[A-Z]{3,}\w*", text):
        return True  # "Outputs: ...", "LSTM over ..."
    if kind != "word" or after and after[0][0] == "symbol" and after[0][1] in (":", "=", "("):
        return False
    return Converter(tokens[:1], True).pieces()[0][0] == "t"


def split_prose_tail(line: str) -> tuple[str, str] | None:
    """``line`` cut before its first ", <word of prose>" outside brackets that follows a
    relation: a formula whose sentence goes on in the next line of prose."""
    try:
        tokens = tokenize(line)
    except Unconvertible:
        return None
    depth, seen_relation = 0, False
    for j, (kind, text) in enumerate(tokens):
        depth += kind == "symbol" and text in "([{⌊⌈"
        depth -= kind == "symbol" and text in ")]}⌋⌉"
        seen_relation |= depth == 0 and kind == "symbol" and text in RELATIONS
        rest = tokens[j + 1:j + 3]
        if (depth == 0 and seen_relation and text == "," and len(rest) == 2
                and rest[0][0] == "space" and is_prose("".join(t for _, t in tokens[j + 1:]))):
            return "".join(t for _, t in tokens[:j]), "".join(t for _, t in tokens[j + 1:]).strip()
    return None


def is_preformatted(paragraph: list[str], first_of_class: bool) -> bool:
    """A derivation: a paragraph with an indented line, or a class's first paragraph."""
    return first_of_class or any(line.startswith((" ", "\t")) for line in paragraph)


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
    return r"\begin{aligned} " + r" \\[2pt] ".join(lines) + r" \end{aligned}"


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
            blocks.append(("prose", line.strip()))
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
        if out and out[-1][0] == kind and not (kind == "prose" and out[-1][1][-1].endswith(":")):
            out[-1] = (kind, out[-1][1] + value, out[-1][2] + source)  # one paragraph
        else:
            out.append((kind, value, source))
    if not any(kind == "math" for kind, _, _ in out):
        text = "\n".join(paragraph)
        return [("prose" if all(kind == "prose" for kind, _, _ in out) else "pre", text, text)]
    return [(kind, display(value) if kind == "math" else "\n".join(value), "\n".join(source))
            for kind, value, source in out]
