"""flowlib.data: toy sets and their true densities, digits, dequantization, bits/dim (with the Logit layer)."""

from __future__ import annotations

import doctest
import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import flowlib.data
from flowlib.bijections import Logit
from flowlib.data import (
    DIGITS_SPLIT_SIZES,
    TOY_DATASETS,
    TOY_LOG_PROBS,
    Standardizer,
    bits_per_dim,
    checkerboard,
    checkerboard_log_prob,
    circles,
    circles_log_prob,
    dequantize,
    digits,
    eight_gaussians_log_prob,
    moons,
    toy_dataset,
    toy_log_prob,
)

D64 = torch.float64


def test_docstring_examples() -> None:
    for module in (flowlib.data, flowlib.data.toy, flowlib.data.images, flowlib.data.standardize):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 2, module.__name__


def test_every_public_name_is_importable_from_the_package() -> None:
    """The chapters use ``from flowlib import data as datasets``; every module's public names are on the package."""
    for module in (flowlib.data.toy, flowlib.data.images, flowlib.data.standardize):
        for name in module.__all__:
            assert getattr(flowlib.data, name) is getattr(module, name), name
            assert name in flowlib.data.__all__, name


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: moons(2.5), "moons: n must be a positive int, got float 2.5"),
        (lambda: moons(10, seed=1.0), "moons: seed must be an int in"),
        (lambda: moons(10, noise="0.1"), "moons: noise must be a real number, got str"),
        (lambda: checkerboard(10, num_squares=4.0), "checkerboard: num_squares must be a positive int, got float"),
        (lambda: dequantize(torch.zeros(2, 2), levels=17.0), "dequantize: levels must be an int >= 2, got float"),
        (lambda: bits_per_dim(1.0, num_dims=64.0), "bits_per_dim: num_dims must be a positive int, got float"),
        (lambda: bits_per_dim(1.0, num_dims=64, levels=True), "bits_per_dim: levels must be a real number, got bool"),
        (lambda: Standardizer(min_std="small"), "Standardizer: min_std must be a real number or None, got str"),
        (lambda: digits("train", seed=None), "digits: seed must be an int in"),
    ],
)
def test_a_wrong_type_is_a_type_error(call, message: str) -> None:
    """The exception policy: TypeError for a wrong type, ValueError for a wrong value (as in flowlib.train)."""
    with pytest.raises(TypeError, match=message):
        call()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: moons(0), "moons: n must be a positive int, got 0"),
        (lambda: moons(10, seed=2**32), "moons: seed must be an int in \\[0, 2\\*\\*32\\), got 4294967296"),
        (lambda: moons(10, noise=float("nan")), "moons: noise must be a finite number, got nan"),
        (lambda: checkerboard(10, num_squares=0), "checkerboard: num_squares must be a positive int, got 0"),
        (lambda: circles(10, factor=0.0), "circles: factor must be > 0, got 0.0"),
        (lambda: dequantize(torch.zeros(2, 2), levels=1), "dequantize: levels must be an int >= 2, got 1"),
    ],
)
def test_a_wrong_value_is_a_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- toy sets


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_sets_are_seeded_float32_points(name: str) -> None:
    x = toy_dataset(name, 500, seed=1)
    assert x.shape == (500, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x, TOY_DATASETS[name](500, seed=1))
    assert not torch.equal(x, toy_dataset(name, 500, seed=2))
    assert toy_dataset(name, 1).shape == (1, 2)


def test_moons_is_sklearn_make_moons() -> None:
    from sklearn.datasets import make_moons

    expected, _ = make_moons(n_samples=301, noise=0.1, random_state=4)
    assert torch.equal(moons(301, seed=4, noise=0.1), torch.as_tensor(expected, dtype=torch.float32))


def test_toy_set_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown toy dataset 'banana'; valid names: checkerboard, circles"):
        toy_dataset("banana", 10)
    with pytest.raises(ValueError, match="n must be a positive int"):
        toy_dataset("moons", 0)
    with pytest.raises(TypeError, match="n must be a positive int"):
        toy_dataset("circles", 2.5)
    with pytest.raises(TypeError, match="n must be a positive int"):
        toy_dataset("circles", True)
    with pytest.raises(ValueError, match="seed must be an int in \\[0, 2\\*\\*32\\), got -1"):
        toy_dataset("pinwheel", 10, seed=-1)
    with pytest.raises(ValueError, match="two_spirals: noise must be >= 0, got -0.1"):
        toy_dataset("two_spirals", 10, noise=-0.1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        toy_dataset("moons", 10, radius=3)
    with pytest.raises(ValueError, match="no true log-density for toy dataset 'pinwheel' \\(it has no closed-form"):
        toy_log_prob("pinwheel", torch.zeros(1, 2))
    with pytest.raises(ValueError, match="expected points of shape \\(batch, 2\\), got \\(3,\\)"):
        eight_gaussians_log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match="noise > 0"):
        circles_log_prob(torch.zeros(1, 2), noise=0.0)


