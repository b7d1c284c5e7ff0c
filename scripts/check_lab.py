"""A student's check of a chapter in JupyterLab: start Lab headless, open the notebook in Chromium, look.

Starts JupyterLab (with jupyterlab-myst, from ``requirements-lab.txt``) on a
free port with every Jupyter folder in a temporary directory, opens the chapter
in Debian's Chromium through Playwright, waits until every cell is attached and
every markdown cell is rendered, scrolls through the notebook, and fails if

* an exercise, a solution or another MyST directive shows as raw text
  (``{exercise}``, ``:label:``, ``{solution-start}`` ...), or math as raw ``$$``;
* fewer exercises render than the notebook holds;
* a cell of a solution is not collapsed (its code or prose is in view);
* a ``show_source`` listing has no rendered code.

It saves screenshots of the notebook's top and of its first exercise in
``_build/screenshots/lab-<chapter>-*.png``.

    python scripts/check_lab.py 04_coupling_flows

Exit status 0 when the chapter passes, 1 when it fails, and 0 with a visible
"SKIPPED" message when JupyterLab, Playwright or Chromium is missing (unless
--require).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "_build" / "screenshots"
RAW_DIRECTIVE_MARKERS = (
    "{exercise}", "{solution-start}", "{solution-end}", "{solution}", ":label:", ":class:", "{prf:", "{admonition}",
    "{note}", "{warning}", "{tip}", "{figure}", "$$", "\\begin{",
)  # fmt: skip

# Runs in the page: the state of every cell, read from the DOM that JupyterLab and jupyterlab-myst build.
READ_CELLS_JS = """
() => Array.from(document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell')).map((cell, index) => {
  const myst = cell.querySelector('.jp-InputArea .myst');
  const rendered = cell.querySelector('.jp-InputArea .jp-RenderedMarkdown');
  const output = cell.querySelector('.jp-OutputArea');
  return {
    index,
    kind: cell.classList.contains('jp-CodeCell') ? 'code' : (cell.classList.contains('jp-MarkdownCell') ? 'markdown' : 'raw'),
    inputHidden: !!cell.querySelector('.jp-InputPlaceholder'),
    text: (() => {  // the visible text: KaTeX keeps the TeX source in hidden <annotation> elements, drop them
      const source = myst || rendered;
      if (!source) return '';
      const copy = source.cloneNode(true);
      copy.querySelectorAll('annotation, .katex-mathml').forEach(node => node.remove());
      return copy.textContent;
    })(),
    outputCode: output ? output.querySelectorAll('pre, code').length : 0,
  };
})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@contextlib.contextmanager
def jupyter_lab(root: Path) -> Iterator[str]:
    """Run JupyterLab on a free port, every Jupyter folder in a temporary directory; yield its URL."""
    with tempfile.TemporaryDirectory(prefix="flowlib-lab-") as home:
        env = dict(os.environ)
        for variable in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR"):
            env[variable] = str(Path(home) / variable.lower())
        settings = Path(home) / "lab-settings"
        news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True)
        news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
        port = free_port()
        command = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.token=",
            "--ServerApp.password=", f"--ServerApp.root_dir={root}", "--ServerApp.disable_check_xsrf=True",
            "--LabApp.news_url=None", "--allow-root",
        ]  # fmt: skip
        log = open(Path(home) / "lab.log", "w")
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n" + Path(log.name).read_text())
                try:
                    urllib.request.urlopen(f"{url}/api/status", timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("JupyterLab did not answer within 90 s") from None
                    time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def check_chapter(chapter: str, chromium: str, screenshots: Path = SCREENSHOTS, path: Path | None = None) -> list[str]:
    """Open ``book/<chapter>.ipynb`` (or ``path``, inside the repository) in JupyterLab; return what is wrong."""
    from playwright.sync_api import sync_playwright

    path = (ROOT / "book" / f"{chapter}.ipynb") if path is None else path.resolve()
    relative = path.relative_to(ROOT).as_posix()
    notebook = json.loads(path.read_text())
    expected_exercises = sum("{exercise}" in "".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    hidden = [i for i, c in enumerate(notebook["cells"]) if c.get("metadata", {}).get("jupyter", {}).get("source_hidden")]
    problems: list[str] = []
    screenshots.mkdir(parents=True, exist_ok=True)
    with jupyter_lab(ROOT) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/{relative}", wait_until="domcontentloaded", timeout=120_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
        count = len(notebook["cells"])
        page.wait_for_function(
            f"document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell').length >= {count}", timeout=120_000
        )
        # Scroll through the whole notebook so that the windowed notebook renders every cell.
        scroller = ".jp-NotebookPanel .jp-WindowedPanel-outer"
        height = page.evaluate(f"document.querySelector('{scroller}').scrollHeight")
        position = 0
        while position < height:
            page.evaluate(f"document.querySelector('{scroller}').scrollTop = {position}")
            page.wait_for_timeout(150)
            position += 700
            height = page.evaluate(f"document.querySelector('{scroller}').scrollHeight")
        page.evaluate(f"document.querySelector('{scroller}').scrollTop = 0")
        page.wait_for_timeout(1500)
        cells = page.evaluate(READ_CELLS_JS)
        if len(cells) != count:
            problems.append(f"JupyterLab shows {len(cells)} cells, the notebook has {count}")
        for cell in cells:
            if cell["kind"] != "markdown" or cell["index"] in hidden:
                continue
            raw = [marker for marker in RAW_DIRECTIVE_MARKERS if marker in cell["text"]]
            if raw:
                problems.append(f"cell {cell['index']} shows raw MyST {raw}: {cell['text'].strip()[:80]!r}")
        rendered_exercises = page.evaluate(
            "document.querySelectorAll('.jp-NotebookPanel .jp-MarkdownCell .myst-exercise').length"
        )
        if rendered_exercises < expected_exercises:
            problems.append(f"{rendered_exercises} exercises render as exercises, the notebook has {expected_exercises}")
        for index in hidden:
            if index < len(cells) and not cells[index]["inputHidden"]:
                problems.append(f"cell {index} belongs to a solution but is in view (not collapsed)")
        listings = [
            i for i, c in enumerate(notebook["cells"]) if c["cell_type"] == "code" and "show_source(" in "".join(c["source"])
        ]
        for index in listings:
            if index < len(cells) and index not in hidden and cells[index]["outputCode"] == 0:
                problems.append(f"cell {index} is a show_source listing but JupyterLab shows no code in its output")
        page.screenshot(path=str(screenshots / f"lab-{chapter}-top.png"))
        first = page.evaluate(
            "(() => { const e = document.querySelector('.jp-NotebookPanel .jp-MarkdownCell .myst-exercise'); "
            "if (!e) return -1; "
            "const cell = e.closest('.jp-Cell'); return cell.offsetTop; })()"
        )
        if first >= 0:
            page.evaluate(f"document.querySelector('{scroller}').scrollTop = {max(0, first - 120)}")
            page.wait_for_timeout(800)
            page.screenshot(path=str(screenshots / f"lab-{chapter}-exercise.png"))
        browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapter", nargs="?", default="04_coupling_flows", help="notebook name in book/")
    parser.add_argument("--require", action="store_true", help="fail instead of skipping when a tool is missing")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    missing = []
    if chromium is None:
        missing.append("Chromium (apt-get install chromium)")
    try:
        import jupyterlab  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as error:
        missing.append(f"{error.name} (make install-lab)")
    if missing:
        print("SKIPPED: the JupyterLab check needs " + ", ".join(missing))
        return 1 if args.require else 0
    problems = check_chapter(args.chapter, chromium)
    for problem in problems:
        print(problem)
    print(f"{args.chapter}: {'FAILED' if problems else 'passed'}; screenshots in {SCREENSHOTS.relative_to(ROOT)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
