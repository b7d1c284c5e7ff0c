"""Glow beyond the contract: actnorm's data-dependent initialization, the 1x1 convolutions' log-dets, the model.

The registry (tests/registry.py) already runs the float64 inverse and brute-force
log-det checks on every Glow layer from random, trained-looking parameters.
Here: what those checks cannot see (the initialization on a real batch, a
flat channel, the ``initialized`` flag across save and load, several
processes), the closed-form log-dets, the seed's practice problem, and the
multi-scale model with its split priors, temperature and latents.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlib import Compose, Flow, StandardNormal
from flowlib import data as datasets
from flowlib.bijections import (
    ActNorm,
    AffineCoupling,
    FactorOut,
    GlowStep,
    InvertibleConv1x1,
    Logit,
    LUInvertibleConv1x1,
    Permutation,
    Squeeze,
    channel_mask,
)
from flowlib.models import decode, encode, glow
from flowlib.testing import check_inverse, check_logdet, jacobian_logabsdet

from . import glow_ddp_script
from .registry import randomize, trained_actnorm

ROOT = Path(__file__).resolve().parent.parent
D64 = torch.float64


def _channel_stats(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (population) variance of every channel over the batch and the pixels."""
    dims = [0, *range(2, z.dim())]
    return z.mean(dim=dims), z.var(dim=dims, unbiased=False)


def _real_image_batch(n: int = 128, dtype: torch.dtype = D64) -> torch.Tensor:
    """Training digits, dequantized, logit-transformed and squeezed: a (n, 4, 4, 4) batch as Glow's first step sees it."""
    x, _ = datasets.digits("train")
    v = datasets.dequantize(x[:n], 17, generator=torch.Generator().manual_seed(0)).to(dtype)
    y, _ = Logit((1, 8, 8)).to(dtype)(v)
    return Squeeze((1, 8, 8))(y)[0]


# ---------------------------------------------------------------- actnorm: data-dependent initialization


def test_actnorm_initialization_standardizes_a_real_batch_of_images() -> None:
    x = _real_image_batch()
    layer = ActNorm((4, 4, 4)).double()
    assert not bool(layer.initialized)
    z, ladj = layer(x)
    mean, var = _channel_stats(z)
    torch.testing.assert_close(mean, torch.zeros(4, dtype=D64), atol=1e-12, rtol=0)
    torch.testing.assert_close(var, torch.ones(4, dtype=D64), atol=1e-12, rtol=0)
    assert bool(layer.initialized)
    # the log-det of that first batch is H * W * sum log s, with s = 1 / std of each channel
    _, var_x = _channel_stats(x)
    torch.testing.assert_close(ladj, (-0.5 * 16 * var_x.log().sum()).expand(len(x)))


def test_actnorm_initialization_standardizes_vectors_and_only_centres_flat_pixels() -> None:
    x, _ = datasets.digits("train")
    flat = x[:128].reshape(128, 64).double()  # raw pixels: the corners are 0 in every image of the batch
    constant = flat.std(0) == 0
    assert 0 < int(constant.sum()) < 64
    layer = ActNorm(64).double()
    z, ladj = layer(flat)
    assert torch.isfinite(z).all() and torch.isfinite(ladj).all()
    mean, var = _channel_stats(z)
    torch.testing.assert_close(mean, torch.zeros(64, dtype=D64), atol=1e-12, rtol=0)
    torch.testing.assert_close(var[~constant], torch.ones(int((~constant).sum()), dtype=D64), atol=1e-12, rtol=0)
    assert torch.equal(z[:, constant], torch.zeros_like(z[:, constant]))
    assert torch.equal(layer.log_scale[constant], torch.zeros_like(layer.log_scale[constant]))


@pytest.mark.parametrize("dtype", [torch.float32, D64])
@pytest.mark.parametrize("flat_std", [0.0, 1e-9])
def test_a_flat_channel_gives_no_nan_or_inf(dtype: torch.dtype, flat_std: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 4, 4, generator=g, dtype=dtype)
    x[:, 1] = 5.0 + flat_std * torch.randn(16, 4, 4, generator=g, dtype=dtype)
    layer = ActNorm((3, 4, 4)).to(dtype)
    z, ladj = layer(x)
    assert torch.isfinite(z).all() and torch.isfinite(ladj).all()
    assert torch.isfinite(layer.loc).all() and torch.isfinite(layer.log_scale).all()
    assert layer.log_scale[1].item() == 0.0  # centred, not divided by (almost) zero
    assert z[:, 1].abs().max().item() < 1e-6
    x_back, ladj_back = layer.inverse(z)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(ladj_back, -ladj)


