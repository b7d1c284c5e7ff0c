"""Residual and planar flows: contraction bounds, fixed-point inverses, log-det estimators, the determinant lemma.

The registry (tests/registry.py) checks the residual blocks' *exact* mode against brute-force
Jacobians. Their estimators are random, so they are checked here statistically: over many
independent estimates, the mean must lie within ``Z_BOUND`` standard errors of the value it
estimates. Every random draw comes from a seeded generator, so each test is deterministic; the
statistical tolerance is what makes it meaningful (a failure at 4 standard errors would be a
one-in-15,000 event for an unbiased estimator), and ``test_the_check_catches_a_planted_bias``
shows that it is tight enough to catch a bias of 0.05 nats.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib import Compose, Flow, StandardNormal
from flowlib.bijections import InvertibleResidual, LowRankResidual, Planar, Radial, logdet_mode
from flowlib.bijections.residual import (
    FixedPointError,
    LipSwish,
    SpectralNormLinear,
    fixed_point_inverse,
    residual_logdet,
)
from flowlib.bijections.planar import solve_planar_projection
from flowlib.models import iresnet, planar_flow, radial_flow
from flowlib.testing import check_logdet, jacobian_logabsdet

D64 = torch.float64
Z_BOUND = 4.0  # standard errors


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # thousands of small autograd calls


def block(features=4, hidden=(16, 16), kappa=0.9, activation="lipswish", seed=0, scale=1.0, **options):
    """A float64 block whose every layer sits at the bound (weights scaled up, power iteration converged)."""
    g = torch.Generator().manual_seed(seed)
    layer = InvertibleResidual(features, hidden=hidden, kappa=kappa, activation=activation, generator=g, **options)
    with torch.no_grad():
        for linear in layer.linear_layers():
            linear.weight.mul_(scale)
    layer.update_spectral_norm(500)
    return layer.double()


def points(n, features, seed=1, scale=1.5):
    return scale * torch.randn(n, features, generator=torch.Generator().manual_seed(seed), dtype=D64)


# ------------------------------------------------------------------------------------ contraction bounds


@pytest.mark.parametrize("activation", ["lipswish", "elu", "tanh"])
@pytest.mark.parametrize("kappa", [0.5, 0.9, 0.99])
def test_the_branch_is_a_contraction_with_constant_at_most_kappa(activation: str, kappa: float) -> None:
    layer = block(kappa=kappa, activation=activation, scale=4.0)
    bound = layer.lipschitz_bound()
    assert bound <= kappa**3 * (1 + 1e-9)  # three linear layers, each at most kappa
    # estimated on random pairs of inputs, near and far apart
    a, b = points(4000, 4, seed=2, scale=3.0), points(4000, 4, seed=3, scale=3.0)
    near = a + 1e-3 * points(4000, 4, seed=4, scale=1.0)
    with torch.no_grad():
        for x, y in ((a, b), (a, near)):
            ratio = (layer.branch(x) - layer.branch(y)).norm(dim=1) / (x - y).norm(dim=1)
            assert ratio.max().item() <= bound * (1 + 1e-9) < kappa
    # by the Jacobian's largest singular value at random points
    x = points(200, 4, seed=5, scale=3.0).requires_grad_(True)
    g_x = layer.branch(x)
    jacobian = torch.stack([torch.autograd.grad(g_x[:, i].sum(), x, retain_graph=True)[0] for i in range(4)], 1)
    largest = torch.linalg.matrix_norm(jacobian, ord=2)
    assert largest.max().item() <= bound * (1 + 1e-9)
    assert largest.max().item() > 0.02 * bound  # a real measurement, not zero (the product bound is loose)


def test_activations_have_slopes_at_most_one() -> None:
    x = torch.linspace(-30, 30, 600001, dtype=D64, requires_grad=True)
    for activation in (LipSwish(), torch.nn.ELU(), torch.nn.Tanh()):
        (slope,) = torch.autograd.grad(activation(x).sum(), x)
        assert slope.abs().max().item() <= 1.0


def test_power_iteration_estimates_the_largest_singular_value() -> None:
    g = torch.Generator().manual_seed(0)
    layer = SpectralNormLinear(12, 9, kappa=0.7, generator=g).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(9, 12, generator=g, dtype=D64) * 3)
    exact = torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item()
    estimates = []
    for _ in range(60):
        layer.update_spectral_norm(1, rtol=0.0)
        estimates.append(layer.sigma_estimate().item())
    assert all(e <= exact * (1 + 1e-12) for e in estimates)  # power iteration approaches from below
    assert abs(estimates[-1] - exact) < 1e-6 * exact
    assert abs(layer.spectral_norm().item() - 0.7) < 1e-6
    small = SpectralNormLinear(3, 3, kappa=0.9).double()
    with torch.no_grad():
        small.weight.copy_(0.1 * torch.eye(3, dtype=D64))
    small.update_spectral_norm(5)
    assert torch.equal(small.normalized_weight(), small.weight)  # already below kappa: left alone


def test_spectral_norm_is_fixed_between_weight_changes_and_tracks_training() -> None:
    torch.manual_seed(0)
    layer = block(features=2, hidden=(32, 32), kappa=0.9, scale=3.0)
    layer.train()
    x = points(64, 2)
    first = layer(x)[0]
    assert torch.equal(layer(x)[0], first)  # same weights, same map: power iteration did not move
    optimizer = torch.optim.Adam(layer.parameters(), lr=3e-3)
    worst = 0.0
    for _ in range(40):
        optimizer.zero_grad()
        z, ladj = layer(x)
        loss = z.pow(2).mean() - ladj.mean()
        loss.backward()
        optimizer.step()
        layer(x)  # the first call after the step updates the estimates
        worst = max([worst] + [linear.spectral_norm().item() for linear in layer.linear_layers()])
    # power iteration approaches the largest singular value from below, so right after a step the
    # bound can be exceeded a little; warm-started iterations keep that within a few percent
    assert worst <= 0.9 * 1.02, worst
    assert layer.lipschitz_bound() < 0.9**3 * 1.06
    layer.eval()
    with torch.no_grad():
        layer.linear_layers()[0].weight.mul_(2.0)
    before = layer.linear_layers()[0].u.clone()
    layer(x)
    assert torch.equal(layer.linear_layers()[0].u, before)  # evaluation mode never updates


# ------------------------------------------------------------------------------------ fixed-point inverse


@pytest.mark.parametrize("kappa", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("seed", range(3))
def test_inverse_round_trip_to_1e_8_and_iterations_are_reported(kappa: float, seed: int) -> None:
    layer = block(kappa=kappa, seed=seed, scale=4.0)
    x = points(50, 4, seed=seed + 10, scale=3.0)
    with torch.no_grad():
        z, ladj = layer(x)
        x_back, ladj_back = layer.inverse(z)
    assert (x_back - x).abs().max().item() < 1e-8
    assert (ladj_back + ladj).abs().max().item() < 1e-8
    iterations = layer.last_inverse_iterations
    # Banach: the error after k steps is at most L^k |x_0 - x*| / (1 - L)-ish; so k grows like log(tol)/log(L)
    assert 1 <= iterations <= math.log(1e-12 / 50) / math.log(layer.lipschitz_bound()) + 5


def test_fewer_iterations_for_smaller_kappa() -> None:
    x = points(50, 4, scale=3.0)
    counts = []
    for kappa in (0.3, 0.6, 0.9, 0.99):
        layer = block(kappa=kappa, scale=4.0, hidden=(16,))
        with torch.no_grad():
            layer.inverse(layer(x)[0])
        counts.append(layer.last_inverse_iterations)
    assert counts == sorted(counts) and counts[0] < counts[-1], counts


def test_a_non_contractive_branch_fails_with_a_clear_error() -> None:
    layer = block(kappa=0.9, scale=4.0)
    for linear in layer.linear_layers():
        linear.kappa = 2.0  # Lip(g) up to 8
    layer.update_spectral_norm(200)
    x = points(20, 4, scale=3.0)
    with torch.no_grad():
        z, _ = layer(x)
        with pytest.raises(FixedPointError, match="did not converge in 200 iterations|diverged") as caught:
            layer.inverse(z)
    assert "contraction" in str(caught.value) and "Lip(g) < 1" in str(caught.value)
    with pytest.raises(FixedPointError, match="did not converge in 7 iterations"):
        fixed_point_inverse(lambda t: 1.5 * torch.sin(t), torch.ones(3, 2, dtype=D64), max_iter=7)
    with pytest.raises(FixedPointError, match="diverged"):
        fixed_point_inverse(lambda t: 3.0 * t, torch.ones(3, 2, dtype=D64), max_iter=5000)


def test_kappa_must_make_a_contraction() -> None:
    for kappa in (1.0, 1.5, 0.0, -0.2):
        with pytest.raises(ValueError, match="kappa"):
            InvertibleResidual(2, kappa=kappa)
    with pytest.raises(TypeError, match="kappa"):
        InvertibleResidual(2, kappa="0.9")
    with pytest.raises(ValueError, match="activation must be one of"):
        InvertibleResidual(2, activation="relu6")
    with pytest.raises(ValueError, match="logdet must be one of"):
        InvertibleResidual(2, logdet="hutchinson")
    layer = InvertibleResidual(2)
    with pytest.raises(ValueError, match="logdet must be one of"):
        layer.logdet = "approximate"
    with pytest.raises(ValueError, match="rank"):
        LowRankResidual(4, rank=0)


def test_the_inverse_has_the_implicit_function_derivatives() -> None:
    layer = block(features=3, hidden=(8,), scale=4.0, kappa=0.95)
    z = points(1, 3, seed=7)
    # d x / d z = (I + J_g(x))^{-1}
    inverse_jacobian = torch.autograd.functional.jacobian(lambda t: layer.inverse(t)[0][0], z)[:, 0, :]
    with torch.no_grad():
        x, _ = layer.inverse(z)
    forward_jacobian = torch.autograd.functional.jacobian(lambda t: layer(t)[0][0], x)[:, 0, :]
    torch.testing.assert_close(inverse_jacobian @ forward_jacobian, torch.eye(3, dtype=D64), atol=1e-9, rtol=0)
    # d loss / d theta against central differences (the weights' normalization included)
    layer.eval()
    weight = layer.linear_layers()[0].weight

    def loss() -> torch.Tensor:
        return layer.inverse(z)[0].pow(3).sum()

    (grad,) = torch.autograd.grad(loss(), weight)
    numeric = torch.zeros_like(weight)
    with torch.no_grad():
        for index in np.ndindex(*weight.shape):
            saved = weight[index].item()
            weight[index] = saved + 1e-6
            up = loss().item()
            weight[index] = saved - 1e-6
            down = loss().item()
            weight[index] = saved
            numeric[index] = (up - down) / 2e-6
    torch.testing.assert_close(grad, numeric, atol=1e-6, rtol=1e-5)


def test_sampling_an_iresnet_is_differentiable() -> None:
    torch.manual_seed(0)
    flow = iresnet(2, blocks=2, hidden=(16,), logdet="exact").double()
    x, log_q = flow.rsample_and_log_prob(16)
    (x.sum() + log_q.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in flow.parameters() if p.grad is not None)
    torch.testing.assert_close(flow.log_prob(x.detach()), log_q.detach(), atol=1e-9, rtol=0)


# ------------------------------------------------------------------------------------ log-det estimators


def exact_and_powers(layer: InvertibleResidual, x: torch.Tensor, terms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact log-det and the exact partial sums of its power series (from explicit Jacobians)."""
    rows = []
    for sample in x:
        jacobian = torch.autograd.functional.jacobian(lambda t: layer.branch(t[None])[0], sample)
        power, partial, sums = torch.eye(len(sample), dtype=D64), 0.0, []
        for k in range(1, terms + 1):
            power = power @ jacobian
            partial += (-1) ** (k + 1) / k * torch.trace(power).item()
            sums.append(partial)
        rows.append(sums)
    _, exact = residual_logdet(layer.branch, x, "exact")
    return exact, torch.tensor(rows, dtype=D64)  # (points,), (points, terms)


