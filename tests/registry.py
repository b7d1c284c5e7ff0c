"""The registry of every public bijection, each built with non-trivial random parameters.

Each entry is a factory ``build(generator, dtype) -> Example``. A layer at its
identity initialization passes any log-det test, so every factory draws its
parameters at random (scales far from 1, shifts far from 0, dense matrices).
``test_contract.py`` runs the inverse and log-det checks on every entry and
fails if a public Bijection subclass has no entry.

To register a new layer: add a factory below with ``@register(TheClass)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from torch import nn

from flowlib import Compose, Inverse
from flowlib.bijections import (
    AdditiveCoupling,
    AffineCoupling,
    Coupling,
    ElementwiseAffine,
    ElementwiseSpline,
    FactorOut,
    HigherOrderPerturbation,
    Linear,
    Logit,
    LULinear,
    MonotoneMLP,
    Permutation,
    Reshape,
    Scaling,
    Sigmoid,
    SplineCoupling,
    Squeeze,
    TriangularLinear,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
)
from flowlib.bijections.glow import ActNorm, GlowStep, InvertibleConv1x1, LUInvertibleConv1x1
from flowlib.bijections.planar import Planar, Radial
from flowlib.bijections.residual import InvertibleResidual, LowRankResidual
from flowlib.bijections.autoregressive import InverseAutoregressive, MaskedAutoregressive
from flowlib.bijections.scalar import AffineTransform, RationalQuadraticSpline
from flowlib.core import Bijection
from flowlib.nets import MLP


@dataclass
class Example:
    bijection: Bijection
    x: torch.Tensor
    context: torch.Tensor | None = None
    z: torch.Tensor | None = None  # noise-space points for the inverse round trip (default: x)
    volume_preserving: bool = False  # log|det| = 0 by design (permutations, additive couplings, reshapes)


Factory = Callable[[torch.Generator, torch.dtype], Example]
REGISTRY: dict[str, tuple[type, Factory]] = {}


def register(cls: type, name: str | None = None) -> Callable[[Factory], Factory]:
    def decorate(factory: Factory) -> Factory:
        key = name or cls.__name__
        if key in REGISTRY:
            raise ValueError(f"duplicate registry entry {key}")
        REGISTRY[key] = (cls, factory)
        return factory

    return decorate


def randn(g: torch.Generator, *shape: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=dtype)


def random_scale(g: torch.Generator, *shape: int, dtype: torch.dtype) -> torch.Tensor:
    """Scales of both signs with |a| between 0.3 and 3: far from the identity."""
    magnitude = torch.exp(torch.empty(*shape, dtype=dtype).uniform_(-1.2, 1.1, generator=g))
    sign = torch.where(torch.rand(*shape, generator=g) < 0.5, -1.0, 1.0).to(dtype)
    return magnitude * sign


def random_matrix(g: torch.Generator, d: int, dtype: torch.dtype) -> torch.Tensor:
    """A dense, well-conditioned matrix with determinant far from 1."""
    return randn(g, d, d, dtype=dtype) + 2.0 * torch.eye(d, dtype=dtype)


def randomize(module: nn.Module, g: torch.Generator, std: float = 0.5) -> nn.Module:
    """Overwrite every parameter with N(0, std^2) noise: zero-initialized last layers would hide bugs."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g, dtype=parameter.dtype) * std)
    return module


@register(ElementwiseAffine, "ElementwiseAffine/vector")
def _elementwise_affine(g, dtype):
    d = 4
    layer = ElementwiseAffine(random_scale(g, d, dtype=dtype), randn(g, d, dtype=dtype))
    return Example(layer, randn(g, 6, d, dtype=dtype))


@register(ElementwiseAffine, "ElementwiseAffine/scalar-on-image")
def _elementwise_affine_scalar(g, dtype):
    layer = ElementwiseAffine(random_scale(g, 1, dtype=dtype)[0], randn(g, 1, dtype=dtype)[0], event_shape=(2, 3, 3))
    return Example(layer, randn(g, 5, 2, 3, 3, dtype=dtype))


@register(ElementwiseAffine, "ElementwiseAffine/per-channel-image")
def _elementwise_affine_channels(g, dtype):
    layer = ElementwiseAffine(random_scale(g, 3, 1, 1, dtype=dtype), randn(g, 3, 1, 1, dtype=dtype), event_shape=(3, 2, 2))
    return Example(layer, randn(g, 4, 3, 2, 2, dtype=dtype))


@register(Linear)
def _linear(g, dtype):
    d = 5
    layer = Linear(random_matrix(g, d, dtype), randn(g, d, dtype=dtype))
    return Example(layer, randn(g, 6, d, dtype=dtype))


