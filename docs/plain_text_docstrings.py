"""Griffe extension: show trainer.functional's plain-text derivations as they are written.

The docstrings of ``trainer.functional`` are plain text: formulas in Unicode, aligned in
indented blocks under lines such as "Backward, with g = ∂L/∂y:". Read as Markdown, those
blocks would be folded into the paragraph above them and lose their line breaks. So, per
paragraph (lines between blank lines):

- a paragraph with an indented line, or the first paragraph of a class (by the project's
  convention the forward formula), becomes a preformatted block, kept line for line;
- any other paragraph becomes Markdown prose: its ``code`` stays code, Sphinx roles
  (:func:`x`) become code, and ``*`` and ``_`` are plain characters, as in "x: (*, in)".

A docstring with a ``$`` is taken to be Markdown with LaTeX math already and left alone, so
docstrings can move to LaTeX one at a time. Loaded by mkdocstrings (see mkdocs.yml).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

SCOPE = "trainer.functional"
SPHINX_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):`~?([^`]+)`")
CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)")  # the capture keeps them in re.split's result


def is_preformatted(paragraph: list[str], first_of_class: bool) -> bool:
    return first_of_class or any(line.startswith((" ", "\t")) for line in paragraph)


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
        if is_preformatted(paragraph, is_class and index == 0):
            # attr_list classes on the fence: the stylesheet wraps these, not other code
            blocks.append("``` { .text .derivation }\n" + "\n".join(paragraph) + "\n```")
        else:
            blocks.append(as_prose("\n".join(paragraph)))
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
