r"""Ready-made flows: the models the chapters train, built from flowlib's layers.

Every constructor returns a :class:`~flowlib.core.Flow` with a standard normal
base and layers whose conditioners start at zero, so a fresh model is the
identity map and its initial NLL is that of a standard normal.

Example:
    >>> import torch
    >>> flow = realnvp(features=2, layers=8)
    >>> sum(p.numel() for p in flow.parameters())
    136208
"""

from __future__ import annotations

from collections.abc import Sequence

from .core import Compose, Flow
from .bijections import (
    AdditiveCoupling,
    AffineCoupling,
    Scaling,
    SplineCoupling,
    alternating_mask,
    half_mask,
)
from .distributions import StandardNormal

__all__ = ["nice", "realnvp", "spline_flow"]


def _masks(features: int, layers: int, kind: str):
    if kind == "half":
        return [half_mask(features, first=i % 2 == 0) for i in range(layers)]
    if kind == "alternating":
        return [alternating_mask(features, even=i % 2 == 0) for i in range(layers)]
    raise ValueError(f"mask must be 'half' or 'alternating', got {kind!r}")


def nice(features: int, layers: int = 4, hidden: Sequence[int] = (128, 128), mask: str = "half") -> Flow:
    """NICE: additive couplings with alternating halves, then a diagonal scaling layer."""
    couplings = [AdditiveCoupling(m, hidden=hidden) for m in _masks(features, layers, mask)]
    return Flow(StandardNormal(features), Compose(*couplings, Scaling(features)))


def realnvp(
    features: int,
    layers: int = 8,
    hidden: Sequence[int] = (128, 128),
    bound: float = 5.0,
    mask: str = "half",
    context_features: int = 0,
) -> Flow:
    """RealNVP for vectors: ``layers`` affine couplings whose kept half alternates.

    With ``features=2, layers=8, hidden=(128, 128)`` this is task A of the
    benchmark protocol (136,208 parameters).
    """
    couplings = [
        AffineCoupling(m, hidden=hidden, bound=bound, context_features=context_features)
        for m in _masks(features, layers, mask)
    ]
    return Flow(StandardNormal(features), Compose(*couplings))


def spline_flow(
    features: int,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    bins: int = 8,
    bound: float = 5.0,
    mask: str = "half",
    context_features: int = 0,
) -> Flow:
    """A neural spline flow: rational-quadratic spline couplings (task C: 98,675 parameters in 2-D)."""
    couplings = [
        SplineCoupling(m, hidden=hidden, bins=bins, bound=bound, context_features=context_features)
        for m in _masks(features, layers, mask)
    ]
    return Flow(StandardNormal(features), Compose(*couplings))
