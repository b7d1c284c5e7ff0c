"""Variational inference (flowlib.vi): the targets, the ELBO and importance-weighted bounds, and the digits VAE.

The estimators are random, so several checks are statistical: a Monte-Carlo
estimate must lie within ``Z_BOUND`` standard errors of the value it estimates.
Every draw comes from a seeded generator, so each test is deterministic.
The strongest checks use closed forms (Gaussian targets and posteriors) and
brute-force sums: the energies' log Z against an independent quadrature, and a
tiny VAE whose importance-weighted probabilities of all possible images sum to 1.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib import Compose, DiagonalGaussian, Flow, StandardNormal
from flowlib.bijections import ElementwiseAffine, InverseAutoregressive, Planar
from flowlib.models import planar_flow
from flowlib.train import Trainer
from flowlib.vi import (
    ENERGY_TARGETS,
    VAE,
    GaussianMixture,
    digits_vae,
    effective_sample_size,
    elbo,
    energy_target,
    estimate_log_normalizer,
    fit_reverse_kl,
    grid_log_normalizer,
    log_importance_weights,
    log_mean_exp,
    reverse_kl_loss,
    u1,
    u2,
    wall,
)

D64 = torch.float64
Z_BOUND = 4.0  # standard errors


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # thousands of small autograd calls


# ---------------------------------------------------------------------- targets


def _paper_energies(z1: np.ndarray, z2: np.ndarray) -> dict[str, np.ndarray]:
    """Table 1 of Rezende and Mohamed (2015), written again in numpy, with flowlib's wall for U2-U4."""
    w1 = np.sin(2 * np.pi * z1 / 4)
    w2 = 3 * np.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    w3 = 3 / (1 + np.exp(-(z1 - 1) / 0.3))
    b = 0.5 * (np.maximum(np.abs(z1) - 4, 0) / 0.2) ** 2
    norm = np.sqrt(z1**2 + z2**2)
    return {
        "U1": 0.5 * ((norm - 2) / 0.4) ** 2
        - np.log(np.exp(-0.5 * ((z1 - 2) / 0.6) ** 2) + np.exp(-0.5 * ((z1 + 2) / 0.6) ** 2)),
        "U2": 0.5 * ((z2 - w1) / 0.4) ** 2 + b,
        "U3": -np.log(np.exp(-0.5 * ((z2 - w1) / 0.35) ** 2) + np.exp(-0.5 * ((z2 - w1 + w2) / 0.35) ** 2)) + b,
        "U4": -np.log(np.exp(-0.5 * ((z2 - w1) / 0.4) ** 2) + np.exp(-0.5 * ((z2 - w1 + w3) / 0.35) ** 2)) + b,
    }


def test_the_energies_are_the_papers() -> None:
    z = torch.empty(200, 2, dtype=D64).uniform_(-4.5, 4.5, generator=torch.Generator().manual_seed(0))
    expected = _paper_energies(z[:, 0].numpy(), z[:, 1].numpy())
    for name, target in ENERGY_TARGETS.items():
        np.testing.assert_allclose(target.energy(z).numpy(), expected[name], rtol=1e-12, atol=1e-12, err_msg=name)
        assert torch.equal(target.log_prob(z), -target.energy(z))


def test_the_energies_stay_finite_far_away_and_in_float32() -> None:
    far = torch.tensor([[30.0, -30.0], [0.0, 25.0], [-12.0, 3.0]])
    for target in ENERGY_TARGETS.values():
        assert torch.isfinite(target.log_prob(far)).all()
        assert target.log_prob(far).dtype == torch.float32


def test_the_wall_is_zero_inside_the_papers_square() -> None:
    z1 = torch.linspace(-4, 4, 101, dtype=D64)
    assert torch.equal(wall(z1), torch.zeros_like(z1))
    assert wall(torch.tensor([4.2, -4.2], dtype=D64)).tolist() == pytest.approx([0.5, 0.5])


def _numpy_log_z(name: str, limits: float, n: int) -> float:
    """log Z by the trapezoid rule in numpy: an independent quadrature."""
    xs = np.linspace(-limits, limits, n)
    z1, z2 = np.meshgrid(xs, xs, indexing="ij")
    u = _paper_energies(z1, z2)[name]
    low = u.min()
    integral = np.trapezoid(np.trapezoid(np.exp(-(u - low)), xs, axis=1), xs)
    return float(np.log(integral) - low)