def test_initialization_is_accurate_far_from_zero() -> None:
    """float32 data with a large offset: E[x^2] - E[x]^2 would cancel; the two-pass variance does not."""
    g = torch.Generator().manual_seed(0)
    x = 1e4 + torch.randn(256, 2, 4, 4, generator=g)
    layer = ActNorm((2, 4, 4))
    z, _ = layer(x)
    _, var = _channel_stats(z.double())
    torch.testing.assert_close(var, torch.ones(2, dtype=D64), atol=1e-2, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    channels=st.integers(1, 5),
    batch=st.integers(2, 9),
    image=st.booleans(),
    scale=st.floats(1e-3, 1e3),
    offset=st.floats(-1e3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_initialization_standardizes_any_batch(channels, batch, image, scale, offset, seed) -> None:
    shape = (channels, 2, 3) if image else (channels,)
    x = offset + scale * torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed), dtype=D64)
    z, ladj = ActNorm(shape).double()(x)
    mean, var = _channel_stats(z)
    assert torch.isfinite(ladj).all()
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-9, rtol=0)
    torch.testing.assert_close(var, torch.ones_like(var), atol=1e-9, rtol=0)


def test_inverse_before_any_forward_does_not_initialize() -> None:
    layer = ActNorm((2, 2, 2))
    z = torch.randn(4, 2, 2, 2)
    x, ladj = layer.inverse(z)
    assert torch.equal(x, z) and torch.equal(ladj, torch.zeros(4))
    assert not bool(layer.initialized)


def test_the_initialized_flag_is_a_saved_buffer() -> None:
    layer = ActNorm(3)
    assert "initialized" in layer.state_dict()
    assert [name for name, _ in layer.named_parameters()] == ["loc", "log_scale"]
    assert layer.double().initialized.dtype == torch.bool  # .to(dtype) leaves the flag alone


