"""Show the real source of a flowlib object in a notebook or in the book.

The chapters teach the code that lives in flowlib. Instead of a copy that can
drift, a chapter shows a listing with one code cell::

    show_source(Flow.log_prob)

The cell's output is the function's current source, as a highlighted Python
block: JupyterLab renders it from the ``text/markdown`` output, the book (myst-nb)
renders the same output, and the ``text/plain`` output holds the bare source,
so nbval notices when flowlib's code changes and the chapter was not re-run.

Example:
    >>> from flowlib import Flow
    >>> listing = show_source(Flow.log_prob)
    >>> listing.location
    'flowlib/core.py'
    >>> print(repr(listing).splitlines()[1])
    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
"""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["SourceListing", "show_source"]

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


class SourceListing:
    """The source code of one function, method or class, with where it lives.

    Attributes:
        name: the qualified name, e.g. ``"Flow.log_prob"``.
        location: the file relative to the repository, e.g. ``"flowlib/core.py"``.
        code: the dedented source.
    """

    def __init__(self, name: str, location: str, code: str) -> None:
        self.name = name
        self.location = location
        self.code = code

    def _repr_markdown_(self) -> str:
        longest_run = max((len(run) for run in re.findall(r"`+", self.code)), default=0)
        fence = "`" * max(3, longest_run + 1)
        return f"`{self.location}`, `{self.name}`:\n\n{fence}python\n{self.code}\n{fence}\n"

    def __repr__(self) -> str:
        return f"# {self.location}: {self.name}\n{self.code}"


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, property):
        return obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        return obj.__func__
    return obj


def show_source(obj: Any) -> SourceListing:
    """Return a listing of ``obj``'s source (a function, method, property or class of flowlib).

    Put it last in a code cell to display it. For a property, pass it through
    the class: ``show_source(LULinear.weight)``.

    Raises:
        TypeError: if the object has no Python source (a builtin, an instance).
    """
    target = inspect.unwrap(_unwrap(obj))  # a decorated function's own file, not the decorator's
    try:
        lines, _ = inspect.getsourcelines(target)
        path = Path(inspect.getsourcefile(target) or "")
    except (TypeError, OSError) as error:
        raise TypeError(
            f"show_source: no Python source for {obj!r}; pass a function, method, property or class"
        ) from error
    name = getattr(target, "__qualname__", getattr(target, "__name__", type(target).__name__))
    try:
        location = path.resolve().relative_to(_PACKAGE_PARENT).as_posix()
    except ValueError:
        location = path.name
    return SourceListing(name, location, textwrap.dedent("".join(lines)).rstrip("\n"))