@pytest.mark.parametrize("name", sorted(ENERGY_TARGETS))
def test_log_z_on_the_grid_converges_and_agrees_with_an_independent_quadrature(name: str) -> None:
    target = ENERGY_TARGETS[name]
    coarse, fine = target.log_normalizer(n=500), target.log_normalizer(n=1000)
    assert abs(coarse - fine) < 1e-5
    assert abs(fine - _numpy_log_z(name, 7.0, 1401)) < 1e-5


def test_without_the_wall_u2_has_no_normalizing_constant() -> None:
    """exp(-U2) as printed in the paper: the integral grows with the window, like its width."""
    bare = lambda z: -0.5 * ((z[:, 1] - torch.sin(0.5 * math.pi * z[:, 0])) / 0.4) ** 2  # noqa: E731
    sizes = (8.0, 16.0, 32.0)
    log_z = [grid_log_normalizer(bare, (-s / 2, s / 2), (-4, 4), n=800) for s in sizes]
    assert log_z[1] - log_z[0] == pytest.approx(math.log(2), abs=0.02)
    assert log_z[2] - log_z[1] == pytest.approx(math.log(2), abs=0.02)
    walled = [grid_log_normalizer(ENERGY_TARGETS["U2"].log_prob, (-s / 2, s / 2), (-4, 4), n=800) for s in (12, 24)]
    assert walled[0] == pytest.approx(walled[1], abs=1e-5)


def test_energy_target_lookup_and_errors() -> None:
    assert energy_target("U3") is ENERGY_TARGETS["U3"]
    with pytest.raises(ValueError, match="unknown target"):
        energy_target("U5")
    with pytest.raises(TypeError):
        energy_target(3)
    with pytest.raises(ValueError, match=r"expects \(batch, 2\)"):
        u1(torch.zeros(4, 3))
    with pytest.raises(TypeError):
        u2([[0.0, 0.0]])
    with pytest.raises(ValueError, match="NaN"):
        u1(torch.tensor([[float("nan"), 0.0]]))


def test_grid_log_normalizer_of_a_gaussian_and_its_errors() -> None:
    scale = torch.tensor([0.7, 1.9], dtype=D64)
    log_density = lambda z: -0.5 * ((z / scale) ** 2).sum(1)  # noqa: E731
    expected = math.log(2 * math.pi) + float(scale.log().sum())
    assert grid_log_normalizer(log_density, (-15, 15), (-15, 15), n=600) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError):
        grid_log_normalizer(log_density, (1, -1), (-1, 1))
    with pytest.raises(ValueError, match="one value per point"):
        grid_log_normalizer(lambda z: z, (-1, 1), (-1, 1), n=4)


def test_the_gaussian_mixture_is_normalized_and_matches_torch() -> None:
    means = torch.tensor([[-1.5, 0.0], [3.0, 1.0], [0.0, -2.0]], dtype=D64)
    mixture = GaussianMixture(means, std=0.6, weights=[1.0, 2.0, 5.0])
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.tensor([1.0, 2.0, 5.0], dtype=D64)),
        torch.distributions.Independent(torch.distributions.Normal(means, 0.6), 1),
    )
    z = torch.randn(50, 2, dtype=D64, generator=torch.Generator().manual_seed(1)) * 3
    torch.testing.assert_close(mixture.log_prob(z), reference.log_prob(z))
    assert abs(grid_log_normalizer(mixture, (-8, 9), (-8, 8), n=600)) < 1e-9
    assert torch.isfinite(mixture.log_prob(torch.tensor([[80.0, -60.0]], dtype=D64))).all()
    drawn = mixture.sample(40_000, generator=torch.Generator().manual_seed(2))
    fractions = torch.bincount(mixture.nearest_component(drawn), minlength=3).double() / len(drawn)
    torch.testing.assert_close(fractions, torch.tensor([1, 2, 5], dtype=D64) / 8, atol=0.01, rtol=0)
    with pytest.raises(ValueError):
        GaussianMixture(means, std=0.5, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError):
        GaussianMixture(means, std=0.0)


