"""The checks in flowlib.testing must catch the bugs they exist for."""

from __future__ import annotations

import math

import pytest
import torch

from flowlib.bijections import ElementwiseAffine, Linear
from flowlib.testing import check_inverse, check_logdet, jacobian_logabsdet

from .registry import REGISTRY, build

D64 = torch.float64


class SignFlippedLogdet(Linear):
    def _forward(self, x, context):
        z, ladj = super()._forward(x, context)
        return z, -ladj


class WrongInverse(Linear):
    def _inverse(self, z, context):
        return z - self.bias, torch.zeros_like(z[:, 0])


class LogdetMissingDimension(ElementwiseAffine):
    def _forward(self, x, context):
        z, _ = super()._forward(x, context)
        return z, torch.log(self.scale[0].abs()).expand(x.shape[0])


class WrongLogdetShape(ElementwiseAffine):
    def _forward(self, x, context):
        z, _ = super()._forward(x, context)
        return z, torch.log(self.scale.abs()).expand_as(x)


def _weight() -> torch.Tensor:
    return torch.tensor([[2.0, 0.3, 0.0], [0.1, 1.5, -0.4], [0.0, 0.2, 0.7]], dtype=D64)


def test_check_logdet_catches_a_sign_error() -> None:
    x = torch.randn(3, 3, dtype=D64)
    with pytest.raises(AssertionError, match="log\\|det J\\| is wrong"):
        check_logdet(SignFlippedLogdet(_weight()).double(), x)


def test_check_logdet_catches_a_forgotten_dimension() -> None:
    layer = LogdetMissingDimension(torch.tensor([2.0, 3.0], dtype=D64)).double()
    with pytest.raises(AssertionError, match="forward"):
        check_logdet(layer, torch.randn(3, 2, dtype=D64))


def test_check_inverse_catches_a_wrong_inverse() -> None:
    with pytest.raises(AssertionError, match="inverse\\(forward\\(x\\)\\) differs"):
        check_inverse(WrongInverse(_weight()).double(), torch.randn(3, 3, dtype=D64))


def test_checks_catch_a_logdet_of_the_wrong_shape() -> None:
    layer = WrongLogdetShape(torch.tensor([2.0, 3.0], dtype=D64)).double()
    with pytest.raises(AssertionError, match="must have shape"):
        check_inverse(layer, torch.randn(3, 2, dtype=D64))


def test_brute_force_jacobian_of_a_known_map() -> None:
    # f(x) = (x0 * x1, x1 ** 3) has J = [[x1, x0], [0, 3 x1^2]]; at (2, 1) that is [[1, 2], [0, 3]], det 3.
    x = torch.tensor([[2.0, 1.0]], dtype=D64)
    value = jacobian_logabsdet(lambda p: torch.stack([p[:, 0] * p[:, 1], p[:, 1] ** 3], dim=1), x)
    assert value.item() == pytest.approx(math.log(3.0), abs=1e-12)


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_float32_passes_with_the_float32_defaults(key: str) -> None:
    example = build(key, torch.float32)
    check_inverse(example.bijection, example.x, z=example.z, context=example.context)
    check_logdet(example.bijection, example.x, context=example.context)
