"""Keep each chapter's text source (book/src/NAME.md) and its notebook (book/NAME.ipynb) in sync.

Chapters are written as MyST-markdown notebooks (jupytext) for readable diffs;
the committed ``.ipynb`` is the same notebook, executed, because nbval compares
its stored outputs. Never hand-edit the ``.ipynb``: edit the ``.md``, then run

    python scripts/sync_notebooks.py            # every chapter, executed
    python scripts/sync_notebooks.py 02_composition_and_training
    python scripts/sync_notebooks.py --check    # exit 1 if any pair disagrees

``--check`` compares the cells' types and sources (not outputs); the test suite
runs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parent.parent / "book"
SOURCES = BOOK / "src"


def cells_of(notebook) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def build(source: Path, execute: bool) -> Path:
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata.pop("jupytext", None)
    if execute:
        client = NotebookClient(
            notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}}, record_timing=False
        )
        client.execute()
    target = BOOK / f"{source.stem}.ipynb"
    nbformat.write(notebook, target)
    return target


def check(source: Path) -> str | None:
    target = BOOK / f"{source.stem}.ipynb"
    if not target.exists():
        return f"{target.name} is missing: run python scripts/sync_notebooks.py {source.stem}"
    if cells_of(jupytext.read(source)) != cells_of(nbformat.read(target, as_version=4)):
        return f"{target.name} differs from src/{source.name}: run python scripts/sync_notebooks.py {source.stem}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="chapter names (default: all of book/src/*.md)")
    parser.add_argument("--check", action="store_true", help="only check that every pair agrees")
    parser.add_argument("--no-execute", action="store_true", help="write the notebooks without running them")
    args = parser.parse_args(argv)
    sources = [SOURCES / f"{name}.md" for name in args.chapters] or sorted(SOURCES.glob("*.md"))
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        parser.error(f"no such chapter source: {', '.join(missing)}")
    if args.check:
        problems = [p for p in map(check, sources) if p]
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    for source in sources:
        print(f"building {source.name} ...", flush=True)
        print(f"  wrote {build(source, execute=not args.no_execute).relative_to(BOOK.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
