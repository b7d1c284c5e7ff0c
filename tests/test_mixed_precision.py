"""Under bf16 autocast the conditioners run in bf16, but outputs, log-dets and log-probs stay float32.

CUDA is where the Trainer turns autocast on; the same mechanism runs on the CPU
(``torch.autocast("cpu", dtype=torch.bfloat16)``), so these tests exercise it
on any machine.
"""

from __future__ import annotations

import copy

import pytest
import torch

from flowlib import Compose, Flow, StandardNormal
from flowlib.bijections import AffineCoupling, Linear, LULinear, SplineCoupling, TriangularLinear, half_mask
from flowlib.models import multiscale_realnvp, realnvp

from .registry import randomize


def _autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.mark.parametrize("make", [lambda: Linear(4), lambda: LULinear(4), lambda: TriangularLinear(4)])
def test_linear_layers_ignore_autocast(make) -> None:
    torch.manual_seed(0)
    layer = make()
    x = torch.randn(8, 4)
    z, ladj = layer(x)
    with _autocast():
        z_amp, ladj_amp = layer(x)
    assert z_amp.dtype == torch.float32 and ladj_amp.dtype == torch.float32
    torch.testing.assert_close(z_amp, z, atol=0, rtol=0)
    torch.testing.assert_close(ladj_amp, ladj, atol=0, rtol=0)


def test_coupling_flows_keep_float32_log_probs_under_autocast() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    layers = [AffineCoupling(half_mask(4, first=i % 2 == 0), hidden=(32,)) for i in range(4)]
    layers.append(SplineCoupling(half_mask(4), hidden=(32,)))
    flow = Flow(StandardNormal(4), randomize(Compose(*layers), g, std=0.1))
    x = 3 * torch.randn(256, 4)
    reference = flow.log_prob(x)
    with _autocast():
        conditioner_out = flow.bijection[0].conditioner(x[:, :2])
        log_p = flow.log_prob(x)
    assert conditioner_out.dtype == torch.bfloat16  # the networks did run in bf16
    assert log_p.dtype == torch.float32
    # only the conditioners' rounding differs; the same flow computed entirely in bf16 (transforms,
    # log-dets and base log-prob included) is much further off
    error = (log_p - reference).abs().mean().item()
    all_bf16 = copy.deepcopy(flow).to(torch.bfloat16)
    error_bf16 = (all_bf16.log_prob(x.to(torch.bfloat16)).float() - reference).abs().mean().item()
    assert error < 0.25 * error_bf16, (error, error_bf16)


def test_image_flow_under_autocast_is_close_and_float32() -> None:
    torch.manual_seed(0)
    flow = multiscale_realnvp((1, 8, 8), hidden_channels=8)
    randomize(flow, torch.Generator().manual_seed(2), std=0.1)
    x = torch.rand(16, 1, 8, 8)
    reference = flow.log_prob(x)
    with _autocast():
        log_p = flow.log_prob(x)
    assert log_p.dtype == torch.float32
    assert ((log_p - reference).abs() / reference.abs()).max().item() < 1e-2


def test_gradients_flow_under_autocast() -> None:
    torch.manual_seed(0)
    flow = realnvp(2, layers=2, hidden=(16,))
    randomize(flow, torch.Generator().manual_seed(3), std=0.3)
    with _autocast():
        loss = -flow.log_prob(torch.randn(32, 2)).mean()
    loss.backward()
    grads = [p.grad for p in flow.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