@register(Permutation, "Permutation/vector")
def _permutation(g, dtype):
    return Example(Permutation(torch.randperm(6, generator=g)), randn(g, 4, 6, dtype=dtype), volume_preserving=True)


@register(Permutation, "Permutation/image-channels")
def _permutation_image(g, dtype):
    layer = Permutation(torch.randperm(4, generator=g), event_shape=(4, 2, 3), dim=0)
    return Example(layer, randn(g, 3, 4, 2, 3, dtype=dtype), volume_preserving=True)


@register(Compose)
def _compose(g, dtype):
    d = 3
    layer = Compose(
        Linear(random_matrix(g, d, dtype), randn(g, d, dtype=dtype)),
        ElementwiseAffine(random_scale(g, d, dtype=dtype), randn(g, d, dtype=dtype)),
        Permutation.reverse(d),
        Linear(random_matrix(g, d, dtype)),
    )
    return Example(layer, randn(g, 5, d, dtype=dtype))


@register(Inverse)
def _inverse(g, dtype):
    d = 3
    layer = Inverse(Compose(Linear(random_matrix(g, d, dtype)), ElementwiseAffine(random_scale(g, d, dtype=dtype))))
    return Example(layer, randn(g, 5, d, dtype=dtype))


@register(Scaling)
def _scaling(g, dtype):
    return Example(Scaling(4, log_scale=randn(g, 4, dtype=dtype)), randn(g, 5, 4, dtype=dtype))


@register(Sigmoid)
def _sigmoid(g, dtype):
    x = 2 * randn(g, 5, 3, dtype=dtype)
    return Example(Sigmoid(3), x, z=torch.rand(5, 3, generator=g, dtype=dtype) * 0.98 + 0.01)


@register(Logit)
def _logit(g, dtype):
    x = torch.rand(5, 2, 2, generator=g, dtype=dtype) * 0.98 + 0.01
    return Example(Logit((2, 2), alpha=0.05), x, z=3 * randn(g, 5, 2, 2, dtype=dtype))


@register(HigherOrderPerturbation)
def _perturbation(g, dtype):
    d = 3
    params = [randn(g, d, dtype=dtype) for _ in range(5)]
    params[2] = 3 * params[2]  # large c: the constraint a > m|c|d is what keeps it invertible
    return Example(HigherOrderPerturbation(d, params), 2 * randn(g, 5, d, dtype=dtype))


@register(MonotoneMLP)
def _monotone_mlp(g, dtype):
    layer = randomize(MonotoneMLP(3, hidden=5), g, std=1.0)
    return Example(layer, 2 * randn(g, 5, 3, dtype=dtype))


@register(ElementwiseSpline)
def _elementwise_spline(g, dtype):
    layer = ElementwiseSpline(3, bins=5, bound=3.0, params=randn(g, 3, 14, dtype=dtype))
    x = 2 * randn(g, 6, 3, dtype=dtype)
    x[0, 0], x[1, 1] = 3.5, -4.0  # some points in the identity tails
    return Example(layer, x)


@register(TriangularLinear, "TriangularLinear/lower")
def _triangular_lower(g, dtype):
    return Example(TriangularLinear(random_matrix(g, 4, dtype), randn(g, 4, dtype=dtype)), randn(g, 5, 4, dtype=dtype))


@register(TriangularLinear, "TriangularLinear/upper")
def _triangular_upper(g, dtype):
    layer = TriangularLinear(random_matrix(g, 4, dtype), randn(g, 4, dtype=dtype), lower=False)
    return Example(layer, randn(g, 5, 4, dtype=dtype))


@register(LULinear)
def _lu_linear(g, dtype):
    layer = randomize(LULinear(4, generator=g), g, std=0.7)
    return Example(layer, randn(g, 5, 4, dtype=dtype))


@register(Coupling, "Coupling/affine-alternating-context")
def _coupling_context(g, dtype):
    layer = Coupling(alternating_mask(5), MLP(3, 2 * 2, hidden=(16,), context_features=2), AffineTransform(3.0))
    return Example(randomize(layer, g), randn(g, 4, 5, dtype=dtype), context=randn(g, 4, 2, dtype=dtype))


@register(AdditiveCoupling)
def _additive(g, dtype):
    layer = randomize(AdditiveCoupling(half_mask(4), hidden=(16,)), g)
    return Example(layer, randn(g, 5, 4, dtype=dtype), volume_preserving=True)


