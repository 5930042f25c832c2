"""The table of rules: every op listed once, every entry real, and the table is what the rest
of the project reads."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

import trainer.functional as F
import trainer.nn as nn
from trainer import rules
from trainer.functional._util import Function

NAMES = [rule.name for rule in rules.RULES]


def test_every_public_op_has_exactly_one_rule():
    ops = sorted(name for name in F.__all__ if callable(getattr(F, name))
                 and not isinstance(getattr(F, name), type))
    assert sorted(NAMES) == ops
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_rule_names_real_things(name):
    rule = rules.BY_NAME[name]
    assert issubclass(rule.function, Function)
    assert rule.function.__module__ == f"trainer.functional.{rule.family}"
    assert rule.functional is getattr(F, name)
    for dotted in rule.stands_for:
        assert callable(rules.resolve(dotted)), dotted
    for dotted in rule.twins:
        twin = rules.resolve(dotted)
        assert issubclass(twin, torch.nn.Module) and twin.__module__.startswith("trainer.nn")
        assert getattr(nn, twin.__name__) is twin  # exported as trainer.nn.<Name>
    assert rule.grads and all(": " in grad for grad in rule.grads)
    assert rule.saves
    doc = inspect.getdoc(rule.function)
    assert "Saves" in doc and "∂" in doc  # the derivation, next to the code


def test_every_explicit_module_is_some_rules_twin():
    listed = {rules.resolve(t) for rule in rules.RULES for t in rule.twins}
    exported = [getattr(nn, name) for name in nn.__all__]
    ours = {m for m in exported if isinstance(m, type) and issubclass(m, torch.nn.Module)
            and m.__module__.startswith("trainer.nn")}
    assert ours == listed


def test_convert_swaps_by_the_table():
    assert nn.TWINS == rules.twins()
    for base, twin in nn.TWINS.items():
        assert issubclass(twin, base) and base.__module__.startswith("torch.nn")


def test_benchmark_cases_are_rules():
    from benchmarks import layers

    timed = {case.op for case in layers.CASES}
    assert timed <= set(NAMES)
    assert layers.untimed() == [name for name in NAMES if name not in timed]


def run_rules(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.rules", *args], capture_output=True,
                          text=True, timeout=120)


def test_python_m_trainer_rules_prints_one_line_per_op():
    result = run_rules()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    assert all("| saves " in line for line in lines)


def test_python_m_trainer_rules_op_prints_the_derivation_and_where_it_is():
    result = run_rules("gelu")
    assert result.returncode == 0, result.stderr
    rule = rules.BY_NAME["gelu"]
    assert inspect.getdoc(rule.function) in result.stdout
    where = next(line for line in result.stdout.splitlines() if "code:" in line).split()[-1]
    path, line = where.rsplit(":", 1)
    assert path.endswith("trainer/functional/activation.py")
    source = open(inspect.getsourcefile(rule.function)).read().splitlines()
    assert source[int(line) - 1].startswith("class GELU(")


def test_python_m_trainer_rules_refuses_an_unknown_op():
    result = run_rules("gleu")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no rule named gleu")
