"""Entry points whose arguments differ from their rule's functional: each adapter takes the
torch callable's own arguments and calls the rule, or returns NotImplemented for a call the
rule cannot take (then it runs natively, and ``trainer.explicit`` counts it a fallback).

Used by the table's ``adapters`` (:class:`trainer.rules.rule.Rule`).
"""

from __future__ import annotations

from trainer import functional as F


def softmax_from_torch(input, dim=None, dtype=None, **options):
    """``torch.softmax(input, dim, dtype=None)`` and ``Tensor.softmax(dim, dtype=None)``:
    the functional's third positional argument is ``_stacklevel``, not ``dtype``."""
    if options or dim is None:
        return NotImplemented
    return F.softmax(input, dim, dtype=dtype)


def log_softmax_from_torch(input, dim=None, dtype=None, **options):
    """``torch.log_softmax`` and ``Tensor.log_softmax``, as :func:`softmax_from_torch`."""
    if options or dim is None:
        return NotImplemented
    return F.log_softmax(input, dim, dtype=dtype)