def estimates(layer, x, method, calls, repeats, seed, **options) -> torch.Tensor:
    """``(calls, points)``: each entry the mean of ``repeats`` estimates made in one call.

    The roulette draws its number of terms once per call, so the estimates of one call are
    correlated; the means of different calls are independent, and the standard error is
    computed from them.
    """
    g = torch.Generator().manual_seed(seed)
    batch = x.repeat(repeats, 1)
    out = []
    with torch.no_grad():
        for _ in range(calls):
            _, value = residual_logdet(layer.branch, batch, method, generator=g, **options)
            out.append(value.reshape(repeats, len(x)).mean(0))
    return torch.stack(out)


def assert_unbiased(samples: torch.Tensor, expected: torch.Tensor, z_bound: float = Z_BOUND) -> torch.Tensor:
    """Assert that the mean of independent rows is within ``z_bound`` standard errors of ``expected``."""
    mean = samples.mean(0)
    standard_error = samples.std(0) / math.sqrt(samples.shape[0])
    z = (mean - expected) / standard_error
    assert bool((z.abs() <= z_bound).all()), (
        f"the estimator's mean is {z.abs().max().item():.1f} standard errors from the exact value "
        f"(allowed {z_bound}): mean {mean.tolist()}, exact {expected.tolist()}"
    )
    return standard_error


