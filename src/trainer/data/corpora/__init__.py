"""Texts shipped inside the package, gzipped, so a language model trains with no download.

``corpus("shakespeare")``: about 1.1 million characters of dialogue from eight of
Shakespeare's plays (public domain, Project Gutenberg), in tiny-shakespeare's layout; how it
was made, and from what, is in :mod:`trainer.data.corpora.build_shakespeare`.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

#: Name -> the gzipped UTF-8 file beside this module.
CORPORA = {"shakespeare": "shakespeare.txt.gz"}


@functools.lru_cache(maxsize=None)
def corpus(name: str) -> str:
    """The shipped text ``name`` (one of :data:`CORPORA`) as one string."""
    if name not in CORPORA:
        raise ValueError(f"corpus: unknown text {name!r}; shipped: {', '.join(CORPORA)}")
    packed = resources.files(__name__).joinpath(CORPORA[name]).read_bytes()
    return gzip.decompress(packed).decode("utf-8")


__all__ = ["CORPORA", "corpus"]
