"""Every registered bijection keeps the contract in float64: inverse round trip and exact log-det."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch

import flowlib
import flowlib.bijections
from flowlib.core import Bijection
from flowlib.testing import check_inverse, check_logdet, jacobian_logabsdet

from .registry import REGISTRY, build

KEYS = sorted(REGISTRY)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("seed", [0, 1])
def test_inverse_round_trip(key: str, seed: int) -> None:
    example = build(key, torch.float64, seed)
    check_inverse(example.bijection, example.x, z=example.z, context=example.context, atol=1e-10)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("seed", [0, 1])
def test_logdet_matches_brute_force_jacobian(key: str, seed: int) -> None:
    example = build(key, torch.float64, seed)
    check_logdet(example.bijection, example.x, context=example.context, atol=1e-8)


@pytest.mark.parametrize("key", KEYS)
def test_parameters_are_not_trivial(key: str) -> None:
    """Guard against registry entries at the identity, which pass any log-det test."""
    example = build(key, torch.float64)
    layer, x = example.bijection, example.x
    with torch.no_grad():
        z, _ = layer(x, example.context)
    if z.shape == x.shape:
        assert not torch.allclose(z, x), f"{key}: forward is the identity on the test points"
    else:
        assert not torch.equal(z.reshape(-1).sort().values, x.reshape(-1).sort().values) or example.volume_preserving
    context = None if example.context is None else example.context[:1]
    logdet = jacobian_logabsdet(lambda p: layer(p, context)[0], x[:1])
    if example.volume_preserving:
        assert logdet.abs().item() < 1e-12, f"{key}: marked volume preserving but log|det| = {logdet.item()}"
    else:
        assert logdet.abs().item() > 1e-3, f"{key}: the Jacobian has log|det| 0 at the test point: a sign bug would hide"


def _public_bijection_classes() -> set[type]:
    modules = [flowlib, flowlib.bijections]
    for info in pkgutil.walk_packages(flowlib.__path__, "flowlib."):
        modules.append(importlib.import_module(info.name))
    found = set()
    for module in modules:
        names = getattr(module, "__all__", [name for name in dir(module) if not name.startswith("_")])
        for name in names:
            obj = getattr(module, name, None)
            if inspect.isclass(obj) and issubclass(obj, Bijection) and obj is not Bijection:
                found.add(obj)
    return found


def test_every_public_bijection_is_registered() -> None:
    registered = {cls for cls, _ in REGISTRY.values()}
    missing = sorted(cls.__qualname__ for cls in _public_bijection_classes() - registered)
    assert not missing, f"public bijections missing from tests/registry.py: {missing}"