@pytest.fixture(scope="module")
def estimator_case():
    """A hard case for the series: J_g = -W^T diag(tanh') W is symmetric with eigenvalues down to -0.8^2.

    The terms of the series then all have the same sign and decay like 0.64^k / k, so truncation
    leaves a visible bias. The roulette's tail (p = 0.3) decays more slowly than the squared terms
    (0.7 > 0.64^2), which keeps its variance finite.
    """
    layer = block(features=4, hidden=(16,), kappa=0.8, activation="tanh", scale=4.0, seed=3)
    first, last = layer.linear_layers()
    with torch.no_grad():
        last.weight.copy_(-first.weight.T)
        last.bias.zero_()
    layer.update_spectral_norm(500)
    layer.eval()
    x = points(4, 4, seed=11, scale=0.5)
    exact, partial_sums = exact_and_powers(layer, x, terms=300)
    return layer, x, exact, partial_sums


@pytest.fixture(scope="module")
def roulette_samples(estimator_case):
    layer, x, _, _ = estimator_case
    return estimates(layer, x, "roulette", calls=2000, repeats=25, seed=0, n_terms=3, p=0.3)


def test_the_roulette_estimator_is_unbiased(estimator_case, roulette_samples) -> None:
    _, _, exact, _ = estimator_case
    assert (exact < -0.5).all()  # a log-det far from 0
    standard_error = assert_unbiased(roulette_samples, exact)
    assert standard_error.max() < 0.05 / 8  # tight enough to see a bias of 0.05 (see the planted bias)


