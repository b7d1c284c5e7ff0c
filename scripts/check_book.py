"""A reader's check of the built book: open each page in headless Chromium and look.

For every page listed in ``_toc.yml`` this loads ``_build/html/<page>.html`` in
headless Chromium, lets MathJax run, takes the DOM as the browser shows it,
and fails if

* math is left untypeset: raw ``$$``, ``\\(`` or ``\\[`` in the visible text, or
  math in the page but no MathJax output;
* an image is missing, empty or not an image;
* an exercise has no solution that links back to it.

It also saves a full-page screenshot of each page in ``_build/screenshots/``
for a human to look at.

    python scripts/check_book.py            # every page in the toc
    python scripts/check_book.py --require-chromium   # fail (not skip) without Chromium

Exit status 0 when all pages pass, 1 when a page fails, and 0 with a visible
"SKIPPED" message when Chromium is not installed (unless --require-chromium).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--hide-scrollbars",
]
SKIP_TEXT_IN = {"script", "style", "pre", "code", "mjx-container", "mjx-assistive-mml", "textarea", "svg", "math"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
RAW_MATH = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\frac|\\mathbf")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def toc_pages(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The page paths of ``_toc.yml`` (``root:`` and every ``file:``), without extension."""
    pages = []
    for line in toc.read_text().splitlines():
        match = re.match(r"\s*(?:-\s*)?(root|file):\s*(\S+)", line)
        if match:
            pages.append(match.group(2))
    return pages


class PageDom(HTMLParser):
    """What the checks need from a rendered page's DOM: visible text, images, exercises, solutions."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.visible_text: list[str] = []
        self.images: list[str] = []
        self.exercises: list[str] = []
        self.solution_targets: list[str] = []
        self.mathjax_nodes = 0
        self._skip_stack: list[str] = []
        self._in_solution_title = 0
        self._stack: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "mjx-container":
            self.mathjax_nodes += 1
        if tag == "img" and attributes.get("src"):
            self.images.append(attributes["src"] or "")
        if tag == "div" and "exercise" in classes and attributes.get("id"):
            self.exercises.append(attributes["id"] or "")
        solution_title = tag == "p" and "admonition-title" in classes and self._inside_solution()
        if tag == "a" and self._in_solution_title and attributes.get("href", "").startswith("#"):
            self.solution_targets.append(attributes["href"][1:])
        if tag in VOID:
            return
        self._stack.append((tag, "solution" in classes))
        if solution_title:
            self._in_solution_title += 1
        if tag in SKIP_TEXT_IN:
            self._skip_stack.append(tag)

    def _inside_solution(self) -> bool:
        return any(is_solution for _, is_solution in self._stack)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == "p" and self._in_solution_title:
                self._in_solution_title -= 1
            if self._skip_stack and self._skip_stack[-1] == open_tag:
                self._skip_stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._skip_stack and data.strip():
            self.visible_text.append(data)


def render_dom(chromium: str, page: Path, budget_ms: int = 15000) -> str:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=180,
        )
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"Chromium could not render {page}: {result.stderr[-2000:]}")
    return result.stdout


def screenshot(chromium: str, page: Path, target: Path, height: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
             f"--window-size=1280,{height}", f"--screenshot={target}", page.as_uri()],
            capture_output=True, text=True, timeout=180,
        )


def image_problem(page: Path, src: str) -> str | None:
    if src.startswith("data:image/"):
        return None if len(src) > 100 else f"image {src[:40]}... is an empty data URI"
    if re.match(r"^[a-z]+://", src):
        return f"image {src} is loaded from the network (the book must work offline)"
    path = (page.parent / src.split("#")[0].split("?")[0]).resolve()
    if not path.is_file():
        return f"image {src} is missing ({path} does not exist)"
    head = path.read_bytes()[:16]
    if path.stat().st_size < 100 or not (
        head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8") or b"<svg" in path.read_bytes()[:512]
        or head.startswith(b"GIF8") or head[8:12] == b"WEBP"
    ):
        return f"image {src} is empty or not an image"
    return None


def check_page(chromium: str, page: Path) -> list[str]:
    """Return the problems a reader would see on ``page`` (empty list: the page is fine)."""
    source = page.read_text()
    dom = PageDom()
    dom.feed(render_dom(chromium, page))
    problems = []
    text = " ".join(dom.visible_text)
    for match in RAW_MATH.finditer(text):
        start = max(0, match.start() - 60)
        problems.append(f"untypeset math in the visible text: ...{text[start:match.end() + 60]!r}...")
        if len(problems) > 5:
            break
    has_math = 'class="math' in source or "\\(" in source
    if has_math and dom.mathjax_nodes == 0:
        problems.append("the page has math but MathJax typeset none of it (is MathJax loading?)")
    for src in dom.images:
        problem = image_problem(page, src)
        if problem:
            problems.append(problem)
    for exercise in dom.exercises:
        if exercise not in dom.solution_targets:
            problems.append(f"exercise {exercise!r} has no solution")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pages", nargs="*", help="toc page paths (default: every page in _toc.yml)")
    parser.add_argument("--require-chromium", action="store_true", default=os.environ.get("CI") == "true",
                        help="fail instead of skipping when Chromium is missing (default when CI=true)")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("--html", type=Path, default=HTML, help="the built book's html folder (default: %(default)s)")
    parser.add_argument("--screenshots", type=Path, default=SCREENSHOTS, help="where to save them (default: %(default)s)")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        message = ("Chromium not found: the reader's check of the rendered pages was NOT run. "
                   "Install Debian's 'chromium' package (apt-get install chromium) to run it.")
        if args.require_chromium:
            print(f"FAILED: {message}")
            return 1
        print(f"SKIPPED: {message}")
        return 0
    failed = 0
    for name in args.pages or toc_pages():
        page = args.html / f"{name}.html"
        if not page.is_file():
            print(f"FAIL {name}: {page} does not exist (build the book first: make book)")
            failed += 1
            continue
        problems = check_page(chromium, page)
        if not args.no_screenshots:
            screenshot(chromium, page, args.screenshots / f"{Path(name).name}.png", height=4000)
        print(("FAIL " if problems else "ok   ") + name)
        for problem in problems:
            print(f"     - {problem}")
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