# ---------------------------------------------------------------------- log-mean-exp and ESS


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-50, 50), min_size=1, max_size=30),
    shift=st.floats(-2000, 2000),
)
def test_log_mean_exp_is_between_mean_and_max_and_shifts(values: list[float], shift: float) -> None:
    v = torch.tensor(values, dtype=D64)
    result = log_mean_exp(v).item()
    assert v.mean().item() - 1e-9 <= result <= v.max().item() + 1e-9  # Jensen, and an average of exponentials
    assert log_mean_exp(v + shift).item() == pytest.approx(result + shift, abs=1e-9 * (1 + abs(shift)))
    assert result == pytest.approx(math.log(np.mean(np.exp(values))), abs=1e-9)


def test_log_mean_exp_survives_where_the_naive_formula_underflows() -> None:
    v = torch.tensor([-1000.0, -1001.0, -1002.0])
    naive = torch.log(torch.exp(v).mean())
    assert torch.isinf(naive)
    expected = -1000.0 + math.log((1 + math.exp(-1) + math.exp(-2)) / 3)
    assert log_mean_exp(v).item() == pytest.approx(expected, abs=1e-4)
    assert log_mean_exp(torch.zeros(4, 3), dim=1).shape == (4,)
    with pytest.raises(TypeError):
        log_mean_exp(torch.tensor([1, 2]))


def test_effective_sample_size_bounds() -> None:
    g = torch.Generator().manual_seed(3)
    for k in (1, 5, 100):
        log_w = torch.randn(k, generator=g, dtype=D64) * 3
        ess = effective_sample_size(log_w).item()
        assert 1 - 1e-9 <= ess <= k + 1e-9
    assert effective_sample_size(torch.full((7,), -300.0, dtype=D64)).item() == pytest.approx(7.0)


# ---------------------------------------------------------------------- ELBO and log Z estimates


def _gaussian_q(mean: float, std: float) -> Flow:
    """q = N(mean, std^2) on R, as a flow with a fixed affine layer."""
    return Flow(StandardNormal(1).double(), ElementwiseAffine(1.0 / std, -mean / std, learnable=False).double())


def _standard_log_target(x):
    return -0.5 * (x**2).sum(1)  # Z = sqrt(2 pi)


LOG_Z_STANDARD = 0.5 * math.log(2 * math.pi)


def test_the_elbo_is_log_z_minus_the_reverse_kl() -> None:
    """q = N(m, s^2), p* = N(0, 1): KL(q || p*) = (m^2 + s^2 - 1)/2 - log s."""
    torch.manual_seed(4)
    mean, std = 0.8, 0.6
    q = _gaussian_q(mean, std)
    n = 200_000
    _, log_w = log_importance_weights(q, _standard_log_target, n)
    kl = 0.5 * (mean**2 + std**2 - 1) - math.log(std)
    estimate, error = log_w.mean().item(), log_w.std().item() / math.sqrt(n)
    assert abs(estimate - (LOG_Z_STANDARD - kl)) < Z_BOUND * error
    assert abs(reverse_kl_loss(q, _standard_log_target, 50_000).item() - (kl - LOG_Z_STANDARD)) < 0.01


def test_at_the_optimum_every_weight_is_z() -> None:
    torch.manual_seed(5)
    _, log_w = log_importance_weights(_gaussian_q(0.0, 1.0), _standard_log_target, 100)
    torch.testing.assert_close(log_w, torch.full_like(log_w, LOG_Z_STANDARD))
    estimate = estimate_log_normalizer(_gaussian_q(0.0, 1.0), _standard_log_target, num_samples=1000, batch_size=300)
    assert estimate.log_z == pytest.approx(LOG_Z_STANDARD) and estimate.elbo == pytest.approx(LOG_Z_STANDARD)
    assert estimate.ess == pytest.approx(1000) and estimate.log_z_std_error < 1e-6
    assert estimate.gap == pytest.approx(0.0, abs=1e-12)


