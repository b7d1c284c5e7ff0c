"""The bijections flowlib provides, one module per family."""

from .elementwise import ElementwiseAffine
from .linear import Linear, Permutation

__all__ = ["ElementwiseAffine", "Linear", "Permutation"]
