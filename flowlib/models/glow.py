r"""Glow: a multi-scale image flow of actnorm, invertible 1x1 convolutions and affine couplings.

Each level squeezes the image (:math:`(C, H, W) \to (4C, H/2, W/2)`), runs
``steps`` Glow steps (:class:`~flowlib.bijections.GlowStep`) and, except at the
last level, *splits*: half of the channels leave the flow. Glow gives the
half that leaves a learned conditional prior,

.. math::

    p(z_{\text{out}} \mid h) = \mathcal{N}\big(z_{\text{out}};\ \mu(h),\ \operatorname{diag}\sigma(h)^2\big),

where :math:`h` is the half that stays and :math:`\mu, \log\sigma` come from a
convolution that starts at zero. As a bijection that is an affine coupling on
the leaving half, :math:`\varepsilon = (z_{\text{out}} - \mu(h)) / \sigma(h)`,
followed by a standard normal for :math:`\varepsilon`: the model below builds
the prior that way, so that every model in flowlib is
``Flow(StandardNormal, bijection)`` and temperature sampling scales every
prior's standard deviation at once. The top level ends in a learned
per-coordinate Gaussian prior, an element-wise affine map that starts at the
identity.

Example:
    >>> import torch
    >>> flow = glow((1, 8, 8), levels=2, steps=2, hidden_channels=16)
    >>> x = torch.rand(3, 1, 8, 8)
    >>> flow.log_prob(x).shape, flow.sample(2, temperature=0.7).shape
    (torch.Size([3]), torch.Size([2, 1, 8, 8]))
    >>> z = encode(flow, x)          # the full multi-scale latent, flat
    >>> torch.allclose(decode(flow, z), x, atol=1e-4)
    True
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ..bijections import (
    ActNorm,
    AffineCoupling,
    ElementwiseAffine,
    FactorOut,
    GlowStep,
    InvertibleConv1x1,
    Logit,
    LUInvertibleConv1x1,
    Permutation,
    Reshape,
    Squeeze,
    channel_mask,
)
from ..core import Bijection, Compose, Flow, as_event_shape
from ..distributions import StandardNormal

__all__ = ["glow", "encode", "decode", "PERMUTATIONS"]

PERMUTATIONS = ("conv1x1", "conv1x1-plain", "reverse", "shuffle")


def _mixing_layer(permutation: str, shape: torch.Size, generator: torch.Generator) -> Bijection:
    """What sits between actnorm and the coupling: a learned 1x1 convolution or a fixed channel permutation."""
    channels = shape[0]
    if permutation == "conv1x1":
        return LUInvertibleConv1x1(shape, generator)
    if permutation == "conv1x1-plain":
        return InvertibleConv1x1(shape, generator)
    if permutation == "reverse":
        return Permutation.reverse(channels, shape)
    return Permutation.random(channels, shape, generator=generator)


def _step(shape: torch.Size, hidden_channels: int, permutation: str, bound: float, generator: torch.Generator) -> Bijection:
    if permutation == "conv1x1":
        return GlowStep(shape, hidden_channels, lu=True, bound=bound, generator=generator)
    if permutation == "conv1x1-plain":
        return GlowStep(shape, hidden_channels, lu=False, bound=bound, generator=generator)
    coupling = AffineCoupling(channel_mask(shape, first=True), hidden=(hidden_channels,), bound=bound)
    return Compose(ActNorm(shape), _mixing_layer(permutation, shape, generator), coupling)


def _split_prior(shape: torch.Size, hidden_channels: int, bound: float) -> Bijection:
    """Glow's learned prior for the leaving half (the first C/2 channels), given the staying half, as a coupling."""
    return AffineCoupling(channel_mask(shape, first=False), hidden=(hidden_channels,), bound=bound)


