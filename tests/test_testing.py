"""The checks in flowlib.testing must catch the bugs they exist for."""

from __future__ import annotations

import math

import pytest
import torch

from flowlib.bijections import ElementwiseAffine, Linear
from flowlib.testing import check_inverse, check_logdet, jacobian_logabsdet, self_check, self_check_function

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


class ForgottenSum(ElementwiseAffine):
    """The classic student bug: per-coordinate log-dets, not summed over the event."""

    def _forward(self, x, context):
        z, _ = super()._forward(x, context)
        return z, torch.log(self.scale.abs()).expand_as(x)

    def _inverse(self, z, context):
        x, _ = super()._inverse(z, context)
        return x, -torch.log(self.scale.abs()).expand_as(z)


class ScalarLogdet(ElementwiseAffine):
    def _forward(self, x, context):
        z, _ = super()._forward(x, context)
        return z, torch.log(self.scale.abs()).sum()


@pytest.mark.parametrize("batch", [1, 3, 64])
@pytest.mark.parametrize("check", [check_inverse, check_logdet], ids=["check_inverse", "check_logdet"])
def test_a_forgotten_sum_is_reported_as_a_shape_error_by_both_checks(check, batch: int) -> None:
    layer = ForgottenSum(torch.tensor([2.0, 3.0, 0.5], dtype=D64)).double()
    with pytest.raises(AssertionError) as caught:
        check(layer, torch.randn(batch, 3, dtype=D64))
    message = str(caught.value)
    assert f"logabsdet must have shape ({batch},)" in message and f"got ({batch}, 3)" in message
    assert ".sum(dim=1)" in message


def test_a_scalar_logdet_is_reported_with_the_fix() -> None:
    layer = ScalarLogdet(torch.tensor([2.0, 3.0], dtype=D64)).double()
    with pytest.raises(AssertionError, match=r"got \(\).*expand"):
        check_logdet(layer, torch.randn(4, 2, dtype=D64))


def test_errors_are_located_by_sample_and_coordinate() -> None:
    class WrongSecondCoordinate(ElementwiseAffine):
        def _inverse(self, z, context):
            x, ladj = super()._inverse(z, context)
            return x + torch.tensor([0.0, 1.0], dtype=z.dtype), ladj

    layer = WrongSecondCoordinate(torch.tensor([2.0, 3.0], dtype=D64)).double()
    x = torch.zeros(4, 2, dtype=D64)
    x[2, 1] = -5.0  # every sample is off by 1 in coordinate 1; make sample 0 the first maximum
    with pytest.raises(AssertionError, match=r"at sample 0, coordinate 1"):
        check_inverse(layer, x)


class MissingConstant(ElementwiseAffine):
    """Consistent between directions (passes check_inverse), wrong by a constant (fails check_logdet)."""

    def _forward(self, x, context):
        z, ladj = super()._forward(x, context)
        return z, ladj + 1.0

    def _inverse(self, z, context):
        x, ladj = super()._inverse(z, context)
        return x, ladj - 1.0


def test_which_check_catches_which_bug() -> None:
    x = torch.randn(5, 2, dtype=D64)
    check_inverse(MissingConstant(torch.tensor([2.0, 3.0], dtype=D64)).double(), x)  # consistent: passes
    with pytest.raises(AssertionError, match="is wrong"):
        check_logdet(MissingConstant(torch.tensor([2.0, 3.0], dtype=D64)).double(), x)
    wrong = WrongInverse(_weight()).double()  # a bijection, just not the inverse of forward
    check_logdet(wrong, torch.randn(3, 3, dtype=D64))  # each direction's log-det matches its own map: passes
    with pytest.raises(AssertionError, match="differs"):
        check_inverse(wrong, torch.randn(3, 3, dtype=D64))


def _printed(capsys: pytest.CaptureFixture[str]) -> str:
    """What was printed, with the verdict's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


class StubLayer(ElementwiseAffine):
    def _forward(self, x, context):
        raise NotImplementedError("write the forward pass")


def test_self_check_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    good = ElementwiseAffine(torch.tensor([2.0, -0.5]), torch.tensor([1.0, 0.0]))
    assert self_check(good)
    assert "passed" in _printed(capsys)

    assert not self_check(StubLayer(torch.tensor([2.0, 3.0])))
    assert "not attempted yet" in _printed(capsys)

    assert not self_check(ForgottenSum(torch.tensor([2.0, 3.0, 0.5])))
    out = _printed(capsys)
    assert "FAILED" in out and ".sum(dim=1)" in out

    assert not self_check(MissingConstant(torch.tensor([2.0, 3.0])))
    out = _printed(capsys)
    assert "FAILED" in out and "log|det J| is wrong" in out

    def broken() -> Linear:
        raise ValueError("my constructor is wrong")

    assert not self_check(broken)
    assert "ValueError: my constructor is wrong" in _printed(capsys)


def test_self_check_leaves_the_students_layer_in_float32() -> None:
    layer = ElementwiseAffine(torch.tensor([2.0, -0.5]))
    self_check(layer)
    assert layer.scale.dtype == torch.float32


def test_self_check_function_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    normal = torch.distributions.Normal(0.0, 1.0)
    points = torch.linspace(-3, 3, 13)

    def right(x):
        return -0.5 * x**2 - 0.5 * math.log(2 * math.pi)

    def wrong(x):
        return -0.5 * x**2

    def stub(x):
        raise NotImplementedError

    assert self_check_function(right, normal.log_prob, points)
    assert "passed on 13 points" in _printed(capsys)
    assert not self_check_function(wrong, normal.log_prob, points)
    out = _printed(capsys)
    assert "FAILED at 13 of 13 points" in out and "At point 6 (input 0): got -0, expected -0.9189385176" in out
    assert not self_check_function(stub, normal.log_prob, points)
    assert "not attempted yet" in _printed(capsys)
    assert not self_check_function(lambda x: x[:3], normal.log_prob, points)
    assert "shape (13,)" in _printed(capsys)


def test_self_check_of_a_flow_checks_its_bijection(capsys: pytest.CaptureFixture[str]) -> None:
    from flowlib import Flow, StandardNormal

    assert not self_check(Flow(StandardNormal(2), MissingConstant(torch.tensor([2.0, 3.0]))))
    assert "log|det J| is wrong" in _printed(capsys)


def test_a_self_check_result_displays_nothing_more_in_a_notebook() -> None:
    from IPython.core.formatters import DisplayFormatter

    result = self_check(ElementwiseAffine(torch.tensor([2.0, -0.5])))
    assert result and result.message.startswith("Self-check of ElementwiseAffine: passed")
    assert hasattr(result, "_ipython_display_")  # IPython then shows no Out[] for the cell
    assert DisplayFormatter().format(result) == ({}, {})
