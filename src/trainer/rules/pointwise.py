"""The table of rules, section: pointwise arithmetic and math (see :mod:`trainer.rules`)."""

from __future__ import annotations

from trainer.rules.rule import Rule

RULES: tuple[Rule, ...] = ()
