"""MADE, the incremental evaluation of the sequential direction, MAF and IAF layers and models, check_autoregressive.

The contract (inverse round trip, log-det against the brute-force Jacobian) is
in test_contract.py through the registry; here: the masks and degrees, the
autoregressive property by brute force, the incremental solver against the
naive D-pass loop (values and gradients), a planted one-entry mask bug that
check_autoregressive must name, the IAF = inverse-MAF identity, the models.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib import Compose, Flow, Inverse, StandardNormal
from flowlib.bijections import InverseAutoregressive, MaskedAutoregressive
from flowlib.bijections.scalar import RationalQuadraticSpline
from flowlib.models import iaf, maf
from flowlib.nets import MADE, IncrementalMADE, MaskedLinear, autoregressive_order, made_degrees, made_masks
from flowlib.testing import check_autoregressive, check_inverse, self_check_autoregressive

from .registry import randomize

F64 = torch.float64


def random_made(seed: int = 0, **options) -> MADE:
    g = torch.Generator().manual_seed(seed)
    options = {"hidden": (16, 16), "zero_last": False, **options}
    features = options.pop("features", 6)
    k = options.pop("outputs_per_feature", 2)
    return randomize(MADE(features, k, generator=g, **options), g).double()


def points(n: int, d: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


# --------------------------------------------------------------------------- MADE


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"order": "reversed"},
        {"order": "random"},
        {"order": [2, 0, 5, 1, 4, 3]},
        {"hidden": (3, 20)},  # narrower than D - 1: the highest degrees get no units
        {"hidden": ()},
        {"residual": True},
        {"context_features": 2},
        {"outputs_per_feature": 23},
    ],
)
def test_made_is_autoregressive_by_brute_force(options) -> None:
    made = random_made(**options)
    context = points(12, 2, seed=5) if options.get("context_features") else None
    check_autoregressive(made, points(12, 6), order=made.order, context=context)
    self_check = self_check_autoregressive(made, context=None if context is None else context[:4])
    assert self_check


def test_degrees_and_masks_by_hand() -> None:
    degrees = made_degrees(torch.tensor([1, 2, 0]), hidden=(4,), context=False)
    assert degrees[0].tolist() == [3, 1, 2] and degrees[1].tolist() == [1, 2, 1, 2]
    first, out = made_masks(degrees, outputs_per_feature=2)
    assert first.int().tolist() == [[0, 1, 0], [0, 1, 1], [0, 1, 0], [0, 1, 1]]
    # parameter-major rows: (param 0 of x0, x1, x2), (param 1 of x0, x1, x2); x1 (degree 1) reads nothing
    assert out.int().tolist()[1] == [0, 0, 0, 0] and out.int().tolist()[0] == [1, 1, 1, 1]
    with_context = made_degrees(torch.arange(3), hidden=(5,), context=True)
    assert with_context[1].tolist() == [0, 1, 2, 0, 1]


def test_first_coordinate_depends_on_the_context() -> None:
    made = random_made(context_features=2)
    x = points(4, 6)
    c1, c2 = points(4, 2, seed=2), points(4, 2, seed=3)
    first = made.order[0]
    assert not torch.allclose(made(x, c1)[:, first], made(x, c2)[:, first])


def test_made_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="permutation"):
        MADE(3, order="sideways")
    with pytest.raises(ValueError, match="exactly once"):
        MADE(3, order=[0, 0, 1])
    with pytest.raises(ValueError, match="one width"):
        MADE(3, hidden=(8, 16), residual=True)
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        MADE(3)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="expects a context"):
        MADE(3, context_features=2)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="mask must have shape"):
        MaskedLinear(3, 2, torch.ones(3, 2))


def test_masked_weights_get_no_gradient() -> None:
    made = random_made()
    made(points(5, 6)).square().sum().backward()
    for layer in made.layers:
        assert torch.all(layer.weight.grad[layer.mask == 0] == 0)


# --------------------------------------------------------------------------- check_autoregressive and a planted bug


def _first_pair_of_planted_bug(made: MADE, unit: int, coordinate: int) -> tuple[int, int]:
    """Reading x_coordinate from a first-layer unit of degree d leaks it to the outputs of degree d + 1 first."""
    degree = int(made.degrees()[1][unit])
    return int(made.order[degree]), coordinate  # the coordinate at position d has degree d + 1


@pytest.mark.parametrize("order", ["natural", "reversed", "random"])
def test_check_autoregressive_names_a_one_entry_mask_bug(order) -> None:
    made = random_made(order=order, features=6, hidden=(24, 24))
    x = points(30, 6)
    check_autoregressive(made, x, order=made.order)
    degrees = made.degrees()
    # a unit of degree 2 gets one extra connection, to the coordinate of degree 5
    unit = int(torch.nonzero(degrees[1] == 2)[0])
    coordinate = int(torch.nonzero(degrees[0] == 5)[0])
    assert made.layers[0].mask[unit, coordinate] == 0
    with torch.no_grad():
        made.layers[0].mask[unit, coordinate] = 1.0
    i, j = _first_pair_of_planted_bug(made, unit, coordinate)
    with pytest.raises(AssertionError, match=rf"first offending pair is \(i, j\) = \({i}, {j}\)"):
        check_autoregressive(made, x, order=made.order)
    verdict = self_check_autoregressive(made, x)
    assert not verdict and f"({i}, {j})" in verdict.message


def test_check_autoregressive_catches_bugs_in_later_layers_and_on_the_diagonal() -> None:
    x = points(30, 5)
    made = random_made(features=5, hidden=(16, 16))
    degrees = made.degrees()
    # hidden -> hidden: a unit of degree 1 reads a unit of degree 3 (the most active ones: a ReLU that is
    # off at every test point would hide the path, as it would in any check by the Jacobian)
    with torch.no_grad():
        active_1 = (made.layers[0](x) > 0).sum(0).double()
        active_2 = (made.layers[1](torch.relu(made.layers[0](x))) > 0).sum(0).double()
    high = int(torch.where(degrees[1] == 3, active_1, -1.0).argmax())
    low = int(torch.where(degrees[2] == 1, active_2, -1.0).argmax())
    with torch.no_grad():
        made.layers[1].mask[low, high] = 1.0
    with pytest.raises(AssertionError, match=r"\(i, j\) = \(1, 1\)"):  # x_1 reaches theta_1 through the unit
        check_autoregressive(made, x)
    # output: theta of x_3 reads a unit of degree 4 (= x_3's own degree): a diagonal leak, strict only
    made = random_made(features=5, hidden=(16, 16))
    unit = int(torch.nonzero(made.degrees()[2] == 4)[0])
    with torch.no_grad():
        made.layers[2].mask[3, unit] = 1.0  # row 3: parameter 0 of coordinate 3
    with pytest.raises(AssertionError, match=r"\(i, j\) = \(3, 3\)"):
        check_autoregressive(made, x)


def test_check_autoregressive_on_layers_uses_the_order() -> None:
    layer = randomize(MaskedAutoregressive(5, hidden=(16,), order="reversed"), torch.Generator().manual_seed(0))
    layer = layer.double()
    x = points(10, 5)
    check_autoregressive(layer, x, order=layer.order)  # triangular, the diagonal allowed
    with pytest.raises(AssertionError, match=r"\(i, j\) = \(0, 1\): z_0 depends on x_1"):
        check_autoregressive(layer, x)  # the natural order is the wrong one
    iaf_layer = randomize(InverseAutoregressive(5, hidden=(16,), order="random"), torch.Generator().manual_seed(1))
    check_autoregressive(iaf_layer.double(), x, order=iaf_layer.order)


def test_self_check_autoregressive_verdicts(capsys) -> None:
    class Stub(torch.nn.Module):
        features = 3

        def forward(self, x):
            raise NotImplementedError("build the masks")

    verdicts = [
        self_check_autoregressive(Stub()),
        self_check_autoregressive(MADE(4, hidden=(8,))),  # zero last layer: nothing to check
        self_check_autoregressive(lambda: torch.nn.Linear(4, 4), x=points(4, 4)),  # dense
        self_check_autoregressive(torch.nn.Linear(4, 4)),  # no size to draw points from
    ]
    assert not any(verdicts)
    expected = ["not attempted yet", "proves nothing", "first offending pair is (i, j) = (0, 0)", "Pass test points"]
    for verdict, words in zip(verdicts, expected):
        assert words in verdict.message
    printed = " ".join(capsys.readouterr().out.split())
    assert all(verdict.message in printed for verdict in verdicts)


# --------------------------------------------------------------------------- the sequential direction


@pytest.mark.parametrize(
    "options", [{}, {"residual": True}, {"context_features": 3}, {"hidden": ()}, {"hidden": (4, 9)}]
)
@pytest.mark.parametrize("grad", [False, True])
def test_incremental_made_equals_the_full_pass(options, grad) -> None:
    made = random_made(order="random", **options)
    x = points(7, 6)
    context = points(7, 3, seed=4) if options.get("context_features") else None
    with torch.set_grad_enabled(grad):
        runner = IncrementalMADE(made, reference=x, context=context)
        rows = []
        for p in range(6):
            rows.append(runner.next_params())
            runner.feed(x[:, made.order[p]])
        assert torch.stack(rows, 1).requires_grad == grad
    full = made(x, context)[:, made.order]
    torch.testing.assert_close(torch.stack(rows, 1), full, atol=1e-12, rtol=0)


def _flow(layer_class, transform=None, **options):
    g = torch.Generator().manual_seed(3)
    layers = [
        layer_class(6, transform, hidden=(20, 20), order="natural" if k % 2 == 0 else "reversed", **options)
        for k in range(3)
    ]
    return Flow(StandardNormal(6), randomize(Compose(*layers), g, std=0.3))


def _set_method(flow, method):
    for layer in flow.bijection:
        layer.inverse_method = method


@pytest.mark.parametrize("transform", [None, RationalQuadraticSpline(bins=5, bound=3.0)])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_maf_sampler_gives_the_samples_of_the_naive_loop(transform, dtype) -> None:
    flow = _flow(MaskedAutoregressive, transform).to(dtype)
    samples = {}
    for method in ("incremental", "naive"):
        _set_method(flow, method)
        torch.manual_seed(7)
        samples[method] = flow.sample(200)
    tolerance = 1e-12 if dtype == F64 else 2e-5
    torch.testing.assert_close(samples["incremental"], samples["naive"], atol=tolerance, rtol=tolerance)
    assert samples["incremental"].std() > 0.5  # real samples, not zeros


def test_iaf_density_is_the_same_incrementally_and_naively() -> None:
    flow = _flow(InverseAutoregressive, RationalQuadraticSpline(bins=4, bound=3.0)).double()
    x = 1.5 * points(50, 6)
    log_p = {}
    for method in ("incremental", "naive"):
        _set_method(flow, method)
        log_p[method] = flow.log_prob(x)
    torch.testing.assert_close(log_p["incremental"], log_p["naive"], atol=1e-11, rtol=0)


def test_gradients_through_the_incremental_inverse_match_the_naive_ones() -> None:
    grads = {}
    for method in ("incremental", "naive"):
        flow = _flow(MaskedAutoregressive).double()
        _set_method(flow, method)
        torch.manual_seed(8)
        flow.rsample(16).square().sum().backward()
        grads[method] = torch.cat([p.grad.reshape(-1) for p in flow.parameters()])
    torch.testing.assert_close(grads["incremental"], grads["naive"], atol=1e-10, rtol=1e-10)
    assert grads["incremental"].abs().max() > 0


def test_iaf_is_maf_with_the_directions_swapped() -> None:
    g = torch.Generator().manual_seed(4)
    maf_layer = randomize(MaskedAutoregressive(5, hidden=(12,), order="random", generator=g), g).double()
    iaf_layer = InverseAutoregressive(5, hidden=(12,), made=maf_layer.made).double()
    x = points(8, 5)
    for computed, expected in zip(iaf_layer(x), Inverse(maf_layer)(x)):
        torch.testing.assert_close(computed, expected, atol=1e-12, rtol=0)
    for computed, expected in zip(iaf_layer.inverse(x), maf_layer(x)):
        torch.testing.assert_close(computed, expected, atol=1e-12, rtol=0)


def test_layers_start_as_the_identity_and_check_their_arguments() -> None:
    x = torch.randn(4, 3)
    for layer in (MaskedAutoregressive(3, hidden=(8,)), InverseAutoregressive(3, hidden=(8,))):
        z, ladj = layer(x)
        assert torch.equal(z, x) and torch.equal(ladj, torch.zeros(4))
    with pytest.raises(ValueError, match="inverse_method"):
        MaskedAutoregressive(3, inverse_method="fast")
    with pytest.raises(ValueError, match="transform takes 23"):
        MaskedAutoregressive(3, RationalQuadraticSpline(8), made=MADE(3, 2))
    with pytest.raises(TypeError, match="ScalarTransform"):
        MaskedAutoregressive(3, transform="affine")
    with pytest.raises(ValueError, match="expects a context"):
        MaskedAutoregressive(3, context_features=2)(x)


def test_layers_keep_float32_under_bf16_autocast() -> None:
    flow = _flow(MaskedAutoregressive)
    x = torch.randn(64, 6)
    reference = flow.log_prob(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_p = flow.log_prob(x)
        samples = flow.sample(8)
    assert log_p.dtype == torch.float32 and samples.dtype == torch.float32
    assert (log_p - reference).abs().max() < 0.5


@settings(max_examples=25, deadline=None)
@given(
    features=st.integers(1, 7),
    hidden=st.lists(st.integers(1, 9), min_size=0, max_size=3),
    k=st.integers(1, 3),
    seed=st.integers(0, 1000),
    context=st.booleans(),
)
def test_made_property(features, hidden, k, seed, context) -> None:
    """Any MADE: the product of its masks is strictly triangular in its order; incremental = full."""
    g = torch.Generator().manual_seed(seed)
    made = randomize(
        MADE(features, k, hidden=tuple(hidden), order="random", context_features=2 if context else 0, generator=g), g
    ).double()
    reach = torch.eye(features, dtype=F64)
    for layer in made.layers[:-1]:
        reach = (layer.mask @ reach).clamp(max=1)
    reach = (made.layers[-1].mask @ reach).clamp(max=1).view(k, features, features).amax(0)
    position = torch.argsort(made.order)
    allowed = position[None, :] < position[:, None]
    assert not bool(reach[~allowed].any())
    x = torch.randn(3, features, generator=g, dtype=F64)
    c = torch.randn(3, 2, generator=g, dtype=F64) if context else None
    runner = IncrementalMADE(made, reference=x, context=c)
    rows = []
    for p in range(features):
        rows.append(runner.next_params())
        runner.feed(x[:, made.order[p]])
    torch.testing.assert_close(torch.stack(rows, 1), made(x, c)[:, made.order], atol=1e-12, rtol=0)
    assert autoregressive_order(features, made.order).tolist() == made.order.tolist()


# --------------------------------------------------------------------------- models


def test_maf_model_has_the_protocol_size() -> None:
    assert sum(p.numel() for p in maf(64, layers=5, hidden=(256, 256)).parameters()) == 576_640


def test_alternating_orders_are_reversals_between_layers() -> None:
    """R L R, with L a natural-order layer, is a reversed-order layer with its weights re-indexed."""
    g = torch.Generator().manual_seed(0)
    alternate = randomize(maf(4, layers=3, hidden=(8,)), g).double()
    reverse = maf(4, layers=3, hidden=(8,), ordering="reverse").double()
    reverse_layers = [layer for layer in reverse.bijection if isinstance(layer, MaskedAutoregressive)]
    assert len(reverse.bijection) == 5 and alternate.bijection[1].order.tolist() == [3, 2, 1, 0]
    reverse_layers[0].load_state_dict(alternate.bijection[0].state_dict())
    reverse_layers[2].load_state_dict(alternate.bijection[2].state_dict())
    source, target = alternate.bijection[1].made, reverse_layers[1].made
    flip = torch.arange(3, -1, -1)
    rows = (4 * torch.arange(2)[:, None] + flip[None, :]).reshape(-1)  # parameter-major rows, coordinates flipped
    with torch.no_grad():
        target.layers[0].weight.copy_(source.layers[0].weight[:, flip])
        target.layers[0].bias.copy_(source.layers[0].bias)
        target.layers[1].weight.copy_(source.layers[1].weight[rows])
        target.layers[1].bias.copy_(source.layers[1].bias[rows])
    x = points(20, 4)
    torch.testing.assert_close(reverse.log_prob(x), alternate.log_prob(x), atol=1e-12, rtol=0)


def test_models_on_images_with_standardization() -> None:
    mean, std = torch.full((64,), 0.3), torch.full((64,), 0.2)
    for build in (maf, iaf):
        flow = build(64, layers=2, hidden=(32,), event_shape=(1, 8, 8), standardize=(mean, std))
        x = torch.rand(5, 1, 8, 8)
        # a fresh flow is the identity after the standardization: log p = log N((x - m)/s) - 64 log s
        v = (x.reshape(5, 64) - mean) / std
        expected = StandardNormal(64).log_prob(v) - 64 * torch.log(torch.tensor(0.2))
        torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-4, rtol=1e-5)
        assert flow.sample(3).shape == (3, 1, 8, 8)
        assert not list(flow.bijection[1].parameters())  # the standardization is fixed
    with pytest.raises(ValueError, match="ordering"):
        maf(4, ordering="shuffled")
    with pytest.raises(ValueError, match="transform"):
        maf(4, transform="quadratic")


def test_spline_models_round_trip() -> None:
    g = torch.Generator().manual_seed(2)
    for build in (maf, iaf):
        flow = randomize(build(5, layers=2, hidden=(12,), transform="spline", bins=4, ordering="random"), g, std=0.3)
        check_inverse(flow.bijection.double(), points(6, 5))
