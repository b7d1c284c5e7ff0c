"""Each chapter's text source (book/src/*.md) and its committed notebook (book/*.ipynb) agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "book" / "src").glob("*.md"))


def test_every_chapter_has_a_source_and_a_notebook() -> None:
    notebooks = {p.stem for p in (ROOT / "book").glob("*.ipynb")}
    sources = {p.stem for p in SOURCES}
    assert notebooks == sources, f"unpaired: notebooks {notebooks - sources}, sources {sources - notebooks}"


def test_sources_and_notebooks_agree() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_notebooks.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_is_committed_executed_without_errors(source: Path) -> None:
    notebook = json.loads((ROOT / "book" / f"{source.stem}.ipynb").read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "run scripts/sync_notebooks.py to execute it"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, "the committed notebook holds an error output"
    text = json.dumps(notebook)
    for leak in ("/work/", "/root/", "/home/", "site-packages"):
        assert leak not in text, f"the notebook's outputs contain a machine path ({leak})"
