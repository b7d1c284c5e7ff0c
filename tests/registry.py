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

from flowlib import Compose, Inverse
from flowlib.bijections import ElementwiseAffine, Linear, Permutation
from flowlib.core import Bijection


@dataclass
class Example:
    bijection: Bijection
    x: torch.Tensor
    context: torch.Tensor | None = None


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
    return Example(Permutation(torch.randperm(6, generator=g)), randn(g, 4, 6, dtype=dtype))


@register(Permutation, "Permutation/image-channels")
def _permutation_image(g, dtype):
    layer = Permutation(torch.randperm(4, generator=g), event_shape=(4, 2, 3), dim=0)
    return Example(layer, randn(g, 3, 4, 2, 3, dtype=dtype))


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


def build(key: str, dtype: torch.dtype = torch.float64, seed: int = 0) -> Example:
    """Build registry entry ``key`` in ``dtype`` with parameters drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    example = REGISTRY[key][1](g, dtype)
    example.bijection = example.bijection.to(dtype)
    return example
