"""The documentation site (mkdocs.yml) builds strictly and offline, and shows every rule.

One strict build (warnings are errors) into a temporary folder, with every proxy pointed at a
closed port so that anything fetched at build time fails it; then checks on the HTML: a row
per rule with its gradients typeset, a page per op family with each Function's derivation
(its formulas as display math, what the converter cannot take line for line), a page per
notebook, the README on the home page, and no script or stylesheet from the network.
Besides: the Unicode-to-LaTeX converter (docs/unicode_math.py) on representative lines,
and, where node is installed, every formula of every rule parsed by the vendored KaTeX.
"""

from __future__ import annotations

import html
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_jupyter"):
    pytest.importorskip(module, reason="the docs extra is not installed: pip install -e '.[docs]'")

from trainer.rules import RULES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import check_math  # noqa: E402
from derivation_layout import derivation, is_preformatted  # noqa: E402
from unicode_math import to_latex  # noqa: E402

FAMILIES = sorted({rule.family for rule in RULES})
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens, connections fail


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    offline = {name: CLOSED_PORT for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                              "http_proxy", "https_proxy", "all_proxy")}
    env = {**os.environ, **offline, "NO_PROXY": "", "no_proxy": "",
           "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about its successor
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}{build.stderr}"
    return out


def page(site: Path, path: str) -> str:
    assert (site / path).is_file(), f"{path} was not built"
    return (site / path).read_text(encoding="utf-8")


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def test_rules_page_has_one_row_per_rule(site):
    rules = page(site, "rules.html")
    body = re.search(r"<tbody>(.*?)</tbody>", rules, re.S)
    assert body, "no table on the rules page"
    rows = re.findall(r"<tr>(.*?)</tr>", body[1], re.S)
    assert len(rows) == len(RULES)
    for row, rule in zip(rows, RULES):
        first_cell = re.search(r"<td>(.*?)</td>", row, re.S)[1]
        assert f'href="families/{rule.family}.html#{rule.name}"' in first_cell, first_cell
        assert text_of(first_cell) == rule.name
        assert rule.function.__qualname__ in row
        assert row.count("<br") >= len(rule.grads) - 1  # one line per gradient


def math_of(fragment: str) -> list[str]:
    """The LaTeX of each arithmatex element (display or inline) in ``fragment``."""
    return [html.unescape(m[2]).strip()[2:-2].strip() for m in re.finditer(
        r'<(div|span) class="arithmatex">(.*?)</\1>', fragment, re.S)]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_page_shows_each_derivation(site, family):
    family_page = page(site, f"families/{family}.html")
    assert "Saves" in family_page
    shown_math = set(math_of(family_page))
    for rule in (rule for rule in RULES if rule.family == family):
        assert f'id="{rule.name}"' in family_page, f"no section for {rule.name}"
        assert rule.function.__qualname__ in family_page
        docstring = inspect.getdoc(rule.function)
        if "$" in docstring:
            continue  # Markdown with LaTeX already, left alone by the extension
        paragraphs = [p.split("\n") for p in docstring.split("\n\n") if p.strip()]
        typeset = 0
        for index, paragraph in enumerate(paragraphs):
            if not is_preformatted(paragraph, index == 0):
                continue
            for kind, text, source in derivation(paragraph, index == 0):
                if kind == "math":  # one display, as the converter made it, through Markdown
                    typeset += 1
                    assert text in shown_math, f"{rule.name}: {source!r} is not typeset"
                elif kind == "pre":  # each line a whole line of the page, its spacing intact
                    for line in text.splitlines():
                        shown = html.escape(line, quote=False)  # a first line follows <code>
                        assert f"\n{shown}\n" in family_page or f"<code>{shown}\n" in (
                            family_page), f"{rule.name}: {line.strip()!r} lost its line"
        assert typeset, f"{rule.name}: no formula of its docstring is typeset"


def test_layer_norm_derivation_and_row_are_math(site):
    norm = page(site, "families/norm.html")
    section = norm[norm.index('id="layer_norm"'):]
    displays = re.findall(r'<div class="arithmatex">(.*?)</div>', section, re.S)
    assert len(displays) >= 2, "layer_norm's forward and backward are not display math"
    backward = html.unescape(displays[1]).strip()
    assert backward.startswith("\\[") and backward.endswith("\\]")  # what math.js typesets
    for latex in (r"\frac{\partial L}{\partial \beta} & = \sum_{r} g \\",
                  r"\frac{\partial L}{\partial x} & = \mathrm{rstd} / D \cdot ( D \cdot g \gamma"
                  r" - \sum_{d} g \gamma - \hat{x} \cdot \sum_{d} ( g \gamma \cdot \hat{x} ) )"):
        assert latex in backward, backward
    assert "Backward, with g = ∂L/∂y" in text_of(section)  # the prose around stays prose
    rules = page(site, "rules.html")
    row = re.search(r'<tr>\s*<td><a href="families/norm.html#layer_norm".*?</tr>', rules, re.S)[0]
    layer_norm = next(rule for rule in RULES if rule.name == "layer_norm")
    assert math_of(row) == [to_latex(grad.partition(": ")[2], display=False)
                            for grad in layer_norm.grads]
    assert '<strong>input</strong>: <span class="arithmatex">' in row


