"""The documentation site (mkdocs.yml) builds strictly and offline, and shows every rule.

One strict build (warnings are errors) into a temporary folder, with every proxy pointed at a
closed port so that anything fetched at build time fails it; then checks on the HTML: a row
per rule, a page per op family with each Function's derivation kept line for line, a page
per notebook, the README on the home page, and no script or stylesheet from the network.
"""

from __future__ import annotations

import html
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_jupyter"):
    pytest.importorskip(module, reason="the docs extra is not installed: pip install -e '.[docs]'")

from trainer.rules import RULES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
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


@pytest.mark.parametrize("family", FAMILIES)
def test_family_page_shows_each_derivation_line_for_line(site, family):
    family_page = page(site, f"families/{family}.html")
    assert "∂L/∂" in family_page and "Saves" in family_page
    for rule in (rule for rule in RULES if rule.family == family):
        assert f'id="{rule.name}"' in family_page, f"no section for {rule.name}"
        assert rule.function.__qualname__ in family_page
        docstring = inspect.getdoc(rule.function)
        if "$" in docstring:
            continue  # Markdown with LaTeX: rendered as math, not kept line for line
        # Each indented line of the plain-text derivation is a whole line of the page, its
        # spacing intact (a block folded into a paragraph would have lost both).
        for line in (line for line in docstring.splitlines() if line.startswith("    ")):
            shown = html.escape(line, quote=False)  # a block's first line follows <code>
            assert f"\n{shown}\n" in family_page or f"<code>{shown}\n" in family_page, (
                f"{rule.function.__qualname__}: {line.strip()!r} lost its line or spacing")


def test_gelu_formula_block_keeps_its_lines(site):
    activation = page(site, "families/activation.html")
    blocks = re.findall(r'<div class="derivation highlight"><pre>(.*?)</pre>', activation, re.S)
    backward = next((text_of(block) for block in blocks
                     if "'none':" in block and "'tanh':" in block and "∂L/∂x" in block), None)
    assert backward, "GELU's two backward formulas are not in one preformatted block"
    lines = backward.splitlines()
    none_line = next(i for i, line in enumerate(lines) if "'none':" in line)
    assert "'tanh':" in lines[none_line + 1]
    assert lines[none_line].index("'none':") == lines[none_line + 1].index("'tanh':")


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