def _saved_and_loaded(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_a_loaded_actnorm_is_not_initialized_again() -> None:
    g = torch.Generator().manual_seed(0)
    first = 3.0 + 2.0 * torch.randn(32, 3, 2, 2, generator=g)
    other = -7.0 + 0.1 * torch.randn(32, 3, 2, 2, generator=g)  # very different statistics
    trained = ActNorm((3, 2, 2))
    trained(first)
    loaded = ActNorm((3, 2, 2))
    loaded.load_state_dict(_saved_and_loaded(trained.state_dict()))
    assert bool(loaded.initialized)
    z_loaded, ladj_loaded = loaded(other)
    z_trained, ladj_trained = trained(other)
    assert torch.equal(loaded.loc, trained.loc) and torch.equal(loaded.log_scale, trained.log_scale)
    assert torch.equal(z_loaded, z_trained) and torch.equal(ladj_loaded, ladj_trained)


def test_forward_reads_the_flag_once_and_again_after_loading() -> None:
    """After the first forward the flag lives on the host too (no device sync per call); a load resets that."""
    g = torch.Generator().manual_seed(1)
    first = 3.0 + 2.0 * torch.randn(32, 3, generator=g)
    other = -7.0 + 0.1 * torch.randn(32, 3, generator=g)
    layer = ActNorm(3)
    fresh_state = _saved_and_loaded(ActNorm(3).state_dict())  # initialized = False
    layer(first)
    loc = layer.loc.detach().clone()
    layer.initialized.fill_(False)  # not read again by forward: the host copy is used
    layer(other)
    assert torch.equal(layer.loc, loc)
    layer.load_state_dict(fresh_state)  # a loaded False is honoured: the next batch initializes
    assert not bool(layer.initialized)
    z, _ = layer(other)
    assert bool(layer.initialized)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(layer.loc.detach(), other.mean(0))


def test_a_loaded_glow_model_gives_the_same_densities() -> None:
    v = datasets.dequantize(datasets.digits("val")[0][:64], 17, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    flow = glow((1, 8, 8), levels=2, steps=2, hidden_channels=8)
    flow.log_prob(v[:32])  # initializes every actnorm on this batch
    torch.manual_seed(1)
    copy = glow((1, 8, 8), levels=2, steps=2, hidden_channels=8, seed=1)
    copy.load_state_dict(_saved_and_loaded(flow.state_dict()))
    with torch.no_grad():
        assert torch.equal(copy.log_prob(v[32:]), flow.log_prob(v[32:]))
    states = [m.initialized for m in copy.modules() if isinstance(m, ActNorm)]
    assert len(states) == 4 and all(bool(s) for s in states)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_every_rank_gets_the_same_initialization_from_different_data(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        str(ROOT / "tests" / "glow_ddp_script.py"), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout}\n{done.stderr}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and all(r["initialized"] for r in ranks)
    assert ranks[0]["loc"] == ranks[1]["loc"] and ranks[0]["log_scale"] == ranks[1]["log_scale"]
    # and it is the initialization one process computes on both batches together
    pooled = ActNorm(glow_ddp_script.EVENT_SHAPE).double()
    pooled(torch.cat([glow_ddp_script.rank_batch(0), glow_ddp_script.rank_batch(1)]))
    torch.testing.assert_close(torch.tensor(ranks[0]["loc"], dtype=D64), pooled.loc.detach())
    torch.testing.assert_close(torch.tensor(ranks[0]["log_scale"], dtype=D64), pooled.log_scale.detach())
    # which differs from what either rank's own batch alone would give
    alone = ActNorm(glow_ddp_script.EVENT_SHAPE).double()
    alone(glow_ddp_script.rank_batch(0))
    assert not torch.allclose(alone.loc, pooled.loc)


def test_actnorm_rejects_other_event_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(C,\) or \(C, H, W\)"):
        ActNorm((2, 3))


# ---------------------------------------------------------------- log-determinants in closed form


@pytest.mark.parametrize("event_shape", [(4,), (3, 4, 5)])
def test_actnorm_logdet_is_hw_times_the_sum_of_log_scales(event_shape) -> None:
    g = torch.Generator().manual_seed(0)
    layer = trained_actnorm(ActNorm(event_shape).double(), g)
    x = torch.randn(3, *event_shape, generator=g, dtype=D64)
    _, ladj = layer(x)
    spatial = math.prod(event_shape[1:])
    expected = spatial * layer.log_scale.sum()
    torch.testing.assert_close(ladj, expected.detach().expand(3), atol=1e-12, rtol=0)
    torch.testing.assert_close(ladj[:1], jacobian_logabsdet(lambda p: layer(p)[0], x[:1]), atol=1e-10, rtol=0)


def _random_lu_conv(event_shape, g: torch.Generator) -> LUInvertibleConv1x1:
    return randomize(LUInvertibleConv1x1(event_shape, generator=g), g, std=0.7).double()


def _random_plain_conv(event_shape, g: torch.Generator) -> InvertibleConv1x1:
    layer = InvertibleConv1x1(event_shape, generator=g).double()
    with torch.no_grad():
        layer.weight.add_(0.8 * torch.randn(layer.weight.shape, generator=g, dtype=D64))
    return layer


@pytest.mark.parametrize("make", [_random_lu_conv, _random_plain_conv], ids=["LU", "plain"])
def test_conv1x1_logdet_is_hw_times_log_abs_det_w(make) -> None:
    g = torch.Generator().manual_seed(3)
    layer = make((3, 2, 3), g)
    weight = layer.weight() if callable(layer.weight) else layer.weight
    x = torch.randn(4, 3, 2, 3, generator=g, dtype=D64)
    z, ladj = layer(x)
    expected = 2 * 3 * torch.linalg.slogdet(weight)[1]
    torch.testing.assert_close(ladj, expected.detach().expand(4), atol=1e-12, rtol=0)
    # it is a 1x1 convolution with kernel W, and the brute-force Jacobian agrees
    torch.testing.assert_close(z, F.conv2d(x, weight[:, :, None, None]), atol=1e-12, rtol=0)
    check_logdet(layer, x, atol=1e-10)
    check_inverse(layer, x, atol=1e-10)


def test_seed_practice_problem_through_lulinear_parameters() -> None:
    """3 channels, 32 x 32 pixels, U with diagonal (2, 0.5, 0.8): -0.2231 per position, -228.5 in all."""
    g = torch.Generator().manual_seed(0)
    layer = LUInvertibleConv1x1((3, 32, 32), generator=g).double()
    lu = layer.lu
    target = torch.tensor([2.0, 0.5, 0.8], dtype=D64)
    with torch.no_grad():  # any L and any U above the diagonal: they do not change det W
        lu.lower_raw.copy_(torch.randn(3, 3, generator=g, dtype=D64))
        lu.upper_raw.copy_(torch.randn(3, 3, generator=g, dtype=D64))
        lu.diag_raw.copy_(torch.log(torch.expm1(target - lu.eps)))
        lu.sign.fill_(1.0)
    _, _, upper = lu.factors()
    torch.testing.assert_close(upper.diagonal().detach(), target, atol=1e-12, rtol=0)
    per_position = lu.log_abs_det_weight().item()
    assert round(per_position, 4) == -0.2231
    assert per_position == pytest.approx(math.log(2) + math.log(0.5) + math.log(0.8), abs=1e-12)
    assert per_position == pytest.approx(torch.linalg.slogdet(layer.weight())[1].item(), abs=1e-12)
    x = torch.randn(2, 3, 32, 32, generator=g, dtype=D64)
    _, ladj = layer(x)
    assert ladj.tolist() == pytest.approx([1024 * per_position] * 2, abs=1e-9)
    assert round(ladj[0].item(), 1) == -228.5
    # the plain form with the same W reports the same
    plain = InvertibleConv1x1((3, 32, 32)).double()
    with torch.no_grad():
        plain.weight.copy_(layer.weight())
    assert plain(x)[1].tolist() == pytest.approx(ladj.tolist(), abs=1e-9)


@pytest.mark.parametrize("cls", [InvertibleConv1x1, LUInvertibleConv1x1])
def test_conv1x1_starts_at_a_random_rotation(cls) -> None:
    layer = cls((5, 2, 2), generator=torch.Generator().manual_seed(0))
    weight = layer.weight() if callable(layer.weight) else layer.weight
    weight = weight.detach().double()
    torch.testing.assert_close(weight @ weight.T, torch.eye(5, dtype=D64), atol=1e-6, rtol=0)
    assert torch.linalg.det(weight).item() == pytest.approx(1.0, abs=1e-6)
    assert not torch.allclose(weight, torch.eye(5, dtype=D64))  # a rotation, not the identity
    _, ladj = layer(torch.randn(2, 5, 2, 2))
    assert ladj.abs().max().item() < 1e-5


def test_plain_conv1x1_with_a_singular_weight_raises_a_clear_error() -> None:
    layer = InvertibleConv1x1((3, 2, 2))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 1.0, 1.0]]))  # row 2 = 2 * row 1
    x = torch.randn(2, 3, 2, 2)
    with pytest.raises(ValueError, match="singular"):
        layer(x)
    with pytest.raises(ValueError, match="singular"):
        layer.inverse(x)