def test_gelu_backward_is_one_aligned_display(site):
    activation = page(site, "families/activation.html")
    backward = next((latex for latex in math_of(activation)
                     if "none'" in latex and "tanh'" in latex and r"\partial L" in latex), None)
    assert backward, "GELU's two backward formulas are not in one display"
    rows = re.split(r"\\\\(?:\[\w+\])?", backward.removeprefix(r"\begin{aligned}"))
    assert [row.count("& =") for row in rows] == [1, 1, 1]  # 'none', 'tanh', u′: at their "="
    assert rows[0].strip().startswith(r"\text{`none': } \frac{\partial L}{\partial x} & =")
    assert rows[1].strip().startswith(r"\text{`tanh': } \frac{\partial L}{\partial x} & =")
    assert rows[2].strip().startswith(r"u' & = \sqrt{2 / \pi}")


@pytest.mark.parametrize("unicode, latex", [
    ("y = x Wᵀ + b", r"y = x W^{\top} + b"),
    ("∂L/∂W = gᵀ x", r"\frac{\partial L}{\partial W} = g^{\top} x"),
    ("∂L/∂x = rstd/D · (D·gγ − Σ_d gγ − x̂·Σ_d(gγ·x̂))",
     r"\frac{\partial L}{\partial x} = \mathrm{rstd} / D \cdot ( D \cdot g \gamma - \sum_{d} g"
     r" \gamma - \hat{x} \cdot \sum_{d} ( g \gamma \cdot \hat{x} ) )"),
    ("g · σ(x)·(1 + x·(1 − σ(x)))",
     r"g \cdot \sigma {(} x ) \cdot ( 1 + x \cdot ( 1 - \sigma {(} x ) ) )"),
    ("gᵀ x  (summed over rows)", r"g^{\top} x \text{ (summed over rows)}"),
    ("Σ_{n,t} g", r"\sum_{n , t} g"),
    ("φ(x) = e^(−x²/2)/√(2π)", r"\varphi {(} x ) = e ^{- x^{2} / 2} / \sqrt{2 \pi}"),
    ("h_t = m_t W_hrᵀ", r"h_{t} = m_{t} W_{\mathrm{hr}}^{\top}"),
    ("∂L/∂x[n,c,l] = Σ_{j whose window covers l} g[n,c,j] / D[j]",
     r"\frac{\partial L}{\partial x[n , c , l]} = \sum_{j \text{ whose window covers } l}"
     r" g [ n , c , j ] / D [ j ]"),
    ("y = ⌊i·L/O⌋ ≠ [lo ≤ x]", r"y = \lfloor i \cdot L / O \rfloor \ne [ \mathrm{lo} \le x ]"),
    ("restore(g) · m / Σ_dims m          (ties share g equally, as torch)",
     r"\operatorname{restore} {(} g ) \cdot m / \sum_{\mathrm{dims}} m"
     r" \text{ (ties share } g \text{ equally, as torch)}"),
    ("conv(g, W", None),  # brackets that do not pair: shown as written
    ("x ⊕ y", None),  # a symbol the tables lack
])
def test_unicode_to_latex(unicode, latex):
    assert to_latex(unicode) == latex


def test_inline_fraction():
    assert to_latex("∂L/∂x = g W", display=False) == r"\partial L/\partial x = g W"


@pytest.mark.skipif(shutil.which("node") is None,
                    reason="needs node (not installed here) to run the vendored KaTeX")
def test_every_formula_parses_with_katex():
    found = check_math.formulas()
    typeset = [formula for formula in found if formula.latex is not None]
    assert len(typeset) > 0.9 * len(found), "most formulas fall back to plain text"
    refused = [f"{f.where}: {f.source!r} -> {f.latex!r}: {error}"
               for f, error in zip(typeset, check_math.katex_errors(typeset)) if error]
    assert not refused, "\n".join(refused)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_page_shows_committed_outputs(site, notebook):
    rendered = page(site, f"notebooks/{notebook.stem}.html")
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    outputs = [output for cell in cells for output in cell.get("outputs", [])]
    pictures = sum("image/png" in output.get("data", {}) for output in outputs)
    assert rendered.count('src="data:image/png;base64,') >= pictures
    assert "jp-CodeCell" in rendered or not outputs


def test_notebooks_index_and_home_page(site):
    assert "01_recipe" in page(site, "notebooks/index.html")
    home = page(site, "index.html")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = [text_of(h) for h in re.findall(r"<h2 id=[^>]*>(.*?)<a class=\"headerlink\"",
                                               home, re.S)]
    prose = re.sub(r"^```.*?^```", "", readme, flags=re.M | re.S)
    for heading in re.findall(r"^## (.+)$", prose, re.M):
        assert heading.replace("`", "") in headings


def test_viewing_fetches_nothing(site):
    for built in site.rglob("*.html"):
        tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>",
                          built.read_text(encoding="utf-8"))
        remote = [tag for tag in tags if re.search(r'\b(?:src|href)="(?:https?:)?//', tag)]
        assert not remote, f"{built.relative_to(site)} loads {remote}"
