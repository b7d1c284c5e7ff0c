"""Flow, Compose, Inverse and the base distributions against closed forms and torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from flowlib import Compose, DiagonalGaussian, Flow, Inverse, StandardNormal
from flowlib.bijections import ElementwiseAffine, Linear, Permutation

D64 = torch.float64


def test_location_scale_flow_is_the_normal_it_should_be() -> None:
    flow = Flow(StandardNormal(1), Inverse(ElementwiseAffine(0.75, 1.0))).double()
    x = torch.linspace(-3, 5, 17, dtype=D64).unsqueeze(1)
    expected = Normal(torch.tensor(1.0, dtype=D64), torch.tensor(0.75, dtype=D64)).log_prob(x[:, 0])
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-12, rtol=0)


def test_linear_flow_is_the_gaussian_of_affine_algebra() -> None:
    # x = A z + b with z ~ N(0, I) is N(b, A A^T); flowlib writes the inverse: z = A^{-1}(x - b).
    g = torch.Generator().manual_seed(3)
    a = torch.randn(3, 3, generator=g, dtype=D64) + 2 * torch.eye(3, dtype=D64)
    b = torch.randn(3, generator=g, dtype=D64)
    flow = Flow(StandardNormal(3), Inverse(Linear(a, b))).double()
    x = torch.randn(10, 3, generator=g, dtype=D64)
    expected = MultivariateNormal(b, covariance_matrix=a @ a.T).log_prob(x)
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-10, rtol=0)


def test_samples_have_the_right_moments() -> None:
    torch.manual_seed(0)
    a = torch.tensor([[1.0, 0.0], [0.8, 0.5]], dtype=D64)
    b = torch.tensor([2.0, -1.0], dtype=D64)
    flow = Flow(StandardNormal(2), Inverse(Linear(a, b))).double()
    x = flow.sample(200_000)
    assert x.shape == (200_000, 2) and not x.requires_grad
    torch.testing.assert_close(x.mean(0), b, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), a @ a.T, atol=0.01, rtol=0)


def test_rsample_and_log_prob_agree_with_log_prob() -> None:
    torch.manual_seed(1)
    flow = Flow(StandardNormal(3), Compose(Linear(3), ElementwiseAffine(torch.tensor([0.5, 2.0, -1.5])))).double()
    x, log_q = flow.rsample_and_log_prob(7)
    torch.testing.assert_close(log_q, flow.log_prob(x), atol=1e-10, rtol=0)
    (x.sum() + log_q.sum()).backward()  # samples depend on every parameter
    assert all(p.grad is not None for p in flow.parameters())


def test_compose_inverse_runs_layers_in_reverse() -> None:
    layers = [ElementwiseAffine(torch.tensor([2.0, 3.0]), torch.tensor([1.0, 0.0])), Permutation([1, 0])]
    f = Compose(*layers)
    x = torch.tensor([[1.0, 2.0]])
    z, ladj = f(x)
    assert z.tolist() == [[6.0, 3.0]]
    assert ladj.item() == pytest.approx(math.log(6.0))
    x_back, ladj_back = f.inverse(z)
    assert x_back.tolist() == [[1.0, 2.0]] and ladj_back.item() == pytest.approx(-math.log(6.0))
    states = f.forward_trajectory(x)
    assert [s.tolist() for s in states] == [[[1.0, 2.0]], [[3.0, 6.0]], [[6.0, 3.0]]]


def test_compose_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="layer 0 .* outputs events of shape \\(2,\\) but layer 1"):
        Compose(Linear(2), Linear(3))
    with pytest.raises(TypeError, match="not a flowlib Bijection"):
        Compose(Linear(2), torch.nn.Linear(2, 2))


def test_flow_rejects_a_base_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="base distribution has event shape"):
        Flow(StandardNormal(3), Linear(2))


def test_image_shaped_flow() -> None:
    torch.manual_seed(2)
    scale = torch.tensor([0.5, 2.0], dtype=D64).reshape(2, 1, 1)
    flow = Flow(StandardNormal((2, 4, 4)), ElementwiseAffine(scale, event_shape=(2, 4, 4))).double()
    x = torch.randn(3, 2, 4, 4, dtype=D64)
    expected = Normal(0.0, 1.0 / scale.expand(2, 4, 4)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-10, rtol=0)
    assert flow.sample(5).shape == (5, 2, 4, 4)


def test_diagonal_gaussian_matches_torch() -> None:
    base = DiagonalGaussian(3, loc=torch.tensor([1.0, -2.0, 0.5]), scale=torch.tensor([0.5, 2.0, 1.5])).double()
    z = torch.randn(4, 3, dtype=D64)
    expected = Normal(base.loc, base.scale).log_prob(z).sum(1)
    torch.testing.assert_close(base.log_prob(z), expected, atol=1e-12, rtol=0)
    assert base.rsample((6,)).shape == (6, 3)
    assert {name for name, _ in base.named_parameters()} == {"loc", "log_scale"}
    fixed = DiagonalGaussian(3, learnable=False)
    assert list(fixed.parameters()) == []


def test_standard_normal_matches_torch() -> None:
    base = StandardNormal((2, 3)).double()
    z = torch.randn(5, 2, 3, dtype=D64)
    expected = Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1)
    torch.testing.assert_close(base.log_prob(z), expected, atol=1e-12, rtol=0)
    assert base.sample((4,)).dtype == D64


def test_state_dict_round_trip() -> None:
    torch.manual_seed(4)
    flow = Flow(DiagonalGaussian(3), Compose(Linear(3), ElementwiseAffine(torch.ones(3) * 2), Permutation.reverse(3)))
    clone = Flow(DiagonalGaussian(3), Compose(Linear(3), ElementwiseAffine(torch.ones(3)), Permutation.reverse(3)))
    clone.load_state_dict(flow.state_dict())
    x = torch.randn(4, 3)
    torch.testing.assert_close(clone.log_prob(x), flow.log_prob(x))


def test_context_must_match_the_batch() -> None:
    layer = Linear(2)
    with pytest.raises(ValueError, match="same batch size"):
        layer(torch.zeros(3, 2), context=torch.zeros(4, 5))
    flow = Flow(StandardNormal(2), layer)
    with pytest.raises(ValueError, match="n=3 but the context has batch size 4"):
        flow.sample(3, context=torch.zeros(4, 1))
    assert flow.sample(context=torch.zeros(4, 1)).shape == (4, 2)


def test_input_checks_can_be_turned_off() -> None:
    import flowlib

    layer = Linear(2)
    flowlib.set_input_checks(False)
    try:
        z, _ = layer(torch.tensor([[float("nan"), 0.0]]))
        assert torch.isnan(z).any()
    finally:
        flowlib.set_input_checks(True)
    with pytest.raises(ValueError, match="NaN or Inf"):
        layer(torch.tensor([[float("nan"), 0.0]]))


# --------------------------------------------------------------------------- the contract guards itself


def test_overriding_forward_or_inverse_fails_when_the_class_is_created() -> None:
    """A layer written the plain PyTorch way would bypass the input checks and be ignored inside Compose."""
    from flowlib import Bijection

    with pytest.raises(TypeError, match=r"Doubling overrides forward\(\); .*Implement _forward\(self, x, context\)"):

        class Doubling(Bijection):
            def __init__(self) -> None:
                super().__init__()
                self.event_shape = torch.Size([2])

            def forward(self, x, context=None):
                return 2 * x, x.new_full((x.shape[0],), 2 * math.log(2.0))

    both = r"overrides forward\(\) and inverse\(\);.*_inverse\(self, z, context\).*event_shape"
    with pytest.raises(TypeError, match=both):

        class Both(Bijection):
            def forward(self, x, context=None):
                return x, x.new_zeros(x.shape[0])

            def inverse(self, z, context=None):
                return z, z.new_zeros(z.shape[0])


def test_a_layer_without_event_shape_fails_when_it_is_built() -> None:
    from flowlib import Bijection

    class NoShape(Bijection):
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.scale = scale

        def _forward(self, x, context):
            return self.scale * x, x.new_full((x.shape[0],), x.shape[1] * math.log(self.scale))

    class NoInit(Bijection):
        def _forward(self, x, context):
            return x, x.new_zeros(x.shape[0])

    for make in (lambda: NoShape(2.0), NoInit):
        with pytest.raises(TypeError, match=r"__init__ did not set self.event_shape; .*torch.Size\(\[dim\]\)"):
            make()
    # so Compose, Inverse and Flow never meet a layer without one (they used to fail with an AttributeError
    # about 'output_event_shape' deep inside)
    with pytest.raises(TypeError, match="NoShape.__init__ did not set self.event_shape"):
        Compose(Linear(2), NoShape(2.0))
    with pytest.raises(TypeError, match="did not set self.event_shape"):
        Flow(StandardNormal(2), Inverse(NoShape(2.0)))
    with pytest.raises(TypeError, match="event_shape must be the shape of one input sample"):

        class BadShape(NoShape):
            def __init__(self) -> None:
                super().__init__(2.0)
                self.event_shape = "two"

        BadShape()


def test_a_layer_written_by_the_contract_works_everywhere() -> None:
    """_forward/_inverse and event_shape set after super().__init__(), also through subclasses of subclasses."""
    from flowlib import Bijection

    class Scale(Bijection):
        def __init__(self, dim: int, scale: float) -> None:
            super().__init__()
            self.event_shape = (dim,)  # a tuple is accepted and stored as a torch.Size
            self.scale = scale

        def _forward(self, x, context):
            return self.scale * x, x.new_full((x.shape[0],), x.shape[1] * math.log(self.scale))

        def _inverse(self, z, context):
            return z / self.scale, z.new_full((z.shape[0],), -z.shape[1] * math.log(self.scale))

    class Double(Scale):
        def __init__(self, dim: int) -> None:
            super().__init__(dim, 2.0)  # the outer __init__ is the one whose end is checked

    layer = Double(2)
    assert layer.event_shape == torch.Size([2]) and isinstance(layer.event_shape, torch.Size)
    assert "_bijection_init_depth" not in vars(layer)
    flow = Flow(StandardNormal(2), Compose(Double(2), Inverse(Scale(2, 4.0))))
    x = torch.ones(3, 2)
    torch.testing.assert_close(flow.log_prob(x), StandardNormal(2).log_prob(x / 2) + 2 * math.log(0.5))
    with pytest.raises(ValueError, match="the input has shape \\(3, 5\\) but Double expects \\(batch, 2\\)"):
        layer(torch.ones(3, 5))


def test_show_source_of_a_wrapped_constructor_names_its_own_file() -> None:
    """Bijection wraps every subclass's __init__ (to check event_shape); listings still show the layer's file."""
    from flowlib.bijections import TriangularLinear
    from flowlib.source import show_source

    listing = show_source(TriangularLinear.__init__)
    assert listing.location == "flowlib/bijections/linear.py" and listing.name == "TriangularLinear.__init__"
    assert listing.code.startswith("def __init__(") and "random_triangle" in listing.code


def test_temperature_scales_the_base_standard_deviation() -> None:
    from flowlib.bijections import ElementwiseAffine
    from flowlib.distributions import DiagonalGaussian

    flow = Flow(StandardNormal(2), Inverse(ElementwiseAffine(torch.tensor([1.0, 1.0]), torch.tensor([3.0, -1.0]))))
    torch.manual_seed(0)
    cold = flow.sample(20000, temperature=0.5)
    assert torch.allclose(cold.mean(0), torch.tensor([3.0, -1.0]), atol=0.02)
    assert torch.allclose(cold.std(0), torch.tensor([0.5, 0.5]), atol=0.01)
    torch.manual_seed(1)
    plain = flow.sample(10)
    torch.manual_seed(1)
    assert torch.equal(flow.sample(10, temperature=1.0), plain)
    base = DiagonalGaussian(1, loc=2.0, scale=3.0)
    torch.manual_seed(0)
    draws = base.sample((20000,), temperature=0.1)
    assert abs(draws.mean().item() - 2.0) < 0.01 and abs(draws.std().item() - 0.3) < 0.01
    for bad, error in ((0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("hot", TypeError)):
        with pytest.raises(error, match="temperature"):
            flow.sample(3, temperature=bad)


def test_a_composition_reads_its_layers_exactness_live() -> None:
    from flowlib.bijections import ElementwiseAffine

    class Switchable(ElementwiseAffine):
        exact = True

        @property
        def logdet_is_exact(self) -> bool:  # type: ignore[override]
            return self.exact

    inner = Switchable(torch.tensor([2.0]))
    stack = Compose(ElementwiseAffine(torch.tensor([3.0])), inner)
    wrapped = Inverse(stack)
    assert stack.logdet_is_exact and wrapped.logdet_is_exact
    inner.exact = False
    assert not stack.logdet_is_exact and not wrapped.logdet_is_exact
