"""The table of rules, section: the activations beyond the first eight (see :mod:`trainer.rules`)."""

from __future__ import annotations

from trainer.rules.rule import Rule

RULES: tuple[Rule, ...] = ()
