"""The table of rules, section: RMS and group norms (see :mod:`trainer.rules`)."""

from __future__ import annotations

from trainer.rules.rule import Rule

RULES: tuple[Rule, ...] = ()
