"""The table of rules, section: binary cross-entropy, L1, smooth L1, Huber, KL divergence, cosine embedding (see :mod:`trainer.rules`)."""

from __future__ import annotations

from trainer.rules.rule import Rule

RULES: tuple[Rule, ...] = ()
