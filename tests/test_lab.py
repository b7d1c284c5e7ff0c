"""A student's check: one chapter opened in JupyterLab (with jupyterlab-myst) in headless Chromium.

Fails if an exercise or another MyST directive renders as raw text, if fewer
exercises render than the notebook holds, if a solution cell is in view, or if
a ``show_source`` listing shows no code. Screenshots go to
``_build/screenshots/lab-*.png``, next to the reader's check of the book.
Skipped with a visible reason without JupyterLab, Playwright or Chromium on a
user's machine; required in CI (``CI=true``).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_lab", ROOT / "scripts" / "check_lab.py")
check_lab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_lab)

CHAPTER = "04_coupling_flows"


def test_a_chapter_renders_for_a_student_in_jupyterlab() -> None:
    missing = []
    chromium = check_lab.find_chromium()
    if chromium is None:
        missing.append("Chromium")
    for module in ("jupyterlab", "jupyterlab_myst", "playwright"):
        if importlib.util.find_spec(module) is None:
            missing.append(module)
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the JupyterLab check needs {missing} in CI (make install-lab; apt-get install chromium)")
        pytest.skip(f"the JupyterLab check was NOT run: missing {missing} (make install-lab)")
    problems = check_lab.check_chapter(CHAPTER, chromium)
    assert not problems, f"{CHAPTER} in JupyterLab:\n" + "\n".join(problems)
    assert (check_lab.SCREENSHOTS / f"lab-{CHAPTER}-top.png").is_file()


def test_the_lab_check_catches_raw_directives(tmp_path: Path) -> None:
    """A notebook whose exercise does not render (an indented fence shows as raw text) fails the check."""
    chromium = check_lab.find_chromium()
    if chromium is None or importlib.util.find_spec("playwright") is None or importlib.util.find_spec("jupyterlab") is None:
        pytest.skip("the JupyterLab check's self-test needs Chromium, JupyterLab and Playwright")
    import nbformat

    planted = ROOT / "_build" / "lab-self-test.ipynb"
    planted.parent.mkdir(exist_ok=True)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("Text.\n\n    ````{exercise} Broken\n    :label: ex-broken\n    Do it.\n    ````"),
        nbformat.v4.new_code_cell("from flowlib.source import show_source"),
    ]
    nbformat.write(notebook, planted)
    try:
        problems = check_lab.check_chapter("self-test", chromium, screenshots=tmp_path, path=planted)
    finally:
        planted.unlink()
    assert any("raw MyST" in p for p in problems), problems
    assert any("0 exercises render" in p for p in problems), problems