def test_the_truncated_series_estimates_its_partial_sum_and_converges(estimator_case) -> None:
    layer, x, exact, partial_sums = estimator_case
    for n in (1, 2, 4):
        samples = estimates(layer, x, "series", calls=200, repeats=20, seed=n, n_terms=n)
        assert_unbiased(samples, partial_sums[:, n - 1])  # unbiased for the truncated sum ...
    bias = (partial_sums - exact[:, None]).abs().max(0).values  # ... which is biased for the log-det
    assert bias[0] > 0.05 and bias[299] < 1e-9
    assert all(bias[2 * n - 1] < bias[n - 1] for n in (1, 2, 4, 8, 16))  # and converges as n grows
    # the bias of n = 1 is visible to the same statistical check
    samples = estimates(layer, x, "series", calls=200, repeats=20, seed=5, n_terms=1)
    with pytest.raises(AssertionError, match="standard errors from the exact value"):
        assert_unbiased(samples, exact)


def test_the_check_catches_a_planted_bias(estimator_case, roulette_samples) -> None:
    _, _, exact, _ = estimator_case
    assert_unbiased(roulette_samples, exact)
    with pytest.raises(AssertionError, match="standard errors from the exact value"):
        assert_unbiased(roulette_samples + 0.05, exact)
    with pytest.raises(AssertionError, match="standard errors from the exact value"):
        assert_unbiased(roulette_samples - 0.05, exact)


