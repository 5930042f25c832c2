"""Griffe extension: show trainer.functional's plain-text derivations, their formulas typeset.

The docstrings of ``trainer.functional`` are plain text: formulas in Unicode, aligned in
indented blocks under lines such as "Backward, with g = ∂L/∂y:". Read as Markdown, those
blocks would be folded into the paragraph above them and lose their line breaks. So, per
paragraph (lines between blank lines):

- a paragraph with an indented line, or the first paragraph of a class (by the project's
  convention the forward formula), is a derivation. Its formula lines become display
  math ($$...$$, which pymdownx.arithmatex hands to KaTeX), consecutive ones one display
  aligned as in the source, and its other lines stay prose (derivation_layout.py says
  which is which, unicode_math.py converts). A formula the converter cannot take stays
  preformatted, line for line, as does a derivation with no formula it can take;
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
from derivation_layout import derivation, is_preformatted  # noqa: E402

SCOPE = "trainer.functional"
SPHINX_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`~?([^`]+)`")
CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)")  # the capture keeps them in re.split's result


def as_prose(paragraph: str) -> str:
    parts = CODE_SPAN.split(SPHINX_ROLE.sub(r"`\1`", paragraph))
    return "".join(part if CODE_SPAN.fullmatch(part) else re.sub(r"([*_])", r"\\\1", part)
                   for part in parts)


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
