"""The Unicode formulas of trainer.functional's docstrings, as LaTeX for KaTeX.

The docstrings stay plain text, read in the source as written ("∂L/∂x = rstd/D · (D·gγ −
Σ_d gγ − x̂·Σ_d(gγ·x̂))"); the site shows the same lines typeset. ``to_latex(formula)`` turns
one formula into LaTeX: symbols by table (∂ · ⊙ − × ≤ ∈ ⌊⌋ ...), Σ_d and Σ_{n,t} into
sums, √, ^(...), ᵀ, ², x̂ into their LaTeX forms, ∂L/∂x into a fraction, a word followed by
"(" into an operator, and the words of a formula ("(summed over rows)", "where x ≤ −3")
into text, with the punctuation and parentheses around them. It is conservative: brackets
that do not pair, a symbol, accent or code span it has no LaTeX for, give None, and the
caller shows the line as written. The words and symbols are in unicode_lexicon.py.
"""

from __future__ import annotations

import re

from unicode_lexicon import (ACCENTS, GREEK, ITALIC, NAMES, OPERATOR_NAMES, OPERATORS, PROSE,
                             SUBSCRIPT, SUPERSCRIPT, SYMBOLS, Unconvertible, decorate, letters,
                             operator, tex_text, tokenize)


class Converter:
    """One formula's tokens to pieces: ("m", LaTeX) or ("t", text, set as \\text)."""

    def __init__(self, tokens: list[tuple[str, str]], display: bool):
        self.tokens, self.display, self.i = tokens, display, 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else ("end", "")

    def group(self, close: str) -> str:
        """The tokens up to the ``close`` that pairs with the opening just read, as LaTeX."""
        depth, start = 0, self.i
        opening = {")": "(", "]": "[", "}": "{"}[close]
        while self.i < len(self.tokens):
            kind, text = self.tokens[self.i]
            if kind == "symbol" and text == opening:
                depth += 1
            elif kind == "symbol" and text == close:
                if depth == 0:
                    inner = Converter(self.tokens[start:self.i], self.display).latex()
                    self.i += 1
                    return inner
                depth -= 1
            self.i += 1
        raise Unconvertible(f"no {close!r} to close a group")

    def argument(self) -> str:
        """What a √ or ^ applies to: a (group), or one word or number (with its call)."""
        kind, text = self.peek()
        if kind == "symbol" and text == "(":
            self.i += 1
            return self.group(")")
        if kind in ("word", "number"):
            self.i += 1
            out = self.word(text)[1] if kind == "word" else self.number(text)
            if self.peek() == ("symbol", "("):
                self.i += 1
                out += f"({self.group(')')})"
            return out
        raise Unconvertible("√ or ^ with nothing to apply to")

    def subscript(self) -> str:
        kind, text = self.peek()
        if kind == "word" and text.startswith("_{"):
            raise Unconvertible("a subscript group without a base")
        self.i += 1
        if kind == "symbol" and text == "{":
            return self.group("}")
        if kind == "word":
            return self.word(text)[1] if len(text) == 1 else rf"\mathrm{{{tex_text(text)}}}"
        raise Unconvertible("an _ with nothing after it")

    def number(self, text: str) -> str:
        m = re.fullmatch(r"([\d.]+?)(?:e(-?\d+))?(\D*)", text)
        base = m[1] if not m[2] else ("10" if m[1] == "1" else rf"{m[1]} \cdot 10") + f"^{{{m[2]}}}"
        return decorate(base, m[3])

    def sub_part(self, part: str) -> str:
        if part.startswith("{"):
            return Converter(tokenize(part[1:-1]), self.display).latex()
        return letters(part) if len(part) == 1 else rf"\mathrm{{{tex_text(part)}}}"

    def word(self, text: str) -> tuple[str, str]:
        """A word's piece: math for a name or operator, text for a word of prose. A word
        followed by "(" is a function; an unknown word otherwise reads as prose."""
        m = re.fullmatch(r"(.*?)([ᵀᴴ⁰¹²³⁻ˣᵉ₀₁₂₃′]*)", text, re.S)
        name, rest = m[1], m[2]
        call = self.peek() == ("symbol", "(")
        if re.fullmatch(r"(?:\w\.)+\w?", name):  # e.g, i.e
            return ("t", name)
        if "." in name or name.startswith("_"):  # x.shape, fast.weight_grad, _fast: code
            return ("m", decorate(rf"\mathtt{{{tex_text(name)}}}", rest))
        if "-" in name:
            return ("t", text) if not rest else ("m", decorate(rf"\text{{{tex_text(name)}}}", rest))
        if name in OPERATORS or name in OPERATOR_NAMES and (call or rest):
            return ("m", decorate(OPERATORS.get(name) or operator(name), rest))
        if name in NAMES:
            return ("m", decorate(rf"\mathrm{{{tex_text(name)}}}", rest))
        core, _, tail = name.partition("_")
        parts = re.findall(r"\{[^}]*\}|[^_]+", tail) if tail else []
        if call and not parts and len(core) > 1 and core.isascii() and core.isalpha():
            return ("m", decorate(operator(core), rest))  # CE(x), Bernoulli(1 − p)
        if parts and len(core) > 1 and any(
                len(p) > 1 and p not in ("dim", "dims") and not p.startswith("{") for p in parts):
            whole = operator(name) if call else rf"\mathrm{{{tex_text(name)}}}"
            return ("m", decorate(whole, rest))  # a snake_case name: pos_weight, l1_loss
        if self.known_letters(core):
            base = letters(core)
        elif not parts and not rest and core.isalpha():
            return ("m", operator(name)) if call else ("t", name)
        elif (core in OPERATORS or core in OPERATOR_NAMES) and len(parts) == 1 and (
                len(parts[0]) == 1 or parts[0] in ("dim", "dims")):  # mean_d, max_dims
            base = OPERATORS.get(core) or operator(core)
        else:
            base = rf"\mathrm{{{tex_text(core)}}}"
        if re.search(r"_\{\d+\}$", base) and parts:  # h0_i → h_{0,i}
            base, digits = base.rsplit("_", 1)
            parts = [digits[1:-1] + "," + self.sub_part(parts[0])] + parts[1:]
            sub = ",".join(parts)
        else:
            sub = ",".join(self.sub_part(p) for p in parts)
        out = base + (f"_{{{sub}}}" if sub else "")
        return ("m", decorate(out, rest))

    @staticmethod
    def known_letters(core: str) -> bool:
        """Short names set as letters side by side: dS, KW, sH, gγ, δh, x̂, h0."""
        plain = "".join(c for c in core if c not in ACCENTS)
        if core in ITALIC or len(plain) == 1 or re.fullmatch(r"[^\W\d_]\d+", plain):
            return True
        return (len(plain) <= 3 and plain.lower() not in PROSE and plain not in NAMES
                and (any(c in GREEK for c in plain) or not plain.isupper() and not
                     plain.islower() or plain.isupper() and len(plain) == 2))

    def pieces(self) -> list[tuple[str, str]]:
        out = self.raw_pieces()
        words = [j for j, piece in enumerate(out) if piece[0] != "s"
                 and piece[1] not in (",", ";", r"\colon")]
        for k, j in enumerate(words):  # "at a NaN x", "a scatter of": the article
            before = out[words[k - 1]][0] if k else "t"
            after = out[words[k + 1]][0] if k + 1 < len(words) else None
            if out[j] == ("m", "a") and before == "t" and after == "t":
                out[j] = ("t", "a")
        return out

    def raw_pieces(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while self.i < len(self.tokens):
            kind, text = self.tokens[self.i]
            self.i += 1
            if kind == "space":
                wide = len(text) > 1 and out and out[-1] in (("m", ","), ("m", ";"))
                out.append(("m", r"\quad") if wide else ("s", " "))  # "β,  x̂ = ..."
            elif kind == "number":
                out.append(("m", self.number(text)))
            elif kind == "string":
                out.append(("t", f"`{text[1:-1]}'"))  # typeset as ‘none’
            elif kind == "code":
                out.append(("c", text))
            elif kind == "possessive":
                out.append(("t", "'s"))
            elif kind == "word":
                piece = self.word(text)
                if self.peek() == ("symbol", "=") and (
                        self.peek(1)[0] in ("word", "number", "string")):  # stride=s
                    piece = ("m", rf"\mathrm{{{tex_text(text)}}}{{=}}")
                    self.i += 1
                out.append(piece)
                if piece[0] == "m" and self.peek() == ("symbol", "("):
                    self.i += 1
                    out.append(("m", "{(}"))  # a call's parenthesis: never a remark's
            elif text == "∂" and self.fraction(out):
                pass
            elif text in SUPERSCRIPT or text[0] in SUPERSCRIPT or text[0] in SUBSCRIPT \
                    or text[0] == "′":
                alone = not out or out[-1][0] == "s"
                out.append(("m", decorate("{}" if alone else "", text)))
            elif text == "^":
                out.append(("m", f"^{{{self.argument()}}}"))
            elif text == "√":
                out.append(("m", rf"\sqrt{{{self.argument()}}}"))
            elif text == "_":
                out.append(("m", f"_{{{self.subscript()}}}"))
            elif text in ("Σ", "∏", "Π") and self.peek() == ("symbol", "_"):
                self.i += 1
                out.append(("m", f"{SYMBOLS[text]}_{{{self.subscript()}}}"))
            elif text in GREEK:
                out.append(("m", GREEK[text]))
            elif text in SYMBOLS:
                out.append(("m", SYMBOLS[text]))
            else:
                raise Unconvertible(f"no LaTeX for {text!r}")
        return out

    def fraction(self, out: list) -> bool:
        """∂A/∂B (or ∂/∂B), its index with it, as a fraction in display math."""
        k = self.i
        num = ""
        if self.peek()[0] == "word":
            num, k = self.word(self.peek()[1])[1], k + 1
        if self.tokens[k:k + 2] != [("symbol", "/"), ("symbol", "∂")] or \
                k + 2 >= len(self.tokens) or self.tokens[k + 2][0] != "word":
            return False
        self.i = k + 3
        den = self.word(self.tokens[k + 2][1])[1]
        if self.peek() == ("symbol", "["):
            self.i += 1
            den += f"[{self.group(']')}]"
        num_tex = rf"\partial {num}".strip()
        first = all(kind != "m" or tex in (",", r"\colon") for kind, tex in out)  # a left side
        out.append(("m", rf"\frac{{{num_tex}}}{{\partial {den}}}" if self.display and first
                    else rf"{num_tex}/\partial {den}"))
        return True

    def latex(self) -> str:
        return render(self.pieces())


def render(pieces: list[tuple[str, str]]) -> str:
    """Math pieces joined; each run of text (with the spaces and punctuation around it)
    in one \\text{...}."""
    kinds = [kind for kind, _ in pieces]

    def beside(j: int, step: int) -> str | None:
        j += step
        while 0 <= j < len(kinds) and kinds[j] == "s":
            j += step
        return kinds[j] if 0 <= j < len(kinds) else None

    opened = []  # parentheses whose inside starts and ends with words are a remark in words
    for j, (kind, tex) in enumerate(pieces):
        if kind == "m" and tex in ("(", "{(}"):
            opened.append(j)
        elif kind == "m" and tex == ")" and opened and pieces[opened[-1]][1] == "{(}":
            opened.pop()
        elif kind == "m" and tex == ")" and opened:
            start = opened.pop()
            if beside(start, 1) in ("t", "c") and beside(j, -1) in ("t", "c"):
                kinds[start] = kinds[j] = "t"
    for j, (kind, tex) in enumerate(pieces):  # and punctuation after words
        if kind == "m" and tex in (",", ";", r"\colon", ".") and beside(j, -1) in ("t", "c"):
            kinds[j] = "t"
    out: list[str] = []
    text, space = None, False
    for kind, (_, tex) in zip(kinds, pieces):
        if kind == "s":
            text, space = (text + " ", False) if text is not None else (None, True)
            continue
        if kind in ("t", "c"):
            text = (text if text is not None else (" " if space and out else ""))
            text += (rf"\texttt{{{tex_text(tex)}}}" if kind == "c"
                     else tex_text({"\\colon": ":"}.get(tex, tex)))
        else:
            if text is not None:
                out.append(rf"\text{{{text}}}")
                text = None
            out.append(tex)
        space = False
    if text is not None and text.strip():
        out.append(rf"\text{{{text.rstrip()}}}")
    return " ".join(out)


def paired(tokens: list[tuple[str, str]]) -> bool:
    """Brackets close in order; [a, b) is an interval, so ( and [ close each other."""
    depth = 0
    for kind, text in tokens:
        depth += kind == "symbol" and text in "([{⌊⌈"
        depth -= kind == "symbol" and text in ")]}⌋⌉"
        if depth < 0:
            return False
    return depth == 0


def to_latex(formula: str, display: bool = True, whole: bool = True) -> str | None:
    """``formula`` (in the Unicode notation) as LaTeX, or None. ``whole=False``: a piece
    of a formula that goes on over several lines, whose brackets need not pair."""
    try:
        tokens = tokenize(formula.strip())
        return Converter(tokens, display).latex() if not whole or paired(tokens) else None
    except Unconvertible:
        return None
