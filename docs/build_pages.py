"""MkDocs hook: the pages that come from the code, so that none of them is a copy.

- ``rules.md``: the table ``trainer.rules.RULES``, one row per rule, each gradient's formula
  typeset (``unicode_math.to_latex``);
- ``families/<family>.md``: one page per module of ``trainer.functional`` (``rule.family``),
  a section per rule holding its Function's docstring (the derivation) and source, rendered
  by mkdocstrings;
- ``index.md``: ``docs/index.md`` with README.md spliced in at ``<!-- README.md -->``, its
  links to repository files pointed at pages of this site or, where the site has no such
  page, left as plain text;
- ``notebooks/``: ``notebooks/*.ipynb`` (rendered from their committed outputs by
  mkdocs-jupyter, never executed), ``notebooks/README.md`` as their index page, and the
  images the README shows;
- the navigation, in the table's order of families.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

from trainer.rules import RULES, Rule

sys.path.insert(0, str(Path(__file__).resolve().parent))  # mkdocs loads this hook by path
from unicode_math import to_latex  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
README_MARKER = "<!-- README.md -->"
FAMILIES = list(dict.fromkeys(rule.family for rule in RULES))  # in the table's order
# A Markdown link or image, outside code: [text](target) with an optional "title".
LINK = re.compile(r'(?P<bang>!?)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?P<title>\s+"[^"]*")?\)')
TORCH_F = "torch.nn.functional."
SOURCE_OF_FAMILY = re.compile(r"src/trainer/functional/(?P<family>\w+)\.py")

log = logging.getLogger(f"mkdocs.hooks.{__name__}")


def family_page(family: str) -> str:
    return f"families/{family}.md"


def repository_files() -> list[str]:
    """Files outside docs/ that the site shows: the notebooks, their index and images."""
    notebooks = ROOT / "notebooks"
    shown = [*sorted(notebooks.glob("*.ipynb")), notebooks / "README.md",
             *sorted((notebooks / "images").glob("*.png"))]
    return [path.relative_to(ROOT).as_posix() for path in shown if path.is_file()]


def on_config(config):
    notebooks = [path for path in repository_files() if path.endswith(".ipynb")]
    config.nav = [
        {"Home": "index.md"},
        {"The rules": "rules.md"},
        {"Op families": [{family: family_page(family)} for family in FAMILIES]},
        {"Notebooks": ["notebooks/README.md", *notebooks]},
    ]
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which claims the .ipynb files
def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "rules.md", content=rules_page()))
    for family in FAMILIES:
        files.append(File.generated(config, family_page(family), content=family_markdown(family)))
    for path in repository_files():
        # a plain File read from the repository root: mkdocs-jupyter's wrapper of a notebook
        # finds its source through src_dir, which a File.generated lacks
        files.append(File(path, src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    if README_MARKER not in markdown:
        return markdown
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    body = readme.split("\n", 1)[1] if readme.startswith("# ") else readme  # the page has an H1
    return markdown.replace(README_MARKER, link_to_site(body, files))


# -- the rules table ------------------------------------------------------------------------


def cell(text: str) -> str:
    """Plain text safe in a Markdown table cell."""
    return re.sub(r"([\\|*_`\[\]])", r"\\\1", text)


def code(text: str) -> str:
    return f"`{text}`"  # no rule text holds a backtick


def gradient_lines(rule: Rule) -> str:
    """Each gradient's formula typeset inline (docs/unicode_math.py), or as code where the
    converter cannot take it; its input's name as text."""
    lines = []
    for grad in rule.grads:
        name, _, formula = grad.partition(": ")
        latex = to_latex(formula, display=False)
        lines.append(f"**{cell(name)}**: " + (f"${latex}$" if latex else code(formula)))
    return "<br>".join(lines)


def short_entry_point(dotted: str) -> str:
    return "F." + dotted.removeprefix(TORCH_F) if dotted.startswith(TORCH_F) else dotted


def rules_page() -> str:
    rows = [
        "| op | Function | stands for | gradients (g = ∂L/∂output) | saves |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rule in RULES:
        stands_for = ("<br>".join(code(short_entry_point(name)) for name in rule.stands_for)
                      or "no torch op (fused here)")
        rows.append(
            f"| [{cell(rule.name)}]({family_page(rule.family)}#{rule.name})"
            f" | {code(rule.function.__qualname__)}"
            f" | {stands_for} | {gradient_lines(rule)} | {cell(rule.saves)} |")
    intro = (
        "---\nhide: [toc]\n---\n\n"  # the table needs the width more than a one-line toc
        "# The rules\n\n"
        "One row per explicit op, generated from `trainer.rules.RULES` when the site is built "
        "(`python -m trainer.rules` prints the same table). Each op links to its section on its "
        "family's page, where its Function's docstring derives every gradient. "
        f"`F` is `{TORCH_F.rstrip('.')}`.\n")
    return intro + "\n" + "\n".join(rows) + "\n"


# -- a page per family ----------------------------------------------------------------------


def mkdocstrings_block(identifier: str, **options: object) -> str:
    lines = [f"::: {identifier}", "    options:"]
    lines += [f"      {key}: {str(value).lower() if isinstance(value, bool) else value}"
              for key, value in options.items()]
    return "\n".join(lines)


def rule_section(rule: Rule) -> str:
    module = rule.function.__module__
    function = rule.function.__qualname__
    facts = [f"`trainer.functional.{rule.name}`, Function `{function}`",
             "stands for " + (", ".join(map(code, rule.stands_for)) or "no torch op"),
             f"code `{rule.where()}`"]
    refuses = "".join(f"\n\nRefuses {reason}." for reason in rule.unsupported)
    return (f"## {rule.name} {{#{rule.name}}}\n\n" + " · ".join(facts) + refuses + "\n\n"
            + mkdocstrings_block(f"{module}.{function}", show_root_heading=False,
                                 show_root_toc_entry=False, show_source=True) + "\n")


def family_markdown(family: str) -> str:
    module = f"trainer.functional.{family}"
    sections = [rule_section(rule) for rule in RULES if rule.family == family]
    return (f"# {family}\n\n"
            + mkdocstrings_block(module, show_root_heading=False, show_root_toc_entry=False,
                                 members=False) + "\n\n"
            + "\n".join(sections))


# -- README.md on the home page -------------------------------------------------------------


def link_to_site(markdown: str, files: Files) -> str:
    """``markdown`` (the README, relative to the repository root) with each link to a
    repository file pointed at the site's copy or page, or else reduced to its text."""
    in_fence = False
    lines = []
    for line in markdown.split("\n"):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        lines.append(line if in_fence else LINK.sub(lambda m: site_link(m, files), line))
    return "\n".join(lines)


def site_link(match: re.Match, files: Files) -> str:
    target = match["target"]
    if re.match(r"[a-z][a-z0-9+.-]*:|#|/", target):  # a URL, an anchor, an absolute path
        return match[0]
    path, _, anchor = target.partition("#")
    source = SOURCE_OF_FAMILY.fullmatch(path)
    if path.endswith("/"):
        path += "README.md"  # a folder: its README, which the site shows as the folder's index
    elif source and source["family"] in FAMILIES:
        path = family_page(source["family"])
    if files.get_file_from_path(path) is None:
        log.info("README link to %s: not in the site, shown as text", target)
        return match["text"]
    target = path + (f"#{anchor}" if anchor else "")
    return f'{match["bang"]}[{match["text"]}]({target}{match["title"] or ""})'
