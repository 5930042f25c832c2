"""Measured speed-only variants of the rules, each one named call away from the formula it
computes.

A rule's ``backward`` reads as its formula, out of place; where a first-order backward (no
graph recorded, ``not records_graph()``) is measurably faster written another way (buffers
reused in place, a cheaper identity, a narrower mask), the rule calls the variant here by name.
Every variant computes the same formula as its rule: ``tests/test_rule_checks.py`` holds the
first-order path equal to the formula path for every rule of the table. What each buys is
measured in ``benchmarks/`` and recorded in ``benchmarks/README.md``, not here.
"""
