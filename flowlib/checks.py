r"""Argument checks shared by flowlib's modules, with one exception policy.

* a value of the **wrong type** (a float where an int is needed, a string, a
  bool where a number is needed) raises :class:`TypeError`;
* a value of the right type but a **wrong value** (a negative count, an
  infinite learning rate, a seed out of range) raises :class:`ValueError`.

Each check returns the value converted to a plain ``int`` or ``float``, and its
message names the argument (prefixed by its owner, e.g. ``"Trainer: lr"``),
what was expected and what was given. Tensor inputs are checked by
:func:`flowlib.core.check_tensor` instead.

Example:
    >>> check_int("moons: n", 5, minimum=1)
    5
    >>> check_float("Trainer: lr", -0.1, above=0)
    Traceback (most recent call last):
    ...
    ValueError: Trainer: lr must be > 0, got -0.1
    >>> check_int("Trainer: batch_size", 2.5, minimum=1)
    Traceback (most recent call last):
    ...
    TypeError: Trainer: batch_size must be a positive int, got float 2.5
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

__all__ = ["check_int", "check_float", "check_seed", "SEED_BOUND"]

SEED_BOUND = 2**32
"""Seeds of the data functions lie in ``[0, SEED_BOUND)``, the range numpy's and sklearn's generators accept."""


def _number_text(value: float) -> str:
    """``2**32`` for large powers of two (seed bounds), else the shortest form (``0``, ``0.5``, ``1e-10``)."""
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return f"{value:g}"


def _range_text(
    minimum: float | None, above: float | None, below: float | None
) -> str:
    """``">= 0"``, ``"> 0"``, ``"< 0.5"``, ``"in [0, 0.5)"`` or ``""`` for no bound."""
    low = None if minimum is None and above is None else ("[" if above is None else "(")
    low_value = minimum if above is None else above
    if low is not None and below is not None:
        return f"in {low}{_number_text(low_value)}, {_number_text(below)})"
    if low is not None:
        return f"{'>=' if low == '[' else '>'} {_number_text(low_value)}"
    if below is not None:
        return f"< {_number_text(below)}"
    return ""


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    below: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """Return ``value`` as an ``int`` after checking ``minimum <= value < below`` (either bound optional).

    Anything with ``__index__`` (a Python or numpy integer) is an int; ``bool``
    is not (``True`` is almost always a mistake for a count).

    Raises:
        TypeError: if ``value`` is not an integer (or ``None`` with ``allow_none``).
        ValueError: if it is out of range.

    Example:
        >>> check_int("seed", 7, minimum=0, below=SEED_BOUND)
        7
        >>> check_int("eval_every", None, minimum=1, allow_none=True) is None
        True
    """
    if value is None and allow_none:
        return None
    if minimum == 1 and below is None:
        expected = "a positive int"
    else:
        bounds = _range_text(minimum, None, below)
        expected = "an int" + (f" {bounds}" if bounds else "")
    if allow_none:
        expected += " or None"
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {expected}, got bool {value!r}")
    try:
        number = operator.index(value)
    except TypeError as error:
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}") from error
    if (minimum is not None and number < minimum) or (below is not None and number >= below):
        raise ValueError(f"{name} must be {expected}, got {number}")
    return number


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    allow_none: bool = False,
    hint: str | None = None,
) -> float | None:
    """Return ``value`` as a finite ``float`` after checking its bounds.

    ``minimum`` is an inclusive lower bound, ``above`` an exclusive one,
    ``below`` an exclusive upper bound; ``hint`` is added to the message of a
    value out of range. Ints and numpy floats are real numbers; ``bool`` and
    strings are not.

    Raises:
        TypeError: if ``value`` is not a real number (or ``None`` with ``allow_none``).
        ValueError: if it is NaN, infinite or out of range.

    Example:
        >>> check_float("moons: noise", 0.1, minimum=0)
        0.1
        >>> check_float("Logit: alpha", 0.5, minimum=0, below=0.5)
        Traceback (most recent call last):
        ...
        ValueError: Logit: alpha must be in [0, 0.5), got 0.5
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        expected = "a real number" + (" or None" if allow_none else "")
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}")
    too_low = (minimum is not None and number < minimum) or (above is not None and number <= above)
    if too_low or (below is not None and number >= below):
        note = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must be {_range_text(minimum, above, below)}{note}, got {number!r}")
    return number


def check_seed(name: str, value: Any) -> int:
    """A seed for numpy, sklearn and ``torch.Generator``: an int in ``[0, 2**32)``.

    Example:
        >>> check_seed("digits: seed", -1)
        Traceback (most recent call last):
        ...
        ValueError: digits: seed must be an int in [0, 2**32), got -1
    """
    return check_int(name, value, minimum=0, below=SEED_BOUND)
