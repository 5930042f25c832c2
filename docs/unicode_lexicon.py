"""The words and symbols of the docstrings' formula notation, for unicode_math.py: each
character's LaTeX, the words set as operators, names or prose, and the tokenizer.

New notation in a docstring is taught here: ``python docs/check_math.py`` lists the
formulas that fall back to plain text and any LaTeX that KaTeX refuses.
"""

from __future__ import annotations

import re

GREEK = {"α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "ε": r"\varepsilon",
         "θ": r"\theta", "λ": r"\lambda", "μ": r"\mu", "π": r"\pi", "ρ": r"\rho",
         "σ": r"\sigma", "τ": r"\tau", "φ": r"\varphi", "ψ": r"\psi", "ω": r"\omega",
         "Φ": r"\Phi", "Δ": r"\Delta", "Ω": r"\Omega", "ℓ": r"\ell"}
SYMBOLS = {"·": r"\cdot", "×": r"\times", "⊙": r"\odot", "⊗": r"\otimes", "−": "-", "-": "-",
           "+": "+", "±": r"\pm", "=": "=", "≠": r"\ne", "≤": r"\le", "≥": r"\ge", "<": "<",
           ">": ">", "←": r"\leftarrow", "→": r"\to", "->": r"\to", "⇔": r"\Leftrightarrow",
           "∈": r"\in", "∨": r"\lor", "∧": r"\land", "¬": r"\lnot", "∞": r"\infty",
           "…": r"\ldots", "..": r"\ldots", "~": r"\sim", "∂": r"\partial", "½": r"\tfrac{1}{2}",
           "‖": r"\Vert", "|": r"\vert", "⌊": r"\lfloor", "⌋": r"\rfloor", "⌈": r"\lceil",
           "⌉": r"\rceil", "⟨": r"\langle", "⟩": r"\rangle", "%": r"\bmod", "//": r"\mathbin{//}",
           "@": r"\mathbin{@}", "+=": r"\mathrel{+}=", ":=": r"\coloneqq", "=:": r"\eqqcolon",
           "#": r"\#", "{": r"\{", "}": r"\}", "(": "(", ")": ")", "[": "[", "]": "]",
           ",": ",", ";": ";", ":": r"\colon", "/": "/", "*": "*", ".": ".", "!": "!",
           "Σ": r"\sum", "∏": r"\prod", "Π": r"\prod", "√": r"\sqrt"}
SUPERSCRIPT = {"ᵀ": r"\top", "ᴴ": r"\mathsf{H}", "⁰": "0", "¹": "1", "²": "2", "³": "3",
               "⁻": "-", "ˣ": "x", "ᵉ": "e"}
SUBSCRIPT = {"₀": "0", "₁": "1", "₂": "2", "₃": "3"}
ACCENTS = {"\u0302": r"\hat", "\u0303": r"\tilde", "\u0304": r"\bar", "\u0305": r"\bar"}
PRECOMPOSED = {"ā": "a\u0304", "ȳ": "y\u0304", "ē": "e\u0304", "ō": "o\u0304"}
RELATIONS = {"=", "←", "+=", ":=", "=:"}
# Words, by how they are set. Any other multi-letter word reads as prose (as \text), or,
# followed by "(", as a function (as \operatorname).
OPERATORS = {"log": r"\log", "ln": r"\ln", "exp": r"\exp", "tanh": r"\tanh", "sin": r"\sin",
             "cos": r"\cos", "max": r"\max", "min": r"\min"}
OPERATOR_NAMES = set("""softmax log_softmax erf sgn sign conj diag onehot reshape scatter_add
    index_add expand restore flip cumsum cat clamp logit softplus gelu huber rowsum argmax
    argmin mean var where conv1d conv2d conv_transpose1d conv_transpose2d pixel_shuffle
    pixel_unshuffle count group pos src einsum reduce expm1 len sum_to_shape relu
    """.split())
NAMES = set("""rstd lse lo hi loss pre real momentum threshold margin correction scale
    min_val max_val log_target""".split())
# Short words of prose, which would otherwise pass for names like dS or Ev when capitalised.
PROSE = set("""a an and any are as at be but by for has if in is it its nan no nor not of on
    one or per so the to two via was""".split())
ITALIC = {"gn", "gh", "gnγ"}


class Unconvertible(ValueError):
    """A formula the tables do not cover: shown as written instead."""


def operator(name: str) -> str:
    return rf"\operatorname{{{tex_text(name)}}}"