def test_the_layer_in_roulette_mode_is_unbiased_and_says_it_estimates(estimator_case) -> None:
    layer, x, exact, _ = estimator_case
    layer = copy.deepcopy(layer)
    layer.logdet, layer.n_terms, layer.n_probes, layer.roulette_p = "roulette", 3, 2, 0.3
    assert not layer.logdet_is_exact
    with pytest.raises(AssertionError, match="estimates its log-determinant; check its exact mode"):
        check_logdet(layer, x)
    torch.manual_seed(0)  # the layer draws from the global generator
    with torch.no_grad():
        samples = torch.stack([layer(x.repeat(10, 1))[1].reshape(10, -1).mean(0) for _ in range(1000)])
        assert_unbiased(samples, exact)
        with logdet_mode(layer, "exact"):
            assert layer.logdet_is_exact
            torch.testing.assert_close(layer(x)[1], exact, atol=1e-12, rtol=0)
    assert layer.logdet == "roulette"


def test_estimates_are_differentiable_for_training() -> None:
    layer = block(features=3, hidden=(8,), scale=3.0)
    x = points(7, 3)
    for method in ("exact", "series", "roulette"):
        layer.logdet = method
        layer.zero_grad()
        layer(x)[1].sum().backward()
        weights = [linear.weight.grad for linear in layer.linear_layers()]
        assert all(g is not None and torch.isfinite(g).all() and g.abs().max() > 0 for g in weights)
        # the last bias shifts g and leaves its Jacobian alone: no gradient from the log-det


# ------------------------------------------------------------------------------------ determinant lemma