def test_the_importance_weighted_bound_climbs_with_k_towards_log_z() -> None:
    """E[log mean of K weights] increases with K and stays below log Z (many repetitions per K)."""
    torch.manual_seed(6)
    q = _gaussian_q(0.7, 1.3)  # wider than the target: the weights have a finite variance
    bounds = []
    for k in (1, 4, 32, 256):
        _, log_w = log_importance_weights(q, _standard_log_target, 2000 * k)
        per_run = log_mean_exp(log_w.reshape(2000, k), dim=1)
        bounds.append((per_run.mean().item(), per_run.std().item() / math.sqrt(2000)))
    for (low, e_low), (high, e_high) in zip(bounds[:-1], bounds[1:]):
        assert high > low - Z_BOUND * math.hypot(e_low, e_high)
    assert bounds[-1][0] < LOG_Z_STANDARD + Z_BOUND * bounds[-1][1]
    assert LOG_Z_STANDARD - bounds[-1][0] < 0.01 < LOG_Z_STANDARD - bounds[0][0]


def test_the_log_z_estimate_is_within_its_standard_error() -> None:
    torch.manual_seed(7)
    estimate = estimate_log_normalizer(_gaussian_q(-0.4, 1.2), _standard_log_target, num_samples=40_000)
    assert abs(estimate.log_z - LOG_Z_STANDARD) < Z_BOUND * estimate.log_z_std_error
    assert 0 < estimate.gap < 0.3 and estimate.ess < 40_000


def test_a_q_that_misses_a_mode_underestimates_log_z_with_a_confident_error_bar() -> None:
    mixture = GaussianMixture(torch.tensor([[-3.0], [3.0]], dtype=D64), std=0.5)  # log Z = 0
    q = _gaussian_q(3.0, 0.5)  # exactly the right-hand component
    torch.manual_seed(8)
    estimate = estimate_log_normalizer(q, mixture.log_prob, num_samples=20_000)
    assert estimate.log_z == pytest.approx(-math.log(2), abs=1e-3)
    assert estimate.log_z_std_error < 1e-3 and estimate.ess > 19_000  # nothing in the diagnostics looks wrong


def test_the_objectives_never_invert_the_flow() -> None:
    """Planar layers: the ELBO and its gradient use the generative direction only."""
    torch.manual_seed(9)
    q = planar_flow(2, layers=3)
    for layer in q.bijection:
        layer._forward = None  # calling the normalizing direction would raise TypeError
    value = elbo(q, ENERGY_TARGETS["U1"].log_prob, num_samples=64)
    value.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in q.parameters())
    estimate_log_normalizer(q, ENERGY_TARGETS["U1"], num_samples=100)


def test_objective_argument_errors() -> None:
    q = _gaussian_q(0.0, 1.0)
    with pytest.raises(TypeError, match="Flow"):
        elbo(torch.nn.Linear(1, 1), _standard_log_target)
    with pytest.raises(ValueError, match="one value per point"):
        elbo(q, lambda x: x, num_samples=4)
    with pytest.raises(ValueError):
        elbo(q, _standard_log_target, num_samples=0)
    with pytest.raises(ValueError):
        reverse_kl_loss(q, _standard_log_target, beta=0.0)
    with pytest.raises(ValueError):
        fit_reverse_kl(q, _standard_log_target, steps=1)  # nothing to train
    learnable = Flow(DiagonalGaussian(1), ElementwiseAffine(1.0, learnable=False))
    with pytest.raises(ValueError):
        fit_reverse_kl(learnable, _standard_log_target, steps=3, initial_beta=2.0, anneal_steps=2)
    with pytest.raises(FloatingPointError, match="ELBO"):
        fit_reverse_kl(learnable, lambda x: x.sum(1) * float("nan"), steps=3)


def test_fit_reverse_kl_finds_a_gaussian_target_with_and_without_annealing() -> None:
    target_mean, target_std = torch.tensor([1.5, -0.5]), torch.tensor([0.5, 2.0])
    log_target = lambda x: (-0.5 * ((x - target_mean) / target_std) ** 2).sum(1)  # noqa: E731
    log_z = math.log(2 * math.pi) + float(target_std.log().sum())
    for anneal in (0, 100):
        torch.manual_seed(10)
        q = Flow(DiagonalGaussian(2), ElementwiseAffine(torch.ones(2), learnable=False))
        curve = fit_reverse_kl(q, log_target, steps=400, lr=0.05, anneal_steps=anneal)
        assert len(curve) == 400
        torch.testing.assert_close(q.base.loc.detach(), target_mean, atol=0.05, rtol=0)
        torch.testing.assert_close(q.base.scale.detach(), target_std, atol=0.05, rtol=0)
        assert abs(np.mean(curve[-50:]) - log_z) < 0.02