# The box holding (almost) all the mass of each density with its default options, and the grid resolution.
BOXES = {
    "moons": ((-1.5, 2.5), (-1.0, 1.5), (200, 120)),
    "circles": ((-1.5, 1.5), (-1.5, 1.5), (300, 300)),
    "eight_gaussians": ((-3.75, 3.75), (-3.75, 3.75), (300, 300)),
    "checkerboard": ((-5.0, 5.0), (-5.0, 5.0), (200, 200)),
}


@functools.cache
def _cell_masses(name: str) -> tuple[torch.Tensor, tuple[float, float], tuple[float, float]]:
    """Probability of each cell of a fine grid (midpoint rule), shape (nx, ny)."""
    (x0, x1), (y0, y1), (nx, ny) = BOXES[name]
    hx, hy = (x1 - x0) / nx, (y1 - y0) / ny
    xs = x0 + (torch.arange(nx, dtype=D64) + 0.5) * hx
    ys = y0 + (torch.arange(ny, dtype=D64) + 0.5) * hy
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), -1).reshape(-1, 2)
    log_p = toy_log_prob(name, grid)
    assert log_p.dtype == D64 and log_p.shape == (nx * ny,)
    return (log_p.exp() * hx * hy).reshape(nx, ny), (x0, x1), (y0, y1)


def test_every_known_density_is_tested() -> None:
    assert set(TOY_LOG_PROBS) == set(BOXES)


@pytest.mark.parametrize("name", sorted(TOY_LOG_PROBS))
def test_true_density_integrates_to_one(name: str) -> None:
    masses, _, _ = _cell_masses(name)
    assert masses.sum().item() == pytest.approx(1.0, abs=2e-4)


@pytest.mark.parametrize("name", sorted(TOY_LOG_PROBS))
def test_true_density_matches_a_histogram_of_the_samples(name: str) -> None:
    masses, (x0, x1), (y0, y1) = _cell_masses(name)
    bins = 10  # 10 x 10 histogram; the fine grid cells are summed into these bins
    nx, ny = masses.shape
    expected = masses.reshape(bins, nx // bins, bins, ny // bins).sum((1, 3))
    n = 100_000
    points = toy_dataset(name, n, seed=11).double().numpy()
    counts, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=bins, range=[[x0, x1], [y0, y1]])
    observed = torch.as_tensor(counts) / n
    total_variation = 0.5 * (observed - expected).abs().sum().item()
    assert total_variation < 0.02, f"{name}: histogram and density differ (TV {total_variation:.4f})"
    # samples are where the density is: their mean log-density is finite and matches a fine-grid estimate
    log_p = toy_log_prob(name, torch.as_tensor(points[:2000]))
    assert torch.isfinite(log_p).all()


def test_eight_gaussians_density_is_the_mixture() -> None:
    angles = torch.arange(8, dtype=D64) * math.pi / 4
    centres = 3.0 * torch.stack([angles.cos(), angles.sin()], 1)
    mixture = MixtureSameFamily(
        Categorical(torch.full((8,), 1 / 8, dtype=D64)), Independent(Normal(centres, torch.full_like(centres, 0.4)), 1)
    )
    x = torch.randn(50, 2, dtype=D64) * 3
    torch.testing.assert_close(eight_gaussians_log_prob(x, radius=3.0, std=0.4), mixture.log_prob(x))


def test_circles_closed_form_matches_brute_force_integration_over_the_angle() -> None:
    x = torch.tensor([[0.0, 0.7], [0.45, 0.1], [1.02, -0.2], [0.3, 0.3]], dtype=D64)
    noise, factor = 0.08, 0.6
    t = torch.linspace(0, 2 * math.pi, 20_001, dtype=D64)[:-1]
    brute = 0.0
    for radius in (1.0, factor):
        centres = radius * torch.stack([t.cos(), t.sin()], 1)
        sq = (x[:, None, :] - centres[None]).pow(2).sum(-1)
        ring = (torch.exp(-0.5 * sq / noise**2) / (2 * math.pi * noise**2)).mean(1)
        brute = brute + 0.5 * ring
    torch.testing.assert_close(circles_log_prob(x, noise=noise, factor=factor), brute.log(), rtol=0, atol=1e-9)


def test_checkerboard_samples_all_lie_on_black_squares() -> None:
    for options in ({}, {"bound": 3.0, "num_squares": 3}, {"bound": 1.7, "num_squares": 5}):
        x = checkerboard(100_000, seed=3, **options)
        log_p = checkerboard_log_prob(x, **options)
        assert torch.isfinite(log_p).all(), options
    area = 5 * (2 * 1.5 / 3) ** 2  # 3 x 3 board: 5 black squares
    assert checkerboard_log_prob(torch.tensor([[0.0, 0.0]]), bound=1.5, num_squares=3).item() == pytest.approx(
        -math.log(area)
    )
    assert checkerboard_log_prob(torch.tensor([[4.5, 0.0]])).item() == -math.inf


