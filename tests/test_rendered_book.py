"""The reader's check: every page of the built book, opened in headless Chromium.

Needs the built book (``make test`` builds it first). Without Chromium the
check is skipped with a visible reason on a user's machine and fails in CI
(``CI=true``), where ``.ci/run`` installs Debian's chromium first.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_book", ROOT / "scripts" / "check_book.py")
check_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_book)

IN_CI = os.environ.get("CI") == "true"
CHROMIUM = check_book.find_chromium()


def _need_chromium() -> str:
    if CHROMIUM is None:
        if IN_CI:
            pytest.fail("Chromium is required in CI for the reader's check (apt-get install chromium)")
        pytest.skip("Chromium not installed: the reader's check of the rendered pages was NOT run")
    return CHROMIUM


@pytest.mark.parametrize("page", check_book.toc_pages())
def test_page_renders_for_a_reader(page: str) -> None:
    chromium = _need_chromium()
    html = check_book.HTML / f"{page}.html"
    if not html.is_file():
        if IN_CI:
            pytest.fail(f"{html} is missing: the book must be built before the tests")
        pytest.skip(f"{html} not built yet: run 'make book' first")
    problems = check_book.check_page(chromium, html)
    assert not problems, f"{page}:\n" + "\n".join(problems)


def test_checker_sees_what_a_reader_would(tmp_path: Path) -> None:
    """The check itself must catch raw math, a missing image and an exercise without solution."""
    chromium = _need_chromium()
    page = tmp_path / "page.html"
    (tmp_path / "ok.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    page.write_text(
        '<html><body><p>raw $$ x^2 $$ here</p><span class="math">\\(x\\)</span>'
        '<img src="ok.png"/><img src="missing.png"/>'
        '<div class="exercise admonition" id="ex-a"><p>A</p></div>'
        '<div class="exercise admonition" id="ex-b"><p>B</p></div>'
        '<div class="solution dropdown admonition" id="s1"><p class="admonition-title">Solution to'
        '<a class="reference internal" href="#ex-a"> Exercise 1</a></p></div>'
        "<pre>$$ inside code is fine</pre></body></html>"
    )
    problems = "\n".join(check_book.check_page(chromium, page))
    assert "untypeset math" in problems
    assert "MathJax typeset none" in problems
    assert "missing.png is missing" in problems and "ok.png" not in problems
    assert "'ex-b' has no solution" in problems and "'ex-a'" not in problems
    assert "inside code" not in problems