@settings(max_examples=30, deadline=None)
@given(d=st.integers(1, 12), m=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_determinant_lemma(d: int, m: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, m, generator=g, dtype=D64) / math.sqrt(m)
    b = torch.randn(m, d, generator=g, dtype=D64) / math.sqrt(d)
    big = torch.linalg.slogdet(torch.eye(d, dtype=D64) + a @ b)
    small = torch.linalg.slogdet(torch.eye(m, dtype=D64) + b @ a)
    assert big.sign == small.sign
    assert abs(big.logabsdet - small.logabsdet) < 1e-9 * (1 + abs(big.logabsdet))


@pytest.mark.parametrize("activation", ["tanh", "elu", "lipswish"])
def test_low_rank_block_uses_the_lemma_exactly(activation: str) -> None:
    g = torch.Generator().manual_seed(0)
    layer = LowRankResidual(20, rank=3, kappa=0.95, activation=activation, generator=g)
    with torch.no_grad():
        for linear in layer.linear_layers():
            linear.weight.mul_(5.0)
    layer.update_spectral_norm(300)
    layer = layer.double()
    x = points(6, 20, scale=2.0)
    _, lemma = layer(x)
    brute = jacobian_logabsdet(lambda t: layer(t)[0], x)
    torch.testing.assert_close(lemma, brute, atol=1e-10, rtol=0)
    assert layer.lipschitz_bound() <= 0.95**2 * (1 + 1e-6)  # power iteration converged in float32
    with torch.no_grad():
        x_back, _ = layer.inverse(layer(x)[0])
    assert (x_back - x).abs().max() < 1e-8


# ------------------------------------------------------------------------------------ planar and radial


def test_worked_example_3_planar_with_tanh() -> None:
    layer = Planar(2, w=torch.tensor([1.0, 2.0], dtype=D64), u_hat=torch.tensor([1.0, 0.0], dtype=D64), b=0.0)
    torch.testing.assert_close(layer.u_hat().detach(), torch.tensor([1.0, 0.0], dtype=D64), atol=1e-15, rtol=0)
    z = torch.tensor([[0.5, -0.5]], dtype=D64)
    x, logdet = layer.inverse(z)  # the generative map x = z + u tanh(w^T z + b)
    assert round(math.exp(logdet.item()), 4) == 1.7864
    assert round(logdet.item(), 3) == 0.580
    assert abs(logdet.item() - jacobian_logabsdet(lambda t: layer.inverse(t)[0], z).item()) < 1e-12
    z_back, logdet_back = layer(x)
    torch.testing.assert_close(z_back, z, atol=1e-14, rtol=0)
    assert abs(logdet_back.item() + logdet.item()) < 1e-14


@settings(max_examples=40, deadline=None)
@given(
    w_scale=st.floats(0.05, 5.0),
    slope=st.floats(-15.0, 50.0),  # below about -30, softplus(slope) - 1 rounds to -1 itself
    seed=st.integers(0, 10_000),
)
def test_planar_is_invertible_for_any_free_parameters(w_scale: float, slope: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    layer = Planar(3, generator=g).double()
    with torch.no_grad():
        layer.w.mul_(w_scale / layer.w.norm())
        layer.u.add_((slope - layer.w @ layer.u) * layer.w / (layer.w @ layer.w))  # free w^T u = slope
        layer.b.fill_(float(torch.randn((), generator=g)))
    assert (layer.w @ layer.u_hat()).item() > -1.0
    x = 3 * torch.randn(30, 3, generator=g, dtype=D64)
    with torch.no_grad():
        z, ladj = layer(x)
        x_back, ladj_back = layer.inverse(z)
    assert torch.isfinite(ladj).all()
    assert (x_back - x).abs().max() < 1e-9 and (ladj + ladj_back).abs().max() < 1e-9


def test_planar_rejects_a_folding_u_and_honours_its_tolerance() -> None:
    with pytest.raises(ValueError, match="must be > -1"):
        Planar(2, w=[1.0, 0.0], u_hat=[-1.5, 0.0])
    with pytest.raises(ValueError, match="nonzero"):
        Planar(2, w=[0.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        Planar(2, w=[1.0, 0.0, 0.0])
    x = points(10, 2)
    loose = Planar(2, w=[1.0, 2.0], u_hat=[3.0, -0.5], b=0.1, atol=1e-3).double()
    tight = Planar(2, w=[1.0, 2.0], u_hat=[3.0, -0.5], b=0.1).double()
    with torch.no_grad():
        error_loose = (loose.inverse(loose(x)[0])[0] - x).abs().max().item()
        error_tight = (tight.inverse(tight(x)[0])[0] - x).abs().max().item()
    assert error_tight < 1e-13 and error_loose < 1e-3  # Newton's last step is below atol, its error far below
    with pytest.raises(RuntimeError, match="no convergence in 2 steps"):
        solve_planar_projection(torch.tensor(5.0, dtype=D64), 40 * points(10, 1)[:, 0], max_iter=2)


def test_planar_forward_is_differentiable_like_the_inverse_map() -> None:
    layer = Planar(3, generator=torch.Generator().manual_seed(2)).double()
    x = points(1, 3)
    forward_jacobian = torch.autograd.functional.jacobian(lambda t: layer(t)[0][0], x)[:, 0, :]
    with torch.no_grad():
        z, _ = layer(x)
    inverse_jacobian = torch.autograd.functional.jacobian(lambda t: layer.inverse(t)[0][0], z)[:, 0, :]
    torch.testing.assert_close(forward_jacobian @ inverse_jacobian, torch.eye(3, dtype=D64), atol=1e-12, rtol=0)


@settings(max_examples=40, deadline=None)
@given(alpha_free=st.floats(-6.0, 6.0), beta_free=st.floats(-12.0, 12.0), seed=st.integers(0, 10_000))
def test_radial_is_invertible_for_any_free_parameters(alpha_free: float, beta_free: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    layer = Radial(3, generator=g).double()
    with torch.no_grad():
        layer.alpha_free.fill_(alpha_free)
        layer.beta_free.fill_(beta_free)
    assert (layer.beta() + layer.alpha()).item() > 0
    x = layer.z0.detach() + 2 * torch.randn(30, 3, generator=g, dtype=D64)
    with torch.no_grad():
        z, ladj = layer(x)
        x_back, ladj_back = layer.inverse(z)
    assert torch.isfinite(ladj).all()
    assert (x_back - x).abs().max() < 1e-8 and (ladj + ladj_back).abs().max() < 1e-8


def test_radial_checks_its_constraint() -> None:
    with pytest.raises(ValueError, match="beta must be > -alpha"):
        Radial(2, alpha=0.5, beta=-0.6)
    with pytest.raises(ValueError, match="alpha"):
        Radial(2, alpha=0.0)
    layer = Radial(2, z0=torch.zeros(2, dtype=D64), alpha=0.5, beta=-0.4)
    assert abs(layer.alpha().item() - 0.5) < 1e-12 and abs(layer.beta().item() + 0.4) < 1e-12


# ------------------------------------------------------------------------------------ models


def test_model_builders() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 2)
    for flow in (iresnet(2, blocks=2, hidden=(16,)), planar_flow(2, layers=4), radial_flow(2, layers=4)):
        assert isinstance(flow, Flow)
        log_p = flow.log_prob(x)
        assert log_p.shape == (16,) and torch.isfinite(log_p).all()
        assert flow.sample(8).shape == (8, 2)
    model = iresnet(2, blocks=3, hidden=(8,), logdet="roulette")
    assert not model.bijection.logdet_is_exact
    with logdet_mode(model, "exact"):
        assert all(layer.logdet == "exact" for layer in model.bijection)
    assert all(layer.logdet == "roulette" for layer in model.bijection)


def test_an_iresnet_trains_a_few_steps_and_keeps_its_bound() -> None:
    from flowlib import data as datasets
    from flowlib.train import Trainer

    torch.manual_seed(0)
    data = datasets.Standardizer().fit_transform(datasets.moons(512, seed=0))
    flow = iresnet(2, blocks=2, hidden=(32, 32), logdet="roulette")
    trainer = Trainer(flow, lr=3e-3, batch_size=128, seed=0, device="cpu", mixed_precision=False)
    trainer.fit(data, steps=30)
    assert all(math.isfinite(entry["train_loss"]) for entry in trainer.history)
    for layer in flow.bijection:
        assert layer.lipschitz_bound() < 0.9**3 * 1.05
    with logdet_mode(flow, "exact"), torch.no_grad():
        nll = -flow.log_prob(data).mean().item()
    assert nll < math.log(2 * math.pi) + 1.0  # a plain standard normal on standardized data: about 2.84
    with torch.no_grad():
        z, _ = flow.bijection(data[:64])
        back, _ = flow.bijection.inverse(z)
    assert (back - data[:64]).abs().max() < 1e-4


def test_residual_layers_compose_with_the_others() -> None:
    g = torch.Generator().manual_seed(0)
    layers = Compose(
        InvertibleResidual(3, hidden=(8,), generator=g),
        Planar(3, generator=g),
        LowRankResidual(3, rank=1, generator=g),
        Radial(3, generator=g),
    ).double()
    flow = Flow(StandardNormal(3).double(), layers)
    x = points(5, 3)
    from flowlib.testing import check_inverse

    check_inverse(layers, x, atol=1e-10)
    check_logdet(layers, x, atol=1e-8)
    assert torch.isfinite(flow.log_prob(x)).all()
