"""The bijections flowlib provides, one module per family.

* :mod:`~flowlib.bijections.elementwise`: the same scalar map on every coordinate
* :mod:`~flowlib.bijections.linear`: general, triangular, LU and permutation matrices
* :mod:`~flowlib.bijections.coupling`: NICE, RealNVP and spline couplings, masks
* :mod:`~flowlib.bijections.multiscale`: squeeze, reshape, multi-scale factor-out
* :mod:`~flowlib.bijections.scalar`: the scalar transforms used inside couplings
* :mod:`~flowlib.bijections.autoregressive`: MAF and IAF layers (masked autoregressive)
* :mod:`~flowlib.bijections.residual`: invertible and low-rank residual blocks, log-det estimators
* :mod:`~flowlib.bijections.planar`: planar and radial flows
"""

from .autoregressive import InverseAutoregressive, MaskedAutoregressive
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
from .glow import ActNorm, GlowStep, InvertibleConv1x1, LUInvertibleConv1x1, random_rotation
from .linear import Linear, LULinear, Permutation, TriangularLinear
from .multiscale import FactorOut, Reshape, Squeeze
from .planar import Planar, Radial
from .residual import InvertibleResidual, LowRankResidual, logdet_mode

__all__ = [
    "MaskedAutoregressive",
    "InverseAutoregressive",
    "ActNorm",
    "GlowStep",
    "InvertibleConv1x1",
    "LUInvertibleConv1x1",
    "random_rotation",
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
    "InvertibleResidual",
    "LowRankResidual",
    "logdet_mode",
    "Planar",
    "Radial",
]
