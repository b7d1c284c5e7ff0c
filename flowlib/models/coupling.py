r"""Coupling flows: NICE, RealNVP, neural spline flows and RealNVP's multi-scale image flow.

Every constructor returns a :class:`~flowlib.core.Flow` with a standard normal
base and coupling layers whose conditioners start at zero, so a fresh model is
the identity map and its initial NLL is that of a standard normal.

Example:
    >>> import torch
    >>> flow = realnvp(features=2, layers=8)
    >>> sum(p.numel() for p in flow.parameters())
    136208
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..bijections import (
    AdditiveCoupling,
    AffineCoupling,
    FactorOut,
    Logit,
    Scaling,
    SplineCoupling,
    Squeeze,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
)
from ..core import Bijection, Compose, Flow, as_event_shape
from ..distributions import StandardNormal

__all__ = ["nice", "realnvp", "spline_flow", "multiscale_realnvp"]


def _masks(features: int, layers: int, kind: str):
    if kind == "half":
        return [half_mask(features, first=i % 2 == 0) for i in range(layers)]
    if kind == "alternating":
        return [alternating_mask(features, even=i % 2 == 0) for i in range(layers)]
    raise ValueError(f"mask must be 'half' or 'alternating', got {kind!r}")


def nice(features: int, layers: int = 4, hidden: Sequence[int] = (128, 128), mask: str = "half") -> Flow:
    """NICE: additive couplings with alternating halves, then a diagonal scaling layer.

    Example:
        >>> flow = nice(features=2, layers=4, hidden=(16,))
        >>> len(flow.bijection), type(flow.bijection[-1]).__name__   # 4 couplings, then the scaling
        (5, 'Scaling')
    """
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
    """A neural spline flow: rational-quadratic spline couplings (task C: 98,675 parameters in 2-D).

    Example:
        >>> sum(p.numel() for p in spline_flow(2).parameters())
        98675
    """
    couplings = [
        SplineCoupling(m, hidden=hidden, bins=bins, bound=bound, context_features=context_features)
        for m in _masks(features, layers, mask)
    ]
    return Flow(StandardNormal(features), Compose(*couplings))


def _scale_block(shape, hidden_channels: int, checkerboards: int, channel_couplings: int, bound: float) -> list[Bijection]:
    """Checkerboard couplings at full resolution, a squeeze, then channel-wise couplings."""
    layers: list[Bijection] = [
        AffineCoupling(checkerboard_mask(shape, parity=i % 2), hidden=(hidden_channels,), bound=bound)
        for i in range(checkerboards)
    ]
    squeeze = Squeeze(shape)
    layers.append(squeeze)
    squeezed = squeeze.output_event_shape
    layers += [
        AffineCoupling(channel_mask(squeezed, first=i % 2 == 0), hidden=(hidden_channels,), bound=bound)
        for i in range(channel_couplings)
    ]
    return layers


def multiscale_realnvp(
    event_shape: Iterable[int] = (1, 8, 8),
    hidden_channels: int = 64,
    alpha: float = 0.05,
    bound: float = 3.0,
) -> Flow:
    r"""RealNVP's multi-scale architecture for small images with pixel values in :math:`[0, 1)`.

    ``Logit`` preprocessing, then two scales. Scale 1: three checkerboard
    couplings at full resolution, a squeeze to :math:`(4C, H/2, W/2)`, three
    channel-wise couplings; half of the channels are then factored out to the
    base. Scale 2 (on the other half): three checkerboard couplings, a squeeze,
    four channel-wise couplings. Conditioners are small convolutional networks
    (:class:`~flowlib.nets.ConvNet`) with a zero last layer.

    The model is for dequantized data (:func:`flowlib.data.dequantize`) and
    includes the logit's log-determinant, so its NLL converts to bits/dim with
    :func:`flowlib.data.bits_per_dim` and no ``extra_logdet``.

    Args:
        event_shape: ``(C, H, W)`` with ``H`` and ``W`` divisible by 4.
        hidden_channels: width of the conditioners.
        alpha: the logit's squeeze towards the centre (see :class:`~flowlib.bijections.Logit`).
        bound: bound of the couplings' log-scales.

    Example:
        >>> import torch
        >>> flow = multiscale_realnvp((1, 8, 8), hidden_channels=8)
        >>> flow.log_prob(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4])
    """
    c, h, w = as_event_shape(event_shape)
    if h % 4 or w % 4:
        raise ValueError(f"multiscale_realnvp: H and W must be divisible by 4, got {(c, h, w)}")
    head = Compose(Logit((c, h, w), alpha), *_scale_block((c, h, w), hidden_channels, 3, 3, bound))
    kept = 2 * c
    tail = Compose(*_scale_block((kept, h // 2, w // 2), hidden_channels, 3, 4, bound))
    return Flow(StandardNormal(c * h * w), FactorOut(head, 4 * c - kept, tail))