def _level(
    shape: torch.Size, levels_left: int, steps: int, hidden_channels: int, permutation: str, bound: float,
    generator: torch.Generator, split_prior: bool = True,
) -> Bijection:  # fmt: skip
    """Squeeze, ``steps`` flow steps, then split (with the learned prior) and recurse, or the top prior."""
    squeeze = Squeeze(shape)
    squeezed = squeeze.output_event_shape
    layers: list[Bijection] = [squeeze]
    layers += [_step(squeezed, hidden_channels, permutation, bound, generator) for _ in range(steps)]
    if levels_left == 1:
        layers.append(ElementwiseAffine(torch.ones(squeezed), torch.zeros(squeezed)))  # the learned top prior
        return Compose(*layers)
    channels = squeezed[0]
    if split_prior:
        layers.append(_split_prior(squeezed, hidden_channels, bound))
    kept = torch.Size((channels - channels // 2, *squeezed[1:]))
    tail = _level(kept, levels_left - 1, steps, hidden_channels, permutation, bound, generator, split_prior)
    return FactorOut(Compose(*layers), channels // 2, tail)


def glow(
    event_shape: Iterable[int] = (1, 8, 8),
    levels: int = 2,
    steps: int = 8,
    hidden_channels: int = 96,
    permutation: str = "conv1x1",
    alpha: float = 0.05,
    bound: float = 3.0,
    seed: int = 0,
    split_prior: bool = True,
) -> Flow:
    r"""A multi-scale Glow for images with pixel values in :math:`[0, 1)` (dequantized).

    ``Logit`` preprocessing, then ``levels`` levels of squeeze, ``steps`` Glow
    steps and a split with a learned conditional prior (the last level ends in
    a learned top prior instead). The model includes the logit's
    log-determinant, so its NLL converts to bits/dim with
    :func:`flowlib.data.bits_per_dim`.

    Args:
        event_shape: ``(C, H, W)``, with ``H`` and ``W`` divisible by ``2**levels``.
        levels: number of scales.
        steps: Glow steps per level (:math:`K` in the paper).
        hidden_channels: width of the couplings' and priors' conditioners.
        permutation: what mixes the channels between couplings: ``"conv1x1"``
            (Glow, LU form), ``"conv1x1-plain"`` (full ``W``, ``slogdet``),
            ``"reverse"`` (RealNVP's fixed reversal) or ``"shuffle"`` (a fixed
            random permutation): the ablation of the Glow paper.
        alpha: the logit's squeeze towards the centre (see :class:`~flowlib.bijections.Logit`).
        bound: bound of the couplings' log-scales.
        seed: seeds the random rotations and permutations (the networks use
            torch's global generator, as every model in flowlib).
        split_prior: give the half that leaves at each split Glow's learned
            conditional prior (default); ``False`` models it with the standard
            normal, as RealNVP does (for ablations).
    """
    c, h, w = as_event_shape(event_shape)
    if levels < 1 or steps < 1:
        raise ValueError(f"glow: levels and steps must be >= 1, got levels={levels}, steps={steps}")
    if h % 2**levels or w % 2**levels:
        raise ValueError(f"glow: H and W must be divisible by 2**levels = {2**levels}, got {(c, h, w)}")
    if permutation not in PERMUTATIONS:
        raise ValueError(f"glow: permutation must be one of {PERMUTATIONS}, got {permutation!r}")
    generator = torch.Generator().manual_seed(seed)
    body = _level(torch.Size((c, h, w)), levels, steps, hidden_channels, permutation, bound, generator, split_prior)
    if len(body.output_event_shape) != 1:  # one level: no split, so flatten the top latent like the others
        body = Compose(body, Reshape(body.output_event_shape, (c * h * w,)))
    bijection = Compose(Logit((c, h, w), alpha), body)
    return Flow(StandardNormal(bijection.output_event_shape), bijection)


def encode(flow: Flow, x: Tensor) -> Tensor:
    """The full multi-scale latent of ``x``: every factored-out part and the top, flat, as the base sees them."""
    with torch.no_grad():
        return flow.bijection(x)[0]


def decode(flow: Flow, z: Tensor) -> Tensor:
    """The image of a full latent ``z`` (the exact inverse of :func:`encode`)."""
    with torch.no_grad():
        return flow.bijection.inverse(z)[0]
