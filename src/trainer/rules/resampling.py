"""The table of rules, section: padding and adaptive pooling (see :mod:`trainer.rules`)."""

from __future__ import annotations

from trainer.rules.rule import Rule

RULES: tuple[Rule, ...] = ()