@pytest.mark.parametrize("cls", [InvertibleConv1x1, LUInvertibleConv1x1, GlowStep])
def test_image_layers_reject_vector_events(cls) -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        cls((4,))


def test_lu_conv1x1_starts_exactly_at_its_random_rotation() -> None:
    """W = P L U starts at the rotation itself, signs included: U's diagonal signs live in a buffer."""
    from flowlib.bijections import random_rotation

    layer = LUInvertibleConv1x1((6, 1, 1), generator=torch.Generator().manual_seed(5))
    rotation = random_rotation(6, torch.Generator().manual_seed(5))
    torch.testing.assert_close(layer.weight().detach().double(), rotation, atol=1e-6, rtol=0)
    assert bool((layer.lu.sign < 0).any())  # this rotation needs a negative diagonal entry in U
    assert "sign" in dict(layer.lu.named_buffers()) and "sign" not in dict(layer.lu.named_parameters())


# ---------------------------------------------------------------- the Glow step


@pytest.mark.parametrize("lu", [True, False])
def test_a_fresh_glow_step_is_actnorm_then_a_rotation(lu: bool) -> None:
    step = GlowStep((4, 2, 2), hidden_channels=8, lu=lu, generator=torch.Generator().manual_seed(0))
    assert [type(layer) for layer in step.layers] == [
        ActNorm, LUInvertibleConv1x1 if lu else InvertibleConv1x1, AffineCoupling
    ]  # fmt: skip
    x = torch.randn(16, 4, 2, 2)
    z, ladj = step(x)
    normalized, ladj_norm = step[0](x)
    mixed, _ = step[1](normalized)
    torch.testing.assert_close(z, mixed)  # the coupling's conditioner starts at zero: identity
    torch.testing.assert_close(ladj, ladj_norm, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the multi-scale model


def _perturbed(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Move every parameter away from where it started (zero last layers included), as training does."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(std * torch.randn(parameter.shape, generator=g, dtype=parameter.dtype))
    return module


def _digits_v(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x, _ = datasets.digits("test")
    return datasets.dequantize(x[:n], 17, generator=torch.Generator().manual_seed(1)).to(dtype)


@pytest.mark.parametrize("permutation", ["conv1x1", "conv1x1-plain", "reverse", "shuffle"])
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_glow_shapes_and_exact_round_trip(permutation: str, levels: int) -> None:
    torch.manual_seed(0)
    flow = glow((1, 8, 8), levels=levels, steps=2, hidden_channels=8, permutation=permutation)
    v = _digits_v(20)
    log_p = flow.log_prob(v)
    assert log_p.shape == (20,) and torch.isfinite(log_p).all()
    z = encode(flow, v)
    assert z.shape == (20, 64)
    torch.testing.assert_close(decode(flow, z), v, atol=2e-5, rtol=0)
    assert flow.sample(7).shape == (7, 1, 8, 8)
    assert flow.sample(3, temperature=0.5).shape == (3, 1, 8, 8)


def test_glow_in_float64_end_to_end() -> None:
    """No layer creates a tensor off the input's dtype: a float64 model stays float64 everywhere."""
    torch.manual_seed(0)
    flow = glow((1, 8, 8), levels=2, steps=2, hidden_channels=8).double()
    v = _digits_v(12, D64)
    flow.log_prob(v)  # initialize
    _perturbed(flow, seed=2)
    log_p = flow.log_prob(v)
    z = encode(flow, v)
    assert log_p.dtype == D64 and z.dtype == D64
    torch.testing.assert_close(decode(flow, z), v, atol=1e-11, rtol=0)
    samples = flow.sample(5, temperature=0.7)
    assert samples.dtype == D64
    torch.testing.assert_close(decode(flow, encode(flow, samples)), samples, atol=1e-10, rtol=0)


def test_whole_glow_model_passes_the_brute_force_checks() -> None:
    """The log-det of the whole multi-scale model (logit, squeezes, steps, split prior, top prior) is exact."""
    torch.manual_seed(0)
    flow = glow((1, 4, 4), levels=2, steps=1, hidden_channels=4).double()
    g = torch.Generator().manual_seed(4)
    v = torch.rand(3, 1, 4, 4, generator=g, dtype=D64)
    flow.log_prob(v)
    _perturbed(flow, seed=5, std=0.2)
    check_inverse(flow.bijection, v, z=0.5 * torch.randn(3, 16, generator=g, dtype=D64), atol=1e-9)
    check_logdet(flow.bijection, v, atol=1e-8)


def test_split_prior_is_a_learned_conditional_gaussian() -> None:
    """The coupling on the leaving half, then N(0, 1), is the density N(y_out; mu(h), sigma(h)^2) of the split."""
    torch.manual_seed(0)
    flow = glow((1, 8, 8), levels=2, steps=1, hidden_channels=8).double()
    split = flow.bijection[1]
    assert isinstance(split, FactorOut) and split.split == 2
    prior = split.head[-1]
    assert isinstance(prior, AffineCoupling)
    randomize(prior, torch.Generator().manual_seed(1), std=0.3)
    y = torch.randn(5, 4, 4, 4, dtype=D64)
    z, ladj = prior(y)
    torch.testing.assert_close(z[:, 2:], y[:, 2:])  # the kept half h passes unchanged
    # for a fixed h the map is affine in y_out: z_out = a(h) y_out + b(h)
    zeros, ones = y.clone(), y.clone()
    zeros[:, :2], ones[:, :2] = 0.0, 1.0
    b, a = prior(zeros)[0][:, :2], prior(ones)[0][:, :2] - prior(zeros)[0][:, :2]
    mu, sigma = -b / a, 1 / a.abs()
    gaussian = torch.distributions.Normal(mu, sigma).log_prob(y[:, :2]).flatten(1).sum(1)
    through_coupling = torch.distributions.Normal(0.0, 1.0).log_prob(z[:, :2]).flatten(1).sum(1) + ladj
    torch.testing.assert_close(through_coupling, gaussian, atol=1e-10, rtol=0)
    assert not torch.allclose(mu, torch.zeros_like(mu)) and not torch.allclose(sigma, torch.ones_like(sigma))


def test_without_split_prior_the_leaving_half_goes_straight_to_the_base() -> None:
    torch.manual_seed(0)
    with_prior = glow((1, 8, 8), levels=2, steps=1, hidden_channels=8)
    torch.manual_seed(0)
    without = glow((1, 8, 8), levels=2, steps=1, hidden_channels=8, split_prior=False)
    assert isinstance(with_prior.bijection[1].head[-1], AffineCoupling)
    assert isinstance(without.bijection[1].head[-1], Compose)  # the last Glow step, no prior after it
    prior_size = sum(p.numel() for p in with_prior.bijection[1].head[-1].parameters())
    assert n_params(with_prior) - n_params(without) == prior_size
    v = _digits_v(10)
    torch.testing.assert_close(decode(without, encode(without, v)), v, atol=2e-5, rtol=0)


def n_params(flow: torch.nn.Module) -> int:
    return sum(p.numel() for p in flow.parameters())


def test_temperature_scales_every_prior() -> None:
    """Latents of samples drawn at temperature T are N(0, T^2): the split and top priors are all scaled."""
    torch.manual_seed(0)
    flow = glow((1, 8, 8), levels=2, steps=2, hidden_channels=8)
    flow.log_prob(_digits_v(64))
    _perturbed(flow, seed=3)
    torch.manual_seed(5)
    samples = flow.sample(4000, temperature=0.6)
    z = encode(flow, samples)
    assert z.std().item() == pytest.approx(0.6, abs=0.01)
    assert z.mean().abs().item() < 0.01
    torch.manual_seed(6)
    base = flow.base.sample((3,))
    torch.manual_seed(6)
    torch.testing.assert_close(flow.sample(3), decode(flow, base))
    torch.manual_seed(6)
    torch.testing.assert_close(flow.sample(3, temperature=0.5), decode(flow, 0.5 * base))


def test_glow_under_bf16_autocast_keeps_float32_log_probs() -> None:
    torch.manual_seed(0)
    flow = glow((1, 8, 8), levels=2, steps=2, hidden_channels=16)
    v = _digits_v(32)
    flow.log_prob(v)  # initialize
    _perturbed(flow, seed=1)
    reference = flow.log_prob(v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_p = flow.log_prob(v)
    assert log_p.dtype == torch.float32
    assert (log_p - reference).abs().max().item() < 0.05 * reference.abs().mean().item()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"levels": 0}, "levels and steps"),
        ({"steps": 0}, "levels and steps"),
        ({"levels": 4}, "divisible"),
        ({"permutation": "random"}, "permutation must be one of"),
    ],
)
def test_glow_bad_arguments(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        glow((1, 8, 8), **kwargs)


def test_glow_permutations_are_what_they_say() -> None:
    flows = {p: glow((1, 8, 8), levels=2, steps=2, hidden_channels=4, permutation=p)
             for p in ("conv1x1", "conv1x1-plain", "reverse", "shuffle")}  # fmt: skip
    first_step = {p: f.bijection[1].head[1] for p, f in flows.items()}
    mixing = {p: type(step[1]) for p, step in first_step.items()}
    assert mixing == {"conv1x1": LUInvertibleConv1x1, "conv1x1-plain": InvertibleConv1x1,
                      "reverse": Permutation, "shuffle": Permutation}  # fmt: skip
    assert first_step["reverse"][1].permutation.tolist() == [3, 2, 1, 0]
    assert [type(layer) for layer in first_step["shuffle"]] == [ActNorm, Permutation, AffineCoupling]
    assert isinstance(flows["conv1x1"].bijection[0], Logit)
    assert isinstance(flows["conv1x1"].bijection[1].head[0], Squeeze)


# ---------------------------------------------------------------- the command line


def test_cli_trains_glow_on_digits_and_writes_samples(tmp_path: Path) -> None:
    from flowlib.cli import load_model, main

    out = tmp_path / "glow"
    code = main(["train", "glow", "--data", "digits", "--steps", "4", "--batch-size", "64", "--layers", "2",
                 "--hidden", "8", "--eval-every", "2", "--device", "cpu", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"model.pt", "history.json", "metrics.json", "samples.png"}
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "glow" and 0 < metrics["test_bits_per_dim"] < 10
    flow = load_model(out / "model.pt")
    steps_per_level = [m for m in flow.modules() if isinstance(m, ActNorm)]
    assert len(steps_per_level) == 2 * 2 and all(bool(m.initialized) for m in steps_per_level)
    assert torch.isfinite(flow.log_prob(_digits_v(5))).all()


def test_cli_rejects_glow_on_2d_data(capsys) -> None:
    from flowlib.cli import main

    assert main(["train", "glow", "--data", "moons", "--steps", "1"]) == 2
    assert "does not fit data" in capsys.readouterr().err
