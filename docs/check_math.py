"""Every formula the site typesets, checked with the vendored KaTeX; what falls back, listed.

    python docs/check_math.py            counts, the formulas KaTeX refuses, the fallbacks
    python docs/check_math.py -v         ... and every formula with its LaTeX

The formulas: each derivation's display math (docs/derivation_layout.py) from the
docstrings of trainer.functional's family modules and of every rule's Function, and each
gradient line of the rules table (docs/build_pages.py). KaTeX runs in node, with
throwOnError and strict mode on; without node only the conversion is reported.
"""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))

from derivation_layout import derivation, is_preformatted  # noqa: E402
from unicode_math import to_latex  # noqa: E402

from trainer.rules import RULES  # noqa: E402

KATEX = DOCS / "assets" / "katex" / "katex.min.js"
# Reads [[latex, display], ...] on stdin, prints one error message (or null) per formula.
NODE_CHECK = f"""
const katex = require({json.dumps(str(KATEX))});
let input = "";
process.stdin.on("data", chunk => input += chunk);
process.stdin.on("end", () => {{
  const errors = JSON.parse(input).map(([latex, display]) => {{
    try {{
      katex.renderToString(latex, {{throwOnError: true, strict: "error", displayMode: display}});
      return null;
    }} catch (error) {{ return String(error.message); }}
  }});
  process.stdout.write(JSON.stringify(errors));
}});
"""


@dataclass
class Formula:
    where: str  # the rule or module it is from
    source: str  # the Unicode lines
    latex: str | None  # None: shown as written (preformatted, or as code in the table)
    display: bool = True


def docstrings() -> list[tuple[str, str, bool]]:
    """(where, cleaned docstring, is a class) for every docstring the family pages show."""
    out, seen = [], set()
    for rule in RULES:
        module = importlib.import_module(rule.function.__module__)
        if module.__name__ not in seen:
            seen.add(module.__name__)
            out.append((module.__name__, inspect.getdoc(module) or "", False))
        out.append((rule.name, inspect.getdoc(rule.function) or "", True))
    return out


def formulas() -> list[Formula]:
    found = []
    for where, docstring, is_class in docstrings():
        if "$" in docstring:
            continue  # LaTeX already, left alone by the extension
        paragraphs = [p.split("\n") for p in docstring.split("\n\n") if p.strip()]
        for index, paragraph in enumerate(paragraphs):
            first = is_class and index == 0
            if not is_preformatted(paragraph, first):
                continue
            for kind, text, source in derivation(paragraph, first):
                if kind != "prose":
                    found.append(Formula(where, source, text if kind == "math" else None))
    for rule in RULES:
        for grad in rule.grads:
            formula = grad.partition(": ")[2]
            found.append(Formula(f"{rule.name} (table)", formula, to_latex(formula, False), False))
    return found


def katex_errors(checked: list[Formula]) -> list[str | None] | None:
    """KaTeX's message for each formula (None: it parses), or None without node."""
    node = shutil.which("node")
    if node is None:
        return None
    payload = json.dumps([[f.latex, f.display] for f in checked])
    result = subprocess.run([node, "-e", NODE_CHECK], input=payload, capture_output=True,
                            text=True, check=True, timeout=120)
    return json.loads(result.stdout)


def main(verbose: bool) -> int:
    found = formulas()
    typeset = [f for f in found if f.latex is not None]
    errors = katex_errors(typeset)
    fallbacks = [f for f in found if f.latex is None]
    lines = sum(f.source.count("\n") + 1 for f in typeset)
    print(f"{len(typeset)} formulas typeset ({lines} source lines), {len(fallbacks)} shown as "
          f"written ({sum(f.source.count(chr(10)) + 1 for f in fallbacks)} lines)")
    if errors is None:
        print("node not found: the LaTeX was not checked with KaTeX")
    failed = [(f, e) for f, e in zip(typeset, errors or []) if e]
    for formula, error in failed:
        print(f"\nKaTeX refuses {formula.where}:\n{formula.source}\n{formula.latex}\n{error}")
    for formula in fallbacks:
        print(f"\nshown as written, {formula.where}:\n{formula.source}")
    if verbose:
        for formula in typeset:
            print(f"\n{formula.where}:\n{formula.source}\n  {formula.latex}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main("-v" in sys.argv[1:]))