# --------------------------------------------------------------------------- standardization


def test_standardizer_transforms_and_converts_log_densities() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 3, generator=g, dtype=D64) * torch.tensor([0.5, 2.0, 10.0], dtype=D64) + 4.0
    s = Standardizer().fit(x)
    v = s.transform(x)
    torch.testing.assert_close(v.mean(0), torch.zeros(3, dtype=D64), atol=1e-12, rtol=0)
    torch.testing.assert_close(v.std(0, correction=0), torch.ones(3, dtype=D64))
    torch.testing.assert_close(s.inverse_transform(v), x)
    # a standard normal on v is N(mean, std^2) on x: log p_x(x) = log p_v(v) + logabsdet
    log_p_v = Normal(0.0, 1.0).log_prob(v).sum(1)
    log_p_x = Normal(s.mean, s.std).log_prob(x).sum(1)
    torch.testing.assert_close(log_p_v + s.logabsdet, log_p_x)
    assert s.logabsdet == pytest.approx(-float(s.std.log().sum()))


def test_standardizer_on_images_and_errors() -> None:
    x = torch.rand(50, 1, 8, 8)
    s = Standardizer().fit(x)
    assert s.mean.shape == (1, 8, 8) and s.transform(x).shape == x.shape
    with pytest.raises(ValueError, match="expected shape \\(batch, 1, 8, 8\\) as in fit, got \\(50, 64\\)"):
        s.transform(x.flatten(1))
    with pytest.raises(RuntimeError, match="call fit"):
        Standardizer().transform(x)
    constant = torch.zeros(10, 2)
    with pytest.raises(ValueError, match="constant"):
        Standardizer().fit(constant)
    assert torch.isfinite(Standardizer(min_std=1e-3).fit_transform(constant)).all()
    with pytest.raises(TypeError, match="floating-point"):
        Standardizer().fit(torch.zeros(10, 2, dtype=torch.long))


# --------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_disjoint_and_complete() -> None:
    from sklearn.datasets import load_digits

    parts = {split: digits(split) for split in ("train", "val", "test")}
    assert tuple(len(parts[s][0]) for s in ("train", "val", "test")) == DIGITS_SPLIT_SIZES == (1257, 270, 270)
    for images, labels in parts.values():
        assert images.dtype == torch.float32 and images.shape[1:] == (1, 8, 8)
        assert torch.equal(images, images.round()) and images.min() >= 0 and images.max() <= 16
        assert labels.dtype == torch.int64 and set(labels.tolist()) <= set(range(10))
    everything = torch.cat([parts[s][0] for s in ("train", "val", "test")]).flatten(1).numpy()
    reference = load_digits().images.reshape(-1, 64)
    assert sorted(map(bytes, everything.astype(np.int8))) == sorted(map(bytes, reference.astype(np.int8)))
    # the split is pinned: the same seed gives the same images, and this fingerprint must not drift
    assert torch.equal(digits("test")[0], parts["test"][0])
    assert parts["val"][1][:10].tolist() == PINNED_VAL_LABELS
    assert not torch.equal(digits("val", seed=1)[1], parts["val"][1])


PINNED_VAL_LABELS = [1, 9, 9, 7, 1, 8, 5, 0, 8, 7]  # numpy.random.RandomState(0).permutation(1797)


def test_digits_protocol_sizes_and_errors() -> None:
    train, _ = digits("train", sizes=(1500, 0, 297))
    test, _ = digits("test", sizes=(1500, 0, 297))
    assert len(train) == 1500 and len(test) == 297
    with pytest.raises(ValueError, match="the 'val' split is empty"):
        digits("val", sizes=(1500, 0, 297))
    with pytest.raises(ValueError, match="split must be one of"):
        digits("validation")
    with pytest.raises(ValueError, match="adding up to at most 1797"):
        digits("train", sizes=(1500, 300, 297))


# --------------------------------------------------------------------------- dequantization, logit


def test_dequantize_stays_in_the_cell_of_each_integer() -> None:
    x = torch.arange(17).repeat(1000, 1)  # int64
    v = dequantize(x, levels=17, generator=torch.Generator().manual_seed(0))
    assert v.dtype == torch.float32 and v.shape == x.shape
    assert (v >= 0).all() and (v < 1).all()
    assert torch.equal((v * 17).floor().long(), x)
    u = v * 17 - x
    assert u.mean().item() == pytest.approx(0.5, abs=0.01)
    again = dequantize(x, levels=17, generator=torch.Generator().manual_seed(0))
    assert torch.equal(v, again)
    assert dequantize(x.double(), levels=17).dtype == D64


