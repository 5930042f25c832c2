"""The table of rules, section: reductions (see :mod:`trainer.rules`)."""

from __future__ import annotations

from trainer.rules.rule import Rule

RULES: tuple[Rule, ...] = ()
