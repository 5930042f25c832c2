// Math, typeset by KaTeX (vendored in assets/katex, so viewing needs no network).
// Pages and docstrings: pymdownx.arithmatex (generic) wraps $...$ and $$...$$ as \(...\) and
// \[...\] in .arithmatex elements. Notebooks: nbconvert leaves $...$ in markdown cells as written.
const ARITHMATEX = [
  { left: "\\(", right: "\\)", display: false },
  { left: "\\[", right: "\\]", display: true },
];
const NOTEBOOK = [{ left: "$$", right: "$$", display: true },
                  { left: "$", right: "$", display: false }, ...ARITHMATEX];

function typesetMath() {
  for (const element of document.querySelectorAll(".arithmatex")) {
    renderMathInElement(element, { delimiters: ARITHMATEX, throwOnError: false });
  }
  for (const cell of document.querySelectorAll(".jupyter-wrapper .jp-MarkdownOutput")) {
    renderMathInElement(cell, { delimiters: NOTEBOOK, throwOnError: false });
  }
}

// Material's document$ emits on every page load, instant navigation included.
document$.subscribe(typesetMath);
