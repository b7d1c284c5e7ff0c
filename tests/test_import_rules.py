"""flowlib's layering, checked on the source with ``ast``: which parts of the package may import which.

The rules:

* ``core`` never imports ``train``, ``viz`` or ``data``;
* ``bijections`` never import ``train`` or ``viz``;
* ``data`` never imports ``bijections`` or ``models``;
* ``train`` never imports the command line (``cli``);
* ``core`` never imports ``vi``, and ``vi`` (variational inference, chapter 8)
  never imports ``train``, ``viz``, ``data`` or the command line: it builds on
  ``core``, ``bijections``, ``nets``, ``distributions`` and ``models`` only;
* no module imports a private name (``_name``) from another flowlib module: a
  helper used in two modules is public, with a docstring and in ``__all__``.

Every ``import`` and ``from ... import`` statement counts, at any depth (inside
functions and ``if`` blocks too), absolute (``flowlib.train``) or relative at
any level (``from ..train import Trainer``). So do the imports they cause in
turn: a module imports what the modules it imports import, and importing
``flowlib.x.y`` first runs ``flowlib/__init__.py`` and ``flowlib/x/__init__.py``.
(``importlib.import_module`` with a computed name is not seen.)
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RULES: dict[str, set[str]] = {
    "core": {"train", "viz", "data", "vi"},
    "bijections": {"train", "viz"},
    "data": {"bijections", "models"},
    "train": {"cli"},
    "vi": {"train", "viz", "data", "cli"},
}
"""Area -> the areas it must never import."""

AREAS = {
    "flowlib.core": "core",
    "flowlib.bijections": "bijections",
    "flowlib.data": "data",
    "flowlib.models": "models",
    "flowlib.train": "train",
    "flowlib.viz": "viz",
    "flowlib.vi": "vi",
    "flowlib.cli": "cli",
    "flowlib.__main__": "cli",
}
"""A module belongs to the area of the longest of these names that is it or one of its packages."""


@dataclass(frozen=True)
class Import:
    """One import of a flowlib module: where it is written and which module it loads."""

    path: Path
    line: int
    target: str
    names: tuple[str, ...] = ()


def area_of(module: str) -> str | None:
    for prefix in sorted(AREAS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return AREAS[prefix]
    return None


def module_names(root: Path, package: str = "flowlib") -> dict[str, Path]:
    """Every module of ``package`` under ``root``: dotted name -> file (a package is its ``__init__.py``)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: dict[str, Path], package: str = "flowlib") -> list[Import]:
    """The flowlib modules that ``module``'s source imports, with the line of each statement."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == package or alias.name.startswith(package + "."):
                    found.append(Import(path, node.lineno, alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                if node.level - 1 > len(parts) - 1:
                    continue  # beyond the top-level package: Python raises, nothing to check here
                base_parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not (base == package or base.startswith(package + ".")):
                continue
            names = tuple(alias.name for alias in node.names)
            submodules = [f"{base}.{name}" for name in names if f"{base}.{name}" in known]
            for target in submodules or [base]:
                found.append(Import(path, node.lineno, target, names))
    return found


def with_parents(module: str) -> list[str]:
    """``flowlib.x.y`` -> ``[flowlib, flowlib.x, flowlib.x.y]``: what importing it runs."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def find_violations(root: Path, package: str = "flowlib") -> list[str]:
    """One message per broken rule: ``file:line: rule (the chain of imports that breaks it)``."""
    known = module_names(root, package)
    graph = {module: imports_of(module, path, known, package) for module, path in known.items()}
    messages = []
    for module, path in known.items():
        where = path.relative_to(root).as_posix()
        for edge in graph[module]:
            private = [name for name in edge.names if name.startswith("_") and not name.startswith("__")]
            if private and edge.target != module:
                messages.append(
                    f"{where}:{edge.line}: no private names across modules: imports {', '.join(private)} from "
                    f"{edge.target}; make it public (docstring, __all__) or move it"
                )
        area = area_of(module)
        forbidden = RULES.get(area or "", set())
        if not forbidden:
            continue
        for edge in graph[module]:
            chain = _first_forbidden_chain(edge.target, graph, forbidden)
            if chain is not None:
                bad = area_of(chain[-1])
                messages.append(
                    f"{where}:{edge.line}: {area} must not import {bad} (import chain: {' -> '.join([module, *chain])})"
                )
    return messages


