"""The table of rules, section: transposed convolution, interpolation, adaptive max pooling, pixel shuffle (see :mod:`trainer.rules`)."""

from __future__ import annotations

from trainer.rules.rule import Rule

RULES: tuple[Rule, ...] = ()