def tex_text(text: str) -> str:
    return re.sub(r"([_#%&{}$])", r"\\\1", text)


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: space, word, number, string, possessive or symbol."""
    for composed, decomposed in PRECOMPOSED.items():
        text = text.replace(composed, decomposed)
    tokens, i, n = [], 0, len(text)

    def is_letter(ch: str) -> bool:
        return ch.isalpha() and ch not in SUPERSCRIPT and ch not in "ΣΠ"

    def is_core(ch: str) -> bool:
        return (ch.isalnum() and ch not in SUPERSCRIPT and ch not in SUBSCRIPT
                and ch not in "ΣΠ½") or ch in ACCENTS

    def decorations(j: int) -> int:
        while j < n and (text[j] in SUPERSCRIPT or text[j] in SUBSCRIPT or text[j] == "′"):
            j += 1
        return j

    while i < n:
        ch = text[i]
        if ch.isspace():
            j = i
            while j < n and text[j].isspace():
                j += 1
            tokens.append(("space", text[i:j]))
        elif is_letter(ch) or ch == "_" and i + 1 < n and is_letter(text[i + 1]) and (
                not i or text[i - 1] in " ("):  # a name, _gelu_pair and _CHUNK too
            j = i + (ch == "_")
            while j < n and is_core(text[j]):
                j += 1
            while j + 1 < n and (text[j] == "_" or text[j] in "-." and text[j + 1].isalpha()
                                 or text[j:j + 2] == "._"):
                if text[j:j + 2] == "._":  # trainer.functional._fast
                    j += 1
                elif text[j:j + 2] == "_{":  # h_{t−1}
                    close = text.find("}", j)
                    if close < 0:
                        raise Unconvertible("an unclosed _{")
                    j = close + 1
                elif is_core(text[j + 1]):  # W_ih, x-side, x.shape
                    j += 1
                    while j < n and is_core(text[j]):
                        j += 1
                else:
                    break
            j = decorations(j)
            tokens.append(("word", text[i:j]))
        elif ch in "0123456789":
            m = re.match(r"\d+(?:\.\d+)?(?:e-?\d+)?", text[i:])
            j = decorations(i + m.end())
            tokens.append(("number", text[i:j]))
        elif ch == "`":
            m = re.match(r"``(.+?)``|`([^`]+)`", text[i:])
            if not m:
                raise Unconvertible("an unclosed code span")
            j = i + m.end()
            tokens.append(("code", m[1] or m[2]))
        elif ch == "'" and i and text[i - 1].isalnum():
            if re.match(r"'s\b", text[i:]):
                j = i + 2
                tokens.append(("possessive", "'s"))
            else:
                j = i + 1
                tokens.append(("symbol", "′"))  # y' reads as y′
        elif ch == "'":
            j = text.find("'", i + 1) + 1
            if j == 0:
                raise Unconvertible("an unclosed quote")
            tokens.append(("string", text[i:j]))
        elif ch in SUPERSCRIPT or ch in SUBSCRIPT or ch == "′":
            j = decorations(i)
            tokens.append(("symbol", text[i:j]))
        else:
            two = text[i:i + 2]
            j = i + (2 if two in ("->", "+=", ":=", "=:", "//", "..") else 1)
            tokens.append(("symbol", text[i:j]))
        i = j
    return tokens


def decorate(base: str, rest: str) -> str:
    """``base`` with the primes, superscripts and subscripts written after it."""
    sup = "".join(SUPERSCRIPT[c] for c in rest if c in SUPERSCRIPT)
    sub = "".join(SUBSCRIPT[c] for c in rest if c in SUBSCRIPT)
    out = base + "'" * rest.count("′")
    out += f"_{{{sub}}}" if sub else ""
    return out + (f"^{{{sup}}}" if sup else "")


def letters(core: str) -> str:
    """Letters set side by side (x̂ → \\hat{x}, gγ → g\\gamma), digits after one letter as a
    subscript (h0 → h_0)."""
    m = re.fullmatch(r"(\D+?)(\d+)", core)
    if m and len(m[1]) == 1:
        return f"{letters(m[1])}_{{{m[2]}}}"
    out = []
    for ch in core:
        if ch in ACCENTS:
            if not out:
                raise Unconvertible(f"an accent with nothing under it in {core!r}")
            out[-1] = f"{ACCENTS[ch]}{{{out[-1]}}}"
        elif ch.isascii() and ch.isalnum():
            out.append(ch)
        elif ch in GREEK:
            out.append(GREEK[ch])
        else:
            raise Unconvertible(f"no LaTeX for {ch!r}")
    return " ".join(out)
