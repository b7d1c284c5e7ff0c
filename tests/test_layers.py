"""Layer-specific behaviour beyond the contract: splines at their edges, constraints, masks, shapes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib import Compose, Flow, StandardNormal
from flowlib.bijections import (
    AffineCoupling,
    Logit,
    Sigmoid,
    Coupling,
    ElementwiseSpline,
    FactorOut,
    HigherOrderPerturbation,
    LULinear,
    MonotoneMLP,
    Squeeze,
    TriangularLinear,
    alternating_mask,
    channel_mask,
    checkerboard_mask,
    half_mask,
)
from flowlib.bijections.elementwise import bisect_increasing
from flowlib.bijections.scalar import AffineTransform, RationalQuadraticSpline
from flowlib.models import nice, realnvp, spline_flow
from flowlib.nets import MLP
from flowlib.testing import check_inverse, check_logdet

D64 = torch.float64


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([0.1, 1.0, 5.0, 20.0]),
    bins=st.integers(1, 10),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_spline_inverse_is_finite_and_exact_everywhere(seed: int, scale: float, bins: int, dtype) -> None:
    """Extreme parameters, inputs exactly on the knots, on the bounds and far outside: never NaN."""
    g = torch.Generator().manual_seed(seed)
    spline = RationalQuadraticSpline(bins=bins, bound=3.0)
    n = 64
    params = scale * torch.randn(1, n, spline.num_params, generator=g, dtype=dtype)
    x = torch.cat([
        torch.tensor([-3.0, 3.0, -100.0, 100.0, 0.0, -3.0 + 1e-7, 3.0 - 1e-7], dtype=dtype),
        6 * torch.rand(n - 7, generator=g, dtype=dtype) - 3,
    ]).reshape(1, n)
    y, log_d = spline.forward(x, params)
    assert torch.isfinite(y).all() and torch.isfinite(log_d).all()
    x_back, log_d_back = spline.inverse(y, params)
    assert torch.isfinite(x_back).all() and torch.isfinite(log_d_back).all()
    # the round-trip error is bounded by the conditioning: rounding in y is divided by the slope
    slope = log_d.exp()
    tolerance = 50 * torch.finfo(dtype).eps * (1 + x.abs()) / slope.clamp(max=1.0)
    assert ((x_back - x).abs() <= tolerance).all()
    # where the map is well conditioned the two log-derivatives agree; everywhere, the inverse's one is
    # that of the forward map at the point the inverse returned
    _, log_d_at_back = spline.forward(x_back, params)
    # ... up to what rounding x_back to the dtype can change: on a very narrow, steeply curved bin (scale 20)
    # the log-derivative varies by 0.1 within a few ulps of x, so allow the spread over that neighbourhood
    delta = 8 * torch.finfo(dtype).eps * (1 + x_back.abs())
    spread = torch.stack([(spline.forward(x_back + sign * delta, params)[1] - log_d_at_back).abs() for sign in (1, -1)])
    allowed = (1e-4 if dtype == torch.float32 else 1e-9) + spread.amax(dim=0)
    assert ((log_d_back + log_d_at_back).abs() <= allowed).all()
    good = slope > 0.1
    torch.testing.assert_close(log_d_back[good], -log_d[good], atol=1e-3 if dtype == torch.float32 else 1e-9, rtol=0)
    # knots: the spline maps [-B, B] onto itself and is the identity outside
    assert y[0, 0].item() == -3.0 and y[0, 1].item() == 3.0
    assert y[0, 2].item() == -100.0 and y[0, 3].item() == 100.0 and log_d[0, 2].item() == 0.0


def test_spline_inverse_on_knots_themselves() -> None:
    spline = RationalQuadraticSpline(bins=4, bound=2.0)
    params = torch.randn(1, 1, spline.num_params, dtype=D64).expand(1, 5, -1)
    knots_x, knots_y, _ = spline.knots(params)
    x_back, _ = spline.inverse(knots_y[0, :, :].diagonal().reshape(1, 5), params)
    torch.testing.assert_close(x_back, knots_x[0, :, :].diagonal().reshape(1, 5), atol=1e-12, rtol=0)


def test_spline_gradients_are_finite_at_the_edges() -> None:
    spline = RationalQuadraticSpline(bins=5, bound=1.0)
    params = torch.randn(1, 4, spline.num_params, dtype=D64, requires_grad=True)
    y = torch.tensor([[-1.0, 1.0, 5.0, 0.3]], dtype=D64, requires_grad=True)
    x, log_d = spline.inverse(y, params)
    (x.sum() + log_d.sum()).backward()
    assert torch.isfinite(params.grad).all() and torch.isfinite(y.grad).all()


def test_zero_parameters_give_the_identity() -> None:
    x = torch.linspace(-6, 6, 25, dtype=D64).reshape(1, 25)
    for transform in (AffineTransform(), RationalQuadraticSpline(8, 5.0)):
        y, log_d = transform.forward(x, torch.zeros(1, 25, transform.num_params, dtype=D64))
        torch.testing.assert_close(y, x, atol=1e-12, rtol=0)
        torch.testing.assert_close(log_d, torch.zeros_like(x), atol=1e-12, rtol=0)


def test_affine_log_scale_is_bounded() -> None:
    transform = AffineTransform(bound=2.0)
    raw = torch.tensor([-1e30, -50.0, 0.0, 50.0, 1e30])
    log_scale = transform.log_scale(raw)
    assert (log_scale.abs() <= 2.0).all() and log_scale[2] == 0
    y, _ = transform.forward(torch.ones(5), torch.stack([torch.zeros(5), raw], -1))
    assert torch.isfinite(y).all() and (y > 0).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), c_scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]))
def test_perturbation_is_monotone_for_any_parameters(seed: int, c_scale: float) -> None:
    """The parametrization enforces a > 9/(8 sqrt 3) |c| d and d > 0: the derivative stays positive."""
    g = torch.Generator().manual_seed(seed)
    params = [3 * torch.randn(2, generator=g, dtype=D64) for _ in range(5)]
    params[2] = c_scale * params[2]
    layer = HigherOrderPerturbation(2, params).double()
    a, _, c, d, _ = layer.coefficients()
    assert (d > 0).all() and (a > HigherOrderPerturbation.BOUND * c.abs() * d).all()
    x = torch.linspace(-20, 20, 4001, dtype=D64).unsqueeze(1).expand(-1, 2)
    z, _ = layer(x)
    assert (z[1:] - z[:-1] > 0).all(), "h is not strictly increasing on the grid"


def test_the_perturbation_bound_is_tight() -> None:
    """At a = m|c|d exactly the derivative touches 0 (at u = 1/sqrt 3): the constraint cannot be loosened."""
    m = 9 / (8 * math.sqrt(3))
    u = torch.linspace(-3, 3, 60001, dtype=D64)
    fraction = 2 * u / (1 + u**2) ** 2
    assert fraction.max().item() == pytest.approx(m, rel=1e-8)
    assert u[fraction.argmax()].item() == pytest.approx(1 / math.sqrt(3), abs=1e-4)


def test_bisection_raises_when_it_cannot_converge() -> None:
    with pytest.raises(RuntimeError, match="no convergence in 3 steps"):
        bisect_increasing(lambda x: x, torch.tensor([0.3]), torch.tensor([-10.0]), torch.tensor([10.0]), max_iter=3)
    with pytest.raises(ValueError, match="does not contain"):
        bisect_increasing(lambda x: x, torch.tensor([30.0]), torch.tensor([-1.0]), torch.tensor([1.0]))


def test_monotone_mlp_inverse_is_differentiable() -> None:
    layer = MonotoneMLP(2, hidden=4, generator=torch.Generator().manual_seed(0)).double()
    z = torch.randn(3, 2, dtype=D64, requires_grad=True)
    x, _ = layer.inverse(z)
    x.sum().backward()
    derivative = torch.exp(layer._log_derivative(x.detach()))
    torch.testing.assert_close(z.grad, 1 / derivative, atol=1e-10, rtol=0)


def test_triangular_inverse_uses_only_the_triangle() -> None:
    weight = torch.tensor([[2.0, 99.0], [1.0, 4.0]], dtype=D64)
    layer = TriangularLinear(weight).double()
    z, ladj = layer(torch.tensor([[1.0, 1.0]], dtype=D64))
    assert z.tolist() == [[2.0, 5.0]] and ladj.item() == pytest.approx(math.log(8.0))
    with pytest.raises(ValueError, match="diagonal must be non-zero"):
        TriangularLinear(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))


def test_lu_linear_is_invertible_for_any_parameters() -> None:
    torch.manual_seed(0)  # the parameters below are N(0, 9): some draws are too ill-conditioned for atol=1e-8
    layer = LULinear(5, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_(0, 3)
    sign, logdet = torch.linalg.slogdet(layer.weight())
    assert sign != 0 and torch.isfinite(logdet)
    check_inverse(layer, torch.randn(4, 5, dtype=D64), atol=1e-8)
    check_logdet(layer, torch.randn(4, 5, dtype=D64))


def test_masks() -> None:
    assert half_mask(5).tolist() == [True, True, False, False, False]
    assert half_mask(4, first=False).tolist() == [False, False, True, True]
    assert alternating_mask(4).tolist() == [True, False, True, False]
    board = checkerboard_mask((2, 3, 3))
    assert board.shape == (2, 3, 3) and board[0, 0, 0] and not board[0, 0, 1] and board[1, 1, 1]
    assert int(board[0].sum()) == 5 and torch.equal(board[0], board[1])
    channels = channel_mask((4, 2, 2))
    assert channels[:2].all() and not channels[2:].any()
    with pytest.raises(ValueError):
        half_mask(1)
    with pytest.raises(ValueError):
        checkerboard_mask((3,))


def test_coupling_leaves_the_kept_part_alone_and_its_jacobian_is_block_triangular() -> None:
    torch.manual_seed(0)
    layer = AffineCoupling(half_mask(4), hidden=(16,)).double()
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_(0, 0.5)
    x = torch.randn(1, 4, dtype=D64)
    z, _ = layer(x)
    assert torch.equal(z[:, :2], x[:, :2])
    jacobian = torch.autograd.functional.jacobian(lambda v: layer(v.unsqueeze(0))[0][0], x[0])
    assert torch.equal(jacobian[:2, 2:], torch.zeros(2, 2, dtype=D64))  # kept rows do not see x_B
    assert torch.count_nonzero(jacobian[2:, 2:] - torch.diag(jacobian[2:, 2:].diagonal())) == 0


def test_coupling_rejects_bad_conditioner_output() -> None:
    layer = Coupling(half_mask(4), MLP(2, 3), AffineTransform())
    with pytest.raises(ValueError, match="expected \\(2, 4\\)"):
        layer(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="keep some coordinates"):
        Coupling(torch.ones(3, dtype=torch.bool), MLP(3, 1), AffineTransform())


def test_squeeze_moves_each_2x2_block_into_channels() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    z, _ = Squeeze((1, 4, 4))(x)
    assert z.shape == (1, 4, 2, 2)
    assert z[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]  # the top-left 2x2 block
    with pytest.raises(ValueError, match="even H and W"):
        Squeeze((1, 3, 4))


def test_multiscale_flow_on_images() -> None:
    torch.manual_seed(0)
    head = Compose(Squeeze((1, 4, 4)), AffineCoupling(channel_mask((4, 2, 2)), hidden=(8,)))
    tail = AffineCoupling(checkerboard_mask((2, 2, 2)), hidden=(8,))
    layer = FactorOut(head, 2, tail)
    assert layer.output_event_shape == (16,)
    flow = Flow(StandardNormal(16), layer)
    assert flow.sample(3).shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="tail must take events of shape \\(3, 2, 2\\), got \\(2, 2, 2\\)"):
        FactorOut(head, 1, tail)


def test_models_have_the_protocol_parameter_counts() -> None:
    count = lambda flow: sum(p.numel() for p in flow.parameters())  # noqa: E731
    assert count(realnvp(2, layers=8, hidden=(128, 128))) == 136_208
    assert count(spline_flow(2, layers=5, hidden=(128, 128), bins=8)) == 98_675
    flow = nice(4, layers=4, hidden=(32,))
    x = torch.randn(5, 4)
    torch.testing.assert_close(flow.log_prob(x), StandardNormal(4).log_prob(x))  # identity at init


def test_logit_domain_and_its_inverse_on_all_of_r() -> None:
    layer = Logit(2, alpha=0.05).double()
    low, high = -0.05 / 0.9, 0.95 / 0.9
    inside = torch.tensor([[0.0, 1.0], [low + 1e-9, high - 1e-9]], dtype=D64)
    z, _ = layer(inside)
    assert torch.isfinite(z).all()
    with pytest.raises(ValueError, match="strictly inside"):
        layer(torch.tensor([[low - 1e-3, 0.5]], dtype=D64))
    x, _ = layer.inverse(torch.tensor([[-40.0, 40.0]], dtype=D64))  # any real number has an inverse
    assert low <= x.min().item() and x.max().item() <= high
    with pytest.raises(ValueError, match="strictly inside"):
        Logit(2, alpha=0.0)(torch.tensor([[0.0, 0.5]], dtype=D64))
    with pytest.raises(ValueError, match="strictly inside \\(0, 1\\)"):
        Sigmoid(2).inverse(torch.tensor([[1.0, 0.5]], dtype=D64))


def test_scalar_transform_is_an_interface() -> None:
    """A coupling's scalar transform states num_params and implements forward and inverse (an ABC)."""
    from flowlib.bijections.scalar import ScalarTransform

    with pytest.raises(TypeError, match="abstract"):
        ScalarTransform()

    class ForwardOnly(ScalarTransform):
        num_params = 1

        def forward(self, x, params):
            return x + params[..., 0], torch.zeros_like(x)

    with pytest.raises(TypeError, match="abstract method.*inverse"):
        ForwardOnly()

    class Shift(ForwardOnly):
        def inverse(self, y, params):
            return y - params[..., 0], torch.zeros_like(y)

    layer = Coupling(half_mask(2), MLP(1, 1, hidden=(4,)), Shift())
    z, ladj = layer(torch.ones(3, 2))
    assert z.shape == (3, 2) and ladj.tolist() == [0.0, 0.0, 0.0]


def test_logit_alpha_follows_the_exception_policy() -> None:
    with pytest.raises(ValueError, match=r"Logit: alpha must be in \[0, 0.5\), got 0.5"):
        Logit(2, alpha=0.5)
    with pytest.raises(TypeError, match="Logit: alpha must be a real number, got str"):
        Logit(2, alpha="0.05")
