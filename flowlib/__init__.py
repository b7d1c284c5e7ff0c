"""flowlib: the normalizing-flow library of the course.

Every layer is a :class:`~flowlib.core.Bijection` written in the normalizing
direction (data to noise); a :class:`~flowlib.core.Flow` pairs one with a base
distribution. See the book for the ideas and :mod:`flowlib.testing` for the
checks every layer passes.
"""

from .core import Bijection, Compose, Flow, Inverse, input_checks_enabled, set_input_checks
from .distributions import DiagonalGaussian, StandardNormal

__version__ = "0.1.0"

__all__ = [
    "Bijection",
    "Compose",
    "Inverse",
    "Flow",
    "StandardNormal",
    "DiagonalGaussian",
    "set_input_checks",
    "input_checks_enabled",
]
