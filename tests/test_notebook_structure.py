"""The chapters work for a student in JupyterLab, not only for a reader of the book.

Rules checked on every committed chapter notebook (book/*.ipynb):

* no code listing exists only as a directive (a ``{literalinclude}`` shows
  nothing in JupyterLab): listings are ``show_source(...)`` code cells;
* each exercise stands alone in its markdown cell, and its solution starts in
  a separate cell that holds only the ``{solution-start}`` directive;
* a coding exercise (``:class: coding``, or a statement that asks for code) is
  followed by a workspace cell (tag ``workspace``) and a one-line self-check
  cell (tag ``self-check``) that calls a ``flowlib.testing.self_check*``
  function and printed its verdict in the committed notebook;
* every cell of a gated solution is collapsed (``jupyter.source_hidden``);
* solution code binds no name that the chapter or a workspace binds, so
  running a solution never overwrites a student's ``Sinh`` or the chapter's ``x``;
* an exercise whose solution or workspace reads a variable the chapter
  defines (not just imports) says "run the chapter first".
"""

from __future__ import annotations

import ast
import builtins
import re
import symtable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))

EXERCISE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{exercise\}[^\n]*\n(?P<body>.*?)^(?P=fence)\s*$", re.M | re.S)
SOLUTION_START = re.compile(r"^`{3,}\{solution-start\}\s*(?P<label>\S+)", re.M)
SOLUTION_END = re.compile(r"^`{3,}\{solution-end\}", re.M)
SOLUTION = re.compile(r"^`{3,}\{solution\}\s*(?P<label>\S+)", re.M)
LABEL = re.compile(r"^:label:\s*(\S+)", re.M)
CODING_CLASS = re.compile(r"^:class:[^\n]*\bcoding\b", re.M)
# A statement that asks the student to write code must be marked as a coding exercise.
ASKS_FOR_CODE = re.compile(
    r"\b(implement|subclass|write (?:a|an|your|the)\b[^.]{0,60}\b(?:layer|function|class|bijection|code|loop)"
    r"|flowlib\.testing|check_inverse|check_logdet|check_autoregressive|self_check)",
    re.I,
)
RUN_CHAPTER_FIRST = re.compile(r"run the chapter first", re.I)
BUILTINS = set(dir(builtins)) | {"display", "get_ipython", "_", "__"}


@dataclass
class Exercise:
    label: str
    cell: int
    text: str
    coding: bool
    between: list[int] = field(default_factory=list)  # cells after the exercise, before its solution
    solution: list[int] = field(default_factory=list)  # the solution's cells (gated: inside start/end)


def _load(path: Path):
    return nbformat.read(path, as_version=4)


def _code(cell) -> str:
    """A code cell's source without IPython magics (``%...``, ``!...``)."""
    return "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))


def _exercises(notebook) -> list[Exercise]:
    cells = notebook.cells
    found: list[Exercise] = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown":
            continue
        for match in EXERCISE.finditer(cell.source):
            label = LABEL.search(match.group("body"))
            found.append(
                Exercise(
                    label=label.group(1) if label else f"<unlabelled exercise in cell {i}>",
                    cell=i,
                    text=match.group("body"),
                    coding=bool(CODING_CLASS.search(match.group("body"))),
                )
            )
    for exercise in found:
        j = exercise.cell + 1
        while j < len(cells):
            source = cells[j].source if cells[j].cell_type == "markdown" else ""
            start = SOLUTION_START.search(source)
            plain = SOLUTION.search(source)
            if start and start.group("label") == exercise.label:
                k = j + 1
                while k < len(cells):
                    exercise.solution.append(k)
                    if cells[k].cell_type == "markdown" and SOLUTION_END.search(cells[k].source):
                        break
                    k += 1
                break
            if plain and plain.group("label") == exercise.label:
                exercise.solution.append(j)
                break
            if cells[j].cell_type == "markdown" and EXERCISE.search(source):
                break
            exercise.between.append(j)
            j += 1
    return found