@register(AffineCoupling, "AffineCoupling/vector")
def _affine_vector(g, dtype):
    return Example(randomize(AffineCoupling(half_mask(3, first=False), hidden=(16, 16)), g), randn(g, 5, 3, dtype=dtype))


@register(AffineCoupling, "AffineCoupling/checkerboard-conv")
def _affine_checkerboard(g, dtype):
    layer = randomize(AffineCoupling(checkerboard_mask((2, 4, 4), parity=1), hidden=(8,)), g, std=0.3)
    return Example(layer, randn(g, 3, 2, 4, 4, dtype=dtype))


@register(AffineCoupling, "AffineCoupling/channel-conv")
def _affine_channel(g, dtype):
    layer = randomize(AffineCoupling(channel_mask((4, 2, 2)), hidden=(8,)), g, std=0.3)
    return Example(layer, randn(g, 3, 4, 2, 2, dtype=dtype))


@register(SplineCoupling, "SplineCoupling/vector")
def _spline_vector(g, dtype):
    layer = randomize(SplineCoupling(half_mask(4), hidden=(16,), bins=4, bound=2.5), g)
    x = 1.5 * randn(g, 6, 4, dtype=dtype)
    x[0, 2] = 3.0  # beyond the bound: identity tail
    return Example(layer, x)


@register(SplineCoupling, "SplineCoupling/checkerboard-conv")
def _spline_image(g, dtype):
    layer = randomize(SplineCoupling(checkerboard_mask((1, 4, 4)), hidden=(8,), bins=3, bound=3.0), g, std=0.3)
    return Example(layer, randn(g, 3, 1, 4, 4, dtype=dtype))


@register(Squeeze)
def _squeeze(g, dtype):
    return Example(Squeeze((2, 4, 6)), randn(g, 3, 2, 4, 6, dtype=dtype), volume_preserving=True)


@register(Reshape)
def _reshape(g, dtype):
    return Example(Reshape((2, 3, 2), (12,)), randn(g, 3, 2, 3, 2, dtype=dtype), volume_preserving=True)


@register(FactorOut)
def _factor_out(g, dtype):
    head = Compose(
        Squeeze((1, 4, 4)),
        randomize(AffineCoupling(channel_mask((4, 2, 2)), hidden=(8,)), g, std=0.3),
    )
    tail = Compose(
        randomize(AffineCoupling(checkerboard_mask((2, 2, 2)), hidden=(8,)), g, std=0.3),
        ElementwiseAffine(random_scale(g, 2, 1, 1, dtype=dtype), event_shape=(2, 2, 2)),
    )
    return Example(FactorOut(head, 2, tail), randn(g, 3, 1, 4, 4, dtype=dtype))


def trained_actnorm(layer: ActNorm, g: torch.Generator) -> ActNorm:
    """An actnorm as training leaves it: initialized, with random per-channel offsets and log-scales."""
    with torch.no_grad():
        layer.loc.copy_(torch.randn(layer.loc.shape, generator=g) * 2.0)
        layer.log_scale.copy_(torch.randn(layer.log_scale.shape, generator=g) * 0.8)
        layer.initialized.fill_(True)
    return layer


@register(ActNorm, "ActNorm/vector-trained")
def _actnorm_vector(g, dtype):
    return Example(trained_actnorm(ActNorm(4), g), randn(g, 5, 4, dtype=dtype))


@register(ActNorm, "ActNorm/image-trained")
def _actnorm_image(g, dtype):
    return Example(trained_actnorm(ActNorm((3, 2, 2)), g), randn(g, 4, 3, 2, 2, dtype=dtype))


@register(InvertibleConv1x1)
def _conv1x1(g, dtype):
    layer = InvertibleConv1x1((3, 2, 2), generator=g)
    with torch.no_grad():  # away from the initial rotation: log|det W| far from 0
        layer.weight.copy_(random_matrix(g, 3, layer.weight.dtype))
    return Example(layer, randn(g, 4, 3, 2, 2, dtype=dtype))


@register(LUInvertibleConv1x1)
def _lu_conv1x1(g, dtype):
    layer = LUInvertibleConv1x1((4, 2, 3), generator=g)
    randomize(layer, g, std=0.7)  # L, U off-diagonals and U's diagonal magnitudes random; U's signs stay
    return Example(layer, randn(g, 3, 4, 2, 3, dtype=dtype))


@register(GlowStep)
def _glow_step(g, dtype):
    step = GlowStep((4, 2, 2), hidden_channels=6, generator=g)
    randomize(step, g, std=0.4)
    trained_actnorm(step[0], g)
    return Example(step, randn(g, 3, 4, 2, 2, dtype=dtype))