def _first_forbidden_chain(start: str, graph: dict[str, list[Import]], forbidden: set[str]) -> list[str] | None:
    """Breadth-first from ``start`` (and its parents) over the import graph; the shortest chain to a forbidden area."""
    previous: dict[str, str | None] = {}
    queue: deque[str] = deque()
    for name in with_parents(start):
        if name in graph and name not in previous:
            previous[name] = None
            queue.append(name)
    while queue:
        current = queue.popleft()
        if area_of(current) in forbidden:
            chain = [current]
            while previous[chain[-1]] is not None:
                chain.append(previous[chain[-1]])
            return chain[::-1]
        for edge in graph[current]:
            for name in with_parents(edge.target):
                if name in graph and name not in previous:
                    previous[name] = current
                    queue.append(name)
    return None


def test_flowlib_keeps_its_import_rules() -> None:
    violations = find_violations(ROOT)
    assert not violations, "import rules broken:\n" + "\n".join(violations)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "flowlib/__init__.py": "from .core import Flow\n",
    "flowlib/core.py": "import torch\n\n\nclass Flow:\n    pass\n",
    "flowlib/train/__init__.py": "from .trainer import Trainer\n",
    "flowlib/train/trainer.py": "from ..core import Flow\n\n\nclass Trainer:\n    pass\n",
    "flowlib/viz.py": "",
    "flowlib/cli.py": "from .train import Trainer\n",
    "flowlib/data/__init__.py": "from .toy import moons\n",
    "flowlib/data/toy.py": "def moons():\n    pass\n",
    "flowlib/bijections/__init__.py": "from .linear import Linear\n",
    "flowlib/bijections/linear.py": "from ..core import Flow as Linear\n",
    "flowlib/models/__init__.py": "from ..bijections import Linear\n",
}


@pytest.mark.parametrize(
    "planted, expected",
    [
        (  # an import inside a function, relative
            {"flowlib/core.py": "import torch\n\n\ndef helper():\n    from .train import Trainer\n"},
            "flowlib/core.py:5: core must not import train (import chain: flowlib.core -> flowlib.train)",
        ),
        (  # absolute, and to a submodule: its package runs first
            {"flowlib/core.py": "import flowlib.data.toy\n"},
            "flowlib/core.py:1: core must not import data (import chain: flowlib.core -> flowlib.data)",
        ),
        (  # two levels up, `from .. import name`
            {"flowlib/bijections/linear.py": "def plot():\n    from .. import viz\n"},
            "flowlib/bijections/linear.py:2: bijections must not import viz (import chain: "
            "flowlib.bijections.linear -> flowlib.viz)",
        ),
        (  # through another module: data -> models -> bijections
            {"flowlib/data/toy.py": "from ..models import Linear\n"},
            "flowlib/data/toy.py:1: data must not import models (import chain: flowlib.data.toy -> flowlib.models)",
        ),
        (
            {
                "flowlib/data/toy.py": "from ..helpers import x\n",
                "flowlib/helpers.py": "from .bijections import Linear\n",
            },
            "flowlib/data/toy.py:1: data must not import bijections (import chain: flowlib.data.toy -> "
            "flowlib.helpers -> flowlib.bijections)",
        ),
        (
            {"flowlib/train/trainer.py": "if True:\n    from flowlib import cli\n"},
            "flowlib/train/trainer.py:2: train must not import cli "
            "(import chain: flowlib.train.trainer -> flowlib.cli)",
        ),
        (
            {"flowlib/cli.py": "from .train.trainer import _helper\n"},
            "flowlib/cli.py:1: no private names across modules: imports _helper from flowlib.train.trainer",
        ),
    ],
)
def test_the_checker_catches_a_planted_violation(tmp_path: Path, planted: dict[str, str], expected: str) -> None:
    assert find_violations(write(tmp_path / "clean", CLEAN)) == []
    violations = find_violations(write(tmp_path / "planted", {**CLEAN, **planted}))
    assert any(v.startswith(expected) for v in violations), violations


def test_public_functions_and_classes_are_in_all() -> None:
    """A module's public helpers are listed in its ``__all__`` (``__all__ += [...]`` counts)."""
    missing = []
    for path in sorted((ROOT / "flowlib").rglob("*.py")):
        if path.name == "__main__.py":
            continue
        listed: set[str] = set()
        public = []
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                public.append((node.name, node.lineno))
            elif isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                    listed |= {element.value for element in node.value.elts}
        where = path.relative_to(ROOT).as_posix()
        missing += [
            f"{where}:{line}: {name} is public but not in __all__" for name, line in public if name not in listed
        ]
    assert not missing, "\n".join(missing)