@settings(max_examples=30, deadline=None)
@given(
    levels=st.integers(2, 300), shape=st.lists(st.integers(1, 5), min_size=2, max_size=4), seed=st.integers(0, 2**16)
)
def test_dequantize_then_logit_for_any_shape(levels: int, shape: list[int], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, levels, shape, generator=g)
    v = dequantize(x, levels=levels, generator=g)
    assert v.shape == x.shape and bool(((v >= 0) & (v < 1)).all())
    assert ((v.double() * levels - x - 0.5).abs() <= 0.5 + 1e-4).all()
    logit = Logit(shape[1:])  # the logit preprocessing of images is the Logit bijection
    y, ladj = logit(v)
    assert ladj.shape == (shape[0],) and torch.isfinite(y).all()
    v_back, ladj_back = logit.inverse(y)
    torch.testing.assert_close(v_back, v, atol=1e-5, rtol=0)
    torch.testing.assert_close(ladj_back, -ladj, atol=1e-3, rtol=1e-5)


def test_dequantize_errors() -> None:
    with pytest.raises(ValueError, match="values must lie in 0..16 for levels=17, got 0..17"):
        dequantize(torch.tensor([[0.0, 17.0]]))
    with pytest.raises(ValueError, match="integer values"):
        dequantize(torch.tensor([[0.5]]))
    with pytest.raises(ValueError, match="levels must be an int >= 2"):
        dequantize(torch.tensor([[0]]), levels=1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        dequantize([[1, 2]])


# --------------------------------------------------------------------------- bits per dimension


def test_bits_per_dim_by_hand() -> None:
    expected = (100.0 + 64 * math.log(17)) / (64 * math.log(2))  # 6.341674...
    assert bits_per_dim(100.0, num_dims=64, levels=17) == pytest.approx(expected, rel=1e-12)
    assert bits_per_dim(100.0, 64, 17, extra_logdet=-20.0) == pytest.approx(
        (120.0 + 64 * math.log(17)) / (64 * math.log(2))
    )
    assert bits_per_dim(math.log(2) * 3, num_dims=3, levels=1) == pytest.approx(1.0)
    out = bits_per_dim(torch.tensor([0.0, 64 * math.log(2)]), 64, 17)
    assert isinstance(out, torch.Tensor) and out.tolist() == pytest.approx([math.log2(17), math.log2(17) + 1])


def test_a_uniform_model_costs_log2_levels_bits_per_dim() -> None:
    assert bits_per_dim(0.0, num_dims=64, levels=17) == pytest.approx(math.log2(17), rel=1e-15)
    # End to end on the digits: a standard logistic density on y = logit(alpha + (1 - 2 alpha) v) is
    # uniform on v in [0, 1): with alpha = 0 exactly log2(17) bits/dim; alpha > 0 wastes 1 - 2 alpha of the mass.
    images, _ = digits("test")
    v = dequantize(images.flatten(1).double(), levels=17, generator=torch.Generator().manual_seed(0))
    for alpha in (0.0, 0.05):
        y, ladj = Logit(64, alpha)(v)
        log_logistic = (-y - 2 * torch.nn.functional.softplus(-y)).sum(1)
        bpd = bits_per_dim(-log_logistic.mean().item(), 64, 17, extra_logdet=ladj.mean().item())
        assert bpd == pytest.approx(math.log2(17 / (1 - 2 * alpha)), abs=1e-9)


def test_bits_per_dim_with_standardization_matches_a_model_of_the_dequantized_data() -> None:
    images, _ = digits("train")
    v = dequantize(images.flatten(1).double(), levels=17, generator=torch.Generator().manual_seed(0))
    scaler = Standardizer().fit(v)
    s = scaler.transform(v)
    nll_standardized = -Normal(0.0, 1.0).log_prob(s).sum(1).mean().item()  # N(0, I) in standardized space
    nll_v = -Normal(scaler.mean, scaler.std).log_prob(v).sum(1).mean().item()  # the same model on v
    direct = (nll_v + 64 * math.log(17)) / (64 * math.log(2))
    assert bits_per_dim(nll_standardized, 64, 17, extra_logdet=scaler.logabsdet) == pytest.approx(direct, rel=1e-12)


def test_bits_per_dim_errors() -> None:
    with pytest.raises(ValueError, match="num_dims must be a positive int"):
        bits_per_dim(1.0, num_dims=0)
    with pytest.raises(ValueError, match="levels must be >= 1"):
        bits_per_dim(1.0, num_dims=2, levels=0.5)
    with pytest.raises(TypeError, match="nll_nats_per_sample must be a float or a tensor"):
        bits_per_dim("1.0", num_dims=2)
