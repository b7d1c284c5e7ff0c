"""The bijections flowlib provides, one module per family.

* :mod:`~flowlib.bijections.elementwise`: the same scalar map on every coordinate
* :mod:`~flowlib.bijections.linear`: general, triangular, LU and permutation matrices
* :mod:`~flowlib.bijections.coupling`: NICE, RealNVP and spline couplings, masks
* :mod:`~flowlib.bijections.multiscale`: squeeze, reshape, multi-scale factor-out
* :mod:`~flowlib.bijections.scalar`: the scalar transforms used inside couplings
"""

from .coupling import (
    AdditiveCoupling,
    AffineCoupling,
    Coupling,
    SplineCoupling,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
)
from .elementwise import (
    ElementwiseAffine,
    ElementwiseSpline,
    HigherOrderPerturbation,
    Logit,
    MonotoneMLP,
    Scaling,
    Sigmoid,
)
from .linear import Linear, LULinear, Permutation, TriangularLinear
from .multiscale import FactorOut, Reshape, Squeeze

__all__ = [
    "ElementwiseAffine",
    "Scaling",
    "Sigmoid",
    "Logit",
    "HigherOrderPerturbation",
    "MonotoneMLP",
    "ElementwiseSpline",
    "Linear",
    "TriangularLinear",
    "LULinear",
    "Permutation",
    "Coupling",
    "AdditiveCoupling",
    "AffineCoupling",
    "SplineCoupling",
    "half_mask",
    "alternating_mask",
    "checkerboard_mask",
    "channel_mask",
    "Squeeze",
    "Reshape",
    "FactorOut",
]
