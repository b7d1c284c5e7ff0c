r"""Numerical constants shared by flowlib's modules, each defined once.

Example:
    >>> import math
    >>> LOG_2PI == math.log(2 * math.pi)
    True
"""

from __future__ import annotations

import math

__all__ = ["LOG_2PI"]

LOG_2PI: float = math.log(2.0 * math.pi)
r""":math:`\log 2\pi`, the constant of every Gaussian log-density.

:math:`\log\mathcal{N}(z; 0, 1) = -\tfrac12 z^2 - \tfrac12\log 2\pi`.
"""
