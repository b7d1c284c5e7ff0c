"""Keep each chapter's text source (book/src/NAME.md) and its notebook (book/NAME.ipynb) in sync.

Chapters are written as MyST-markdown notebooks (jupytext) for readable diffs;
the committed ``.ipynb`` is the same notebook, executed, because nbval compares
its stored outputs. Never hand-edit the ``.ipynb``: edit the ``.md``, then run

    python scripts/sync_notebooks.py            # every chapter, executed
    python scripts/sync_notebooks.py 02_composition_and_training
    python scripts/sync_notebooks.py --check    # exit 1 if any pair disagrees

``--check`` compares the cells' types, sources and the derived metadata (not
outputs); the test suite runs it.

The notebook gets one thing the text source does not spell out: every cell of
a gated solution (between its ``{solution-start}`` and ``{solution-end}``
cells) is collapsed in JupyterLab through the cell metadata
``jupyter.source_hidden`` (and ``outputs_hidden`` for code), so that a student
sees the exercise, the workspace and the self-check, and the solution is one
click away. A collapsed cell shows its first line, so solution cells start
with a label that gives nothing away (``# Solution: ...`` or ``**Part 1.**``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parent.parent / "book"
SOURCES = BOOK / "src"


SOLUTION_START = re.compile(r"^`{3,}\{solution-start\}", re.MULTILINE)
SOLUTION_END = re.compile(r"^`{3,}\{solution-end\}", re.MULTILINE)


def collapse_solutions(notebook) -> None:
    """Collapse the cells of every gated solution in JupyterLab (see the module docstring)."""
    inside = False
    for cell in notebook.cells:
        starts = cell.cell_type == "markdown" and bool(SOLUTION_START.search(cell.source))
        ends = cell.cell_type == "markdown" and bool(SOLUTION_END.search(cell.source))
        jupyter = dict(cell.metadata.get("jupyter", {}))
        jupyter.pop("source_hidden", None)
        jupyter.pop("outputs_hidden", None)
        if inside and not starts and not ends:
            jupyter["source_hidden"] = True
            if cell.cell_type == "code":
                jupyter["outputs_hidden"] = True
        if jupyter:
            cell.metadata["jupyter"] = jupyter
        else:
            cell.metadata.pop("jupyter", None)
        if starts:
            inside = True
        if ends:
            inside = False


def cells_of(notebook) -> list[tuple[str, str, dict]]:
    return [
        (cell.cell_type, cell.source.strip(), dict(cell.metadata.get("jupyter", {})), list(cell.metadata.get("tags", [])))
        for cell in notebook.cells
    ]


def read_source(source: Path):
    """The text source as a notebook, with the metadata the notebook derives from it."""
    notebook = jupytext.read(source)
    collapse_solutions(notebook)
    return notebook


def build(source: Path, execute: bool) -> Path:
    notebook = read_source(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata.pop("jupytext", None)
    if execute:
        client = NotebookClient(
            notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}}, record_timing=False
        )
        started = time.perf_counter()
        client.execute()
        print(f"  executed in {time.perf_counter() - started:.1f} s", flush=True)
    target = BOOK / f"{source.stem}.ipynb"
    nbformat.write(notebook, target)
    return target


def check(source: Path) -> str | None:
    target = BOOK / f"{source.stem}.ipynb"
    if not target.exists():
        return f"{target.name} is missing: run python scripts/sync_notebooks.py {source.stem}"
    if cells_of(read_source(source)) != cells_of(nbformat.read(target, as_version=4)):
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