class _Bindings(ast.NodeVisitor):
    """Names bound at module level (not inside functions/classes/comprehensions), split by kind."""

    def __init__(self) -> None:
        self.assigned: set[str] = set()
        self.imported: set[str] = set()

    def _target(self, node: ast.AST) -> None:
        for name in ast.walk(node):
            if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store):
                self.assigned.add(name.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._target(target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._target(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._target(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._target(node.target)

    def visit_For(self, node: ast.For) -> None:
        self._target(node.target)
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._target(item.optional_vars)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.assigned.add(node.name)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.assigned.add(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.assigned.add(node.name)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imported.add((alias.asname or alias.name).split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.imported.add(alias.asname or alias.name)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return

    def visit_ListComp(self, node: ast.AST) -> None:
        return

    visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_ListComp  # type: ignore[assignment]


def _bindings(sources: list[str]) -> _Bindings:
    found = _Bindings()
    for source in sources:
        found.visit(ast.parse(source))
    return found


def _free_names(sources: list[str]) -> set[str]:
    """Names the cells read but do not bind themselves (run as one module, in order): what they need from outside."""
    top = symtable.symtable("\n".join(sources) + "\n", "<cells>", "exec")
    free: set[str] = set()

    def visit(table: symtable.SymbolTable, is_top: bool) -> None:
        for symbol in table.get_symbols():
            if not symbol.is_referenced():
                continue
            if is_top and not (symbol.is_assigned() or symbol.is_imported()):
                free.add(symbol.get_name())
            elif not is_top and symbol.is_global() and not symbol.is_declared_global():
                free.add(symbol.get_name())
        for child in table.get_children():
            visit(child, False)

    visit(top, True)
    bound_at_top = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    return free - bound_at_top


def _split(notebook) -> tuple[list[Exercise], set[int], set[int]]:
    """The exercises, the indices of solution cells and of workspace/self-check cells."""
    exercises = _exercises(notebook)
    solution_cells = {i for e in exercises for i in e.solution}
    student_cells = {
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and {"workspace", "self-check"} & set(cell.metadata.get("tags", []))
    }
    return exercises, solution_cells, student_cells


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem, scope="module")
def notebook(request):
    return _load(request.param)


def test_every_chapter_has_exercises(notebook) -> None:
    assert _exercises(notebook), "a chapter without exercises"


def test_no_code_listing_exists_only_as_a_directive(notebook) -> None:
    offenders = [
        i for i, cell in enumerate(notebook.cells) if cell.cell_type == "markdown" and "{literalinclude}" in cell.source
    ]
    assert not offenders, (
        f"cells {offenders} use {{literalinclude}}, which JupyterLab cannot show: "
        "use a code cell with flowlib.source.show_source(...) (tag remove-input)"
    )


def test_each_exercise_stands_alone_and_its_solution_starts_in_its_own_cell(notebook) -> None:
    problems = []
    for exercise in _exercises(notebook):
        source = notebook.cells[exercise.cell].source
        rest = EXERCISE.sub("", source).strip()
        if rest:
            problems.append(f"{exercise.label}: its cell holds more than the exercise: {rest[:60]!r}")
        if not exercise.solution:
            problems.append(f"{exercise.label}: no solution follows it")
            continue
        first = notebook.cells[exercise.solution[0] - 1]
        if SOLUTION_START.search(first.source):
            directive_only = re.sub(r"^(`{3,})\{solution-start\}.*?^\1\s*$", "", first.source, flags=re.M | re.S)
            if directive_only.strip():
                problems.append(
                    f"{exercise.label}: the {{solution-start}} cell holds more than the directive "
                    f"(JupyterLab would show it): {directive_only.strip()[:60]!r}"
                )
    assert not problems, "\n".join(problems)


def test_coding_exercises_have_a_workspace_and_a_self_check(notebook) -> None:
    problems = []
    for exercise in _exercises(notebook):
        if not exercise.coding:
            if ASKS_FOR_CODE.search(exercise.text):
                problems.append(f"{exercise.label} asks for code: give it ':class: coding', a workspace and a self-check")
            continue
        tags = [set(notebook.cells[i].metadata.get("tags", [])) for i in exercise.between]
        workspaces = [i for i, t in zip(exercise.between, tags) if "workspace" in t]
        checks = [i for i, t in zip(exercise.between, tags) if "self-check" in t]
        if not workspaces:
            problems.append(f"{exercise.label}: no workspace cell (a code cell tagged 'workspace') after it")
        if len(checks) != 1:
            problems.append(f"{exercise.label}: expected one self-check cell (tag 'self-check'), found {len(checks)}")
            continue
        cell = notebook.cells[checks[0]]
        lines = [line for line in cell.source.strip().splitlines() if line.strip() and not line.startswith("#")]
        if len(lines) != 1 or not re.match(r"^\s*self_check\w*\(", lines[0]):
            problems.append(f"{exercise.label}: the self-check must be one line calling self_check...(): {cell.source!r}")
        printed = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if "Self-check of" not in printed:
            problems.append(f"{exercise.label}: the committed self-check printed no verdict: {printed!r}")
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            problems.append(f"{exercise.label}: the self-check raised")
    assert not problems, "\n".join(problems)


def _gated_cells(notebook, exercises: list[Exercise]) -> list[int]:
    """The cells of gated solutions between their start and end cells (what JupyterLab must collapse)."""
    return [
        i
        for e in exercises
        for i in e.solution
        if not (notebook.cells[i].cell_type == "markdown" and SOLUTION_END.search(notebook.cells[i].source))
        and not SOLUTION.search(notebook.cells[i].source if notebook.cells[i].cell_type == "markdown" else "")
    ]


def test_every_solution_cell_is_collapsed_behind_a_neutral_first_line(notebook) -> None:
    exercises = _exercises(notebook)
    problems = []
    for i in _gated_cells(notebook, exercises):
        cell = notebook.cells[i]
        jupyter = cell.metadata.get("jupyter", {})
        if not jupyter.get("source_hidden") or (cell.cell_type == "code" and not jupyter.get("outputs_hidden")):
            problems.append(f"cell {i} ({cell.cell_type}) of a solution is not collapsed: run scripts/sync_notebooks.py")
        first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        # JupyterLab shows a collapsed cell's first line: it must be a label, not the start of the answer.
        label = first.startswith("#") if cell.cell_type == "code" else re.fullmatch(r"\*\*[^*]+\*\*", first.strip())
        if not label:
            kind = "a '# Solution: ...' comment" if cell.cell_type == "code" else "a bold label line such as **Part 1.**"
            problems.append(f"cell {i} of a solution starts with {first[:50]!r}: start it with {kind}")
    assert not problems, "\n".join(problems)


def test_solution_code_does_not_overwrite_the_chapters_or_the_students_names(notebook) -> None:
    exercises, solution_cells, student_cells = _split(notebook)
    code = [(i, _code(c)) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    chapter = _bindings([s for i, s in code if i not in solution_cells and i not in student_cells])
    students = _bindings([s for i, s in code if i in student_cells])
    protected = (chapter.assigned | students.assigned) - {"_"}
    problems = []
    for exercise in exercises:
        solution = _bindings([s for i, s in code if i in exercise.solution])
        clash = solution.assigned & protected
        if clash:
            problems.append(f"{exercise.label}: the solution rebinds {sorted(clash)}")
    assert not problems, "\n".join(problems) + "\n(give solution objects their own names)"


def test_exercises_that_need_the_chapters_variables_say_so(notebook) -> None:
    exercises, solution_cells, student_cells = _split(notebook)
    code = {i: _code(c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"}
    chapter = _bindings([s for i, s in code.items() if i not in solution_cells and i not in student_cells])
    needs_chapter = chapter.assigned - chapter.imported
    problems = []
    for exercise in exercises:
        own = [code[i] for i in exercise.solution + exercise.between if i in code]
        used = _free_names(own) - BUILTINS
        needed = used & needs_chapter
        if needed and not RUN_CHAPTER_FIRST.search(exercise.text):
            problems.append(f"{exercise.label} uses the chapter's {sorted(needed)} but does not say 'run the chapter first'")
    assert not problems, "\n".join(problems)


def test_the_structure_checks_catch_planted_problems() -> None:
    """The rules above are not vacuous: a notebook that breaks each one fails it."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1\nclass Sinh: pass"),
        nbformat.v4.new_markdown_cell(
            "````{exercise} Write a layer\n:label: ex-bad\n\nImplement a layer and check it with check_logdet.\n````\n"
            "Extra text in the same cell."
        ),
        nbformat.v4.new_markdown_cell("````{solution-start} ex-bad\n:class: dropdown\n````\nThe answer is visible."),
        nbformat.v4.new_code_cell("x = 2\nclass Sinh: pass\nprint(x)"),
        nbformat.v4.new_markdown_cell("````{solution-end}\n````"),
        nbformat.v4.new_markdown_cell("```{literalinclude} ../flowlib/core.py\n:pyobject: Flow\n```"),
    ]
    failures = 0
    for check in (
        test_no_code_listing_exists_only_as_a_directive,
        test_each_exercise_stands_alone_and_its_solution_starts_in_its_own_cell,
        test_coding_exercises_have_a_workspace_and_a_self_check,
        test_every_solution_cell_is_collapsed_behind_a_neutral_first_line,
        test_solution_code_does_not_overwrite_the_chapters_or_the_students_names,
    ):
        with pytest.raises(AssertionError):
            check(nb)
        failures += 1
    assert failures == 5
    nb.cells[3] = nbformat.v4.new_code_cell("print(x + 1)")
    with pytest.raises(AssertionError, match="run the chapter first"):
        test_exercises_that_need_the_chapters_variables_say_so(nb)
