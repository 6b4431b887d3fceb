"""The documents: the docs/ site builds with MkDocs in strict mode (a broken link or anchor, a
page missing from the nav, fails it), and every relative link in README.md reaches a file, and
a heading where it names one. CI runs the test suite, so a broken link fails CI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 300  # a README a newcomer reads in ten minutes; the rest lives in docs/

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(markdown: str) -> str:
    """The text outside fenced code blocks."""
    return _FENCE.sub("", markdown)


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub (and MkDocs' default `toc`) make it: lower case, inline
    markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[|\]\([^)]*\)", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _relative_links(markdown: str):
    for target in _LINK.findall(_prose(markdown)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http(s), mailto, ...: not a file here; same-page anchors are MkDocs'
        yield target


def test_docs_build_strict(tmp_path):
    """`mkdocs build --strict` (what `make docs` runs) succeeds without a warning."""
    try:
        import mkdocs  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        pytest.fail("mkdocs is not installed: pip install -e '.[docs]' (make installs it)")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").is_file()


def test_readme_links_reach_files_and_headings():
    """Every relative link in README.md names an existing file (docs/ pages, pictures), and a
    `#anchor` on a Markdown file names one of its headings."""
    broken = []
    for target in _relative_links(README.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        file = (ROOT / path).resolve()
        if not file.is_file():
            broken.append(f"{target}: no file {path}")
            continue
        if anchor and file.suffix == ".md":
            slugs = {_slug(h) for h in _HEADING.findall(_prose(file.read_text(encoding="utf-8")))}
            if anchor not in slugs:
                broken.append(f"{target}: no heading #{anchor} in {path}")
    assert not broken, "README.md has broken links:\n" + "\n".join(broken)


def test_readme_links_something():
    """The link check above sees the README's links (a parser that found none would pass)."""
    targets = list(_relative_links(README.read_text(encoding="utf-8")))
    assert any(t.startswith("docs/") for t in targets), targets


def test_readme_is_short():
    """README.md stays a tour; measured content goes to the docs/ pages."""
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


@pytest.mark.parametrize("heading, slug", [
    ("Time to a good detector: the fast recipe", "time-to-a-good-detector-the-fast-recipe"),
    ("The train step at the hardware's pace", "the-train-step-at-the-hardwares-pace"),
    ("Exporting: SavedModel, LiteRT (TFLite), ONNX", "exporting-savedmodel-litert-tflite-onnx"),
    ("Training on several devices and machines (`tf.distribute`)",
     "training-on-several-devices-and-machines-tfdistribute"),
])
def test_slug_matches_github_and_mkdocs(heading, slug):
    assert _slug(heading) == slug
    toc = pytest.importorskip("markdown.extensions.toc")
    # MkDocs' anchors come from Python-Markdown's toc extension; inline code is rendered first
    assert toc.slugify(heading.replace("`", ""), "-") == slug