def test_planar_flows_fit_an_energy_and_log_z_agrees_with_the_grid() -> None:
    """The chapter's experiment in miniature: planar layers on U1, log Z against brute force."""
    torch.manual_seed(11)
    g = torch.Generator().manual_seed(11)
    q = Flow(DiagonalGaussian(2), Compose(*[Planar(2, generator=g) for _ in range(8)]))
    target = ENERGY_TARGETS["U1"]
    fit_reverse_kl(q, target.log_prob, steps=400, lr=0.02, anneal_steps=200)
    estimate = estimate_log_normalizer(q, target.log_prob, num_samples=20_000)
    log_z = target.log_normalizer(n=600)
    assert estimate.elbo < log_z
    assert abs(estimate.log_z - log_z) < max(Z_BOUND * estimate.log_z_std_error, 0.02)
    assert estimate.gap < 0.4


# ---------------------------------------------------------------------- the VAE


def _tiny_images(n: int, seed: int = 0, levels: int = 17) -> torch.Tensor:
    return torch.randint(0, levels, (n, 1, 8, 8), generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize("posterior_layers, prior", [(0, "standard"), (2, "standard"), (0, "maf"), (2, "maf")])
def test_vae_shapes_and_the_trainer_objective(posterior_layers: int, prior: str) -> None:
    torch.manual_seed(12)
    vae = digits_vae(latent=3, hidden=(16,), posterior_layers=posterior_layers, posterior_hidden=(8,),
                     context_features=4, prior=prior, prior_layers=2, prior_hidden=(8,))
    x = _tiny_images(6)
    assert vae.event_shape == (1, 8, 8)
    assert vae.log_weights(x, 5).shape == (5, 6)
    assert vae.log_prob(x).shape == (6,) and vae.elbo(x, 4).shape == (6,)
    z, log_q = vae.posterior_rsample(x, 2)
    assert z.shape == (2, 6, 3) and log_q.shape == (2, 6)
    iw = vae.importance_weighted_log_likelihood(x, num_samples=30, chunk=7)
    assert iw.shape == (6,) and iw.dtype == D64 and bool((iw < 0).all())
    drawn = vae.sample(5)
    assert drawn.shape == (5, 1, 8, 8) and torch.equal(drawn, drawn.round()) and drawn.max() <= 16
    means = vae.sample(5, mean=True)
    assert bool(((means >= 0) & (means <= 16)).all())


def test_vae_rejects_bad_images_and_a_context() -> None:
    vae = digits_vae(latent=2, hidden=(8,))
    with pytest.raises(ValueError, match="integer pixel values"):
        vae.log_prob(_tiny_images(2) / 16)
    with pytest.raises(ValueError, match="integer pixel values"):
        vae.log_prob(_tiny_images(2) + 17)
    with pytest.raises(ValueError, match="expects"):
        vae.log_prob(torch.zeros(2, 64))
    with pytest.raises(ValueError, match="context"):
        vae.log_prob(_tiny_images(2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="prior"):
        digits_vae(prior="gaussian")
    with pytest.raises(ValueError, match="events of shape"):
        VAE(latent=3, prior=StandardNormal(2))
    with pytest.raises(TypeError, match="log_prob"):
        VAE(latent=3, prior=torch.nn.Linear(3, 3))


def _randomize_flows(vae: VAE, seed: int) -> None:
    """Give the IAF layers random last layers: at their identity start a sign bug would hide."""
    g = torch.Generator().manual_seed(seed)
    for layer in vae.posterior_flow:
        with torch.no_grad():
            last = layer.made.layers[-1]
            last.weight.copy_(0.4 * torch.randn(last.weight.shape, generator=g))
            last.bias.copy_(0.4 * torch.randn(last.bias.shape, generator=g))


@pytest.mark.parametrize("posterior_layers, prior", [(0, "standard"), (2, "standard"), (2, "maf")])
def test_the_vae_is_a_distribution_over_all_images(posterior_layers: int, prior: str) -> None:
    """Two pixels with three levels: the IW estimates of p(x) of all nine images sum to 1.

    The estimates are unbiased for p(x) (not for log p(x)), so their sum must be 1 up to
    Monte-Carlo error. A wrong sign of the posterior flow's log-determinant, or a
    decoder that is not normalized, breaks it by far more than the tolerance.
    """
    torch.manual_seed(13)
    vae = VAE(event_shape=(2,), levels=3, latent=2, hidden=(16,), posterior_layers=posterior_layers,
              posterior_hidden=(8,), context_features=3,
              prior=None if prior == "standard" else digits_vae(latent=2, prior="maf", prior_layers=2,
                                                                 prior_hidden=(8,)).prior).double()
    if posterior_layers:
        _randomize_flows(vae, 14)
    images = torch.tensor(list(itertools.product(range(3), repeat=2)), dtype=D64)
    with torch.no_grad():
        log_w = torch.cat([vae.log_weights(images, 2000) for _ in range(5)])  # (10000, 9)
    weights = (log_w - log_w.max(0).values).exp()
    p_hat = weights.mean(0) * log_w.max(0).values.exp()
    error = (weights.std(0) * log_w.max(0).values.exp() / math.sqrt(len(log_w))).square().sum().sqrt()
    assert abs(p_hat.sum().item() - 1.0) < max(Z_BOUND * error.item(), 0.005)
    elbo_sum = log_w.mean(0).exp().sum().item()
    assert elbo_sum < 1.0  # the ELBO is a lower bound of each log p(x)


def test_the_posterior_flow_changes_q_and_its_log_det_is_counted() -> None:
    torch.manual_seed(15)
    vae = digits_vae(latent=3, hidden=(16,), posterior_layers=2, posterior_hidden=(8,), context_features=4).double()
    _randomize_flows(vae, 16)
    x = _tiny_images(4).double()
    torch.manual_seed(17)
    z, log_q = vae.posterior_rsample(x, 1)
    torch.manual_seed(17)
    mean, log_std, context = vae.encode(x)
    z0 = mean + log_std.exp() * torch.randn(1, 4, 3, dtype=D64)
    z_again, ladj = vae.posterior_flow.inverse(z0[0], context)
    log_q0 = torch.distributions.Normal(mean, log_std.exp()).log_prob(z0[0]).sum(-1)
    torch.testing.assert_close(z[0], z_again)
    torch.testing.assert_close(log_q[0], log_q0 - ladj)
    assert ladj.abs().min() > 1e-3


def test_the_trainer_fits_a_vae_and_the_iw_bound_beats_the_elbo() -> None:
    x = _tiny_images(256, seed=18)
    x[:, :, :, :4] = 0.0  # some structure: the left half is blank
    torch.manual_seed(19)
    vae = digits_vae(latent=4, hidden=(32,), posterior_layers=1, posterior_hidden=(16,), context_features=4)
    trainer = Trainer(vae, lr=3e-3, batch_size=64, device="cpu", mixed_precision=False, seed=0)
    before = trainer.evaluate(x)
    trainer.fit(x, steps=40)
    after = trainer.evaluate(x)
    assert after < before - 20  # the blank half is learned quickly
    torch.manual_seed(20)
    with torch.no_grad():
        log_w = vae.log_weights(x[:32], 200)
    assert (log_mean_exp(log_w) - log_w.mean(0)).min() >= 0  # Jensen, image by image
    assert all(math.isfinite(entry["train_loss"]) for entry in trainer.history)


def test_the_vae_under_bf16_autocast_returns_float32_close_to_full_precision() -> None:
    torch.manual_seed(21)
    vae = digits_vae(latent=3, hidden=(32,), posterior_layers=1, posterior_hidden=(8,), context_features=4)
    _randomize_flows(vae, 22)
    x = _tiny_images(8)
    torch.manual_seed(23)
    full = vae.log_prob(x)
    torch.manual_seed(23)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = vae.log_prob(x)
    assert mixed.dtype == torch.float32
    assert (mixed - full).abs().max() < 0.05 * full.abs().max()