def contractive(layer, g: torch.Generator, std: float = 1.0):
    """A residual block with random weights large enough that every layer sits at its bound kappa."""
    randomize(layer, g, std=std)
    layer.update_spectral_norm(300)  # converge the power iteration for the new weights
    return layer


# Residual blocks estimate their log-det in the "series" and "roulette" modes; the registry checks the
# exact mode (tests/test_residual.py checks the estimators statistically against it).
@register(InvertibleResidual, "InvertibleResidual/exact-lipswish")
def _iresnet_lipswish(g, dtype):
    layer = InvertibleResidual(3, hidden=(8, 8), kappa=0.9, activation="lipswish", logdet="exact", generator=g)
    return Example(contractive(layer, g), 2 * randn(g, 5, 3, dtype=dtype))


@register(InvertibleResidual, "InvertibleResidual/exact-elu")
def _iresnet_elu(g, dtype):
    layer = InvertibleResidual(4, hidden=(6,), kappa=0.97, activation="elu", logdet="exact", generator=g)
    return Example(contractive(layer, g), 2 * randn(g, 5, 4, dtype=dtype))


@register(LowRankResidual)
def _low_rank_residual(g, dtype):
    layer = LowRankResidual(5, rank=2, kappa=0.95, activation="tanh", generator=g)
    return Example(contractive(layer, g), randn(g, 5, 5, dtype=dtype))


@register(Planar)
def _planar(g, dtype):
    layer = Planar(3, generator=g)
    with torch.no_grad():  # a free u with w^T u = -3: the constraint must move it (w^T u_hat = m(-3) > -1)
        layer.w.copy_(randn(g, 3, dtype=layer.w.dtype) * 1.5)
        layer.u.copy_(-3.0 * layer.w / (layer.w @ layer.w) + 0.5 * randn(g, 3, dtype=layer.w.dtype))
        layer.u.sub_((layer.w @ layer.u + 3.0) * layer.w / (layer.w @ layer.w))
        layer.b.fill_(0.3)
    return Example(layer, randn(g, 6, 3, dtype=dtype))


@register(Radial)
def _radial(g, dtype):
    layer = Radial(3, generator=g)
    randomize(layer, g, std=1.0)
    return Example(layer, 1.5 * randn(g, 6, 3, dtype=dtype))


# Autoregressive layers (chapter 6): random MADE weights (the masks are buffers and stay), several orders,
# both transformers, a context, a residual MADE; the sequential direction both incrementally and naively.


@register(MaskedAutoregressive, "MaskedAutoregressive/affine-natural")
def _maf_affine(g, dtype):
    layer = randomize(MaskedAutoregressive(5, hidden=(16, 16)), g)
    return Example(layer, randn(g, 6, 5, dtype=dtype))


@register(MaskedAutoregressive, "MaskedAutoregressive/affine-reversed-context-naive")
def _maf_context(g, dtype):
    layer = MaskedAutoregressive(4, hidden=(12,), order="reversed", context_features=3, inverse_method="naive")
    return Example(randomize(layer, g), randn(g, 5, 4, dtype=dtype), context=randn(g, 5, 3, dtype=dtype))


@register(MaskedAutoregressive, "MaskedAutoregressive/spline-random-residual")
def _maf_spline(g, dtype):
    layer = MaskedAutoregressive(
        4, RationalQuadraticSpline(bins=4, bound=2.5), hidden=(12, 12), order="random", residual=True, generator=g
    )
    x = 1.5 * randn(g, 6, 4, dtype=dtype)
    x[0, 1] = 3.2  # beyond the bound: identity tail
    return Example(randomize(layer, g, std=0.4), x)


@register(InverseAutoregressive, "InverseAutoregressive/affine-random")
def _iaf_affine(g, dtype):
    layer = randomize(InverseAutoregressive(5, hidden=(16,), order="random", generator=g), g)
    return Example(layer, randn(g, 6, 5, dtype=dtype))


@register(InverseAutoregressive, "InverseAutoregressive/spline-context-naive")
def _iaf_spline(g, dtype):
    layer = InverseAutoregressive(
        4, RationalQuadraticSpline(bins=3, bound=3.0), hidden=(10,), context_features=2, inverse_method="naive"
    )
    return Example(randomize(layer, g, std=0.4), 1.5 * randn(g, 5, 4, dtype=dtype), context=randn(g, 5, 2, dtype=dtype))


def build(key: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> Example:
    """Build registry entry ``key`` in ``dtype`` with parameters drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    example = REGISTRY[key][1](g, dtype)
    example.bijection = example.bijection.to(dtype)
    return example
