"""Property-based tests: any batch size works, and bad input gets a clear error, never a NaN."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowlib import Compose, Flow, StandardNormal
from flowlib.bijections import ElementwiseAffine, Linear, Permutation

from .registry import REGISTRY, build

KEYS = sorted(REGISTRY)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _batch_of(example, batch: int, g: torch.Generator):
    """A batch of valid inputs (rows of the example, so restricted domains hold) and a matching context."""
    rows = torch.randint(len(example.x), (batch,), generator=g)
    x = example.x[rows]
    context = None if example.context is None else example.context[rows]
    return x, context


@SETTINGS
@given(key=st.sampled_from(KEYS), batch=st.integers(1, 33), seed=st.integers(0, 2**16))
def test_any_batch_size_keeps_shapes_and_round_trips(key: str, batch: int, seed: int) -> None:
    example = build(key, torch.float64, seed % 7)
    layer = example.bijection
    x, context = _batch_of(example, batch, torch.Generator().manual_seed(seed))
    z, ladj = layer(x, context)
    assert z.shape == (batch, *layer.output_event_shape)
    assert ladj.shape == (batch,)
    assert torch.isfinite(ladj).all()
    x_back, ladj_back = layer.inverse(z, context)
    torch.testing.assert_close(x_back, x, atol=1e-9, rtol=0)
    torch.testing.assert_close(ladj_back, -ladj, atol=1e-9, rtol=0)
    # each sample is transformed on its own: a batch gives the same rows as one sample at a time
    z_first, ladj_first = layer(x[:1], None if context is None else context[:1])
    torch.testing.assert_close(z_first, z[:1], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(ladj_first, ladj[:1], atol=1e-12, rtol=1e-12)


UNRESTRICTED = [key for key in KEYS if build(key).z is None]


@SETTINGS
@given(key=st.sampled_from(UNRESTRICTED), batch=st.integers(1, 8))
def test_log_prob_and_samples_of_a_flow(key: str, batch: int) -> None:
    example = build(key, torch.float64)
    layer = example.bijection
    flow = Flow(StandardNormal(layer.output_event_shape), layer).double()
    context = None if example.context is None else example.context[:1].expand(batch, -1)
    x = flow.sample(batch, context)
    assert x.shape == (batch, *layer.event_shape)
    log_p = flow.log_prob(x, context)
    assert log_p.shape == (batch,) and torch.isfinite(log_p).all()


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)


@SETTINGS
@given(key=st.sampled_from(KEYS), wrong=shapes, batch=st.integers(1, 4))
def test_wrong_event_shape_is_named_in_the_error(key: str, wrong: tuple[int, ...], batch: int) -> None:
    layer = build(key, torch.float64).bijection
    if wrong == tuple(layer.event_shape):
        wrong = wrong + (2,)
    x = torch.zeros((batch, *wrong), dtype=torch.float64)
    expected = "(batch, " + ", ".join(map(str, layer.event_shape)) + ")"
    with pytest.raises(ValueError, match="the input has shape .* but .* expects") as info:
        layer(x)
    assert expected in str(info.value) and str(tuple(x.shape)) in str(info.value)


@SETTINGS
@given(key=st.sampled_from(KEYS), dtype=st.sampled_from([torch.int64, torch.int32, torch.bool]))
def test_integer_input_is_rejected(key: str, dtype: torch.dtype) -> None:
    layer = build(key, torch.float64).bijection
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.zeros((2, *layer.event_shape), dtype=dtype))


@pytest.mark.parametrize("key", KEYS)
def test_dtype_mismatch_is_explained(key: str) -> None:
    layer = build(key, torch.float64).bijection
    has_float_state = any(t.is_floating_point() for t in [*layer.parameters(), *layer.buffers()])
    x = torch.zeros((2, *layer.event_shape), dtype=torch.float32)
    if has_float_state:
        with pytest.raises(TypeError, match="parameters are torch.float64"):
            layer(x)
    else:
        assert layer(x)[0].dtype == torch.float32


@SETTINGS
@given(
    key=st.sampled_from(KEYS),
    bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    where=st.integers(0, 10_000),
    direction=st.sampled_from(["forward", "inverse"]),
)
def test_nan_and_inf_are_rejected_in_both_directions(key: str, bad: float, where: int, direction: str) -> None:
    layer = build(key, torch.float64).bijection
    shape = layer.event_shape if direction == "forward" else layer.output_event_shape
    x = torch.zeros((3, *shape), dtype=torch.float64)
    x.view(-1)[where % x.numel()] = bad
    with pytest.raises(ValueError, match="NaN or Inf \\(1 of"):
        getattr(layer, direction)(x)


@SETTINGS
@given(d=st.integers(1, 6), zero_at=st.integers(0, 5))
def test_zero_scale_is_not_invertible(d: int, zero_at: int) -> None:
    scale = torch.ones(d)
    scale[zero_at % d] = 0.0
    with pytest.raises(ValueError, match="must be non-zero"):
        ElementwiseAffine(scale)


def test_scale_that_becomes_zero_during_training_is_caught() -> None:
    layer = ElementwiseAffine(torch.tensor([1.0, 2.0]))
    with torch.no_grad():
        layer.scale[0] = 0.0
    with pytest.raises(ValueError, match="must be non-zero"):
        layer(torch.ones(1, 2))


@SETTINGS
@given(d=st.integers(2, 6), seed=st.integers(0, 1000))
def test_singular_matrix_is_rejected(d: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    a[-1] = 2.0 * a[0]  # two dependent rows
    with pytest.raises(ValueError, match="singular"):
        Linear(a)


def test_matrix_that_becomes_singular_during_training_is_caught() -> None:
    layer = Linear(torch.eye(2))
    with torch.no_grad():
        layer.weight.zero_()
    with pytest.raises(ValueError, match="singular"):
        layer(torch.ones(1, 2))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Linear(torch.ones(2, 3)), "square"),
        (lambda: Linear(torch.eye(2), torch.zeros(3)), "bias must have shape \\(2,\\)"),
        (lambda: Linear(torch.tensor([[1.0, float("nan")], [0.0, 1.0]])), "finite"),
        (lambda: Permutation([0, 0, 1]), "exactly once"),
        (lambda: Permutation([0.0, 1.0]), "ints"),
        (lambda: Permutation([1, 0], event_shape=(3, 2), dim=0), "does not fit"),
        (lambda: ElementwiseAffine(torch.ones(3), event_shape=(4,)), "does not broadcast"),
        (lambda: ElementwiseAffine(float("inf")), "finite"),
        (lambda: StandardNormal(0), "at least one dimension"),
        (lambda: Compose(), "at least one"),
    ],
)
def test_bad_construction_arguments(make, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_missing_batch_dimension_gets_a_hint() -> None:
    with pytest.raises(ValueError, match="unsqueeze"):
        Linear(3)(torch.zeros(3))


def test_not_a_tensor() -> None:
    with pytest.raises(TypeError, match="torch.Tensor"):
        Linear(2)([[1.0, 2.0]])
