"""flowlib.compiled: torch.compile of log_prob agrees with the eager path, and the input checks still raise."""

from __future__ import annotations

import shutil

import pytest
import torch

from flowlib import input_checks_enabled
from flowlib.compiled import compile_log_prob
from flowlib.models import realnvp, spline_flow

# torch.compile imports torch.jit internals that warn about their own deprecation (not flowlib's)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


# torch.compile's default backend (inductor) compiles C++ on a CPU; the one-graph test below needs no compiler
needs_cxx = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("g++", "c++", "clang++")),
    reason="torch.compile's CPU backend needs a C++ compiler (g++ or clang++)",
)


@pytest.fixture(scope="module")
def compiled_realnvp():
    torch.manual_seed(0)
    flow = realnvp(2, layers=2, hidden=(16,))
    for parameter in flow.parameters():  # non-trivial parameters: the identity init hides errors
        torch.nn.init.normal_(parameter, std=0.3)
    return flow, compile_log_prob(flow)


@needs_cxx
def test_same_log_prob_and_gradients_as_eager_to_float32_rounding(compiled_realnvp) -> None:
    flow, log_prob = compiled_realnvp
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    eager = flow.log_prob(x)
    grads_eager = torch.autograd.grad(-eager.mean(), list(flow.parameters()))
    fast = log_prob(x)
    grads_fast = torch.autograd.grad(-fast.mean(), list(flow.parameters()))
    assert fast.shape == (64,)
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    for g_fast, g_eager in zip(grads_fast, grads_eager):
        torch.testing.assert_close(g_fast, g_eager, rtol=1e-4, atol=1e-5)


@needs_cxx
def test_a_training_step_through_the_compiled_function_trains_the_flow(compiled_realnvp) -> None:
    flow, log_prob = compiled_realnvp
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    before = flow.log_prob(x).mean().item()
    optimizer = torch.optim.SGD(flow.parameters(), lr=1e-2)
    for _ in range(5):
        optimizer.zero_grad()
        (-log_prob(x).mean()).backward()
        optimizer.step()
    assert flow.log_prob(x).mean().item() > before


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.full((4, 2), float("nan")), "contains NaN or Inf"),
        (torch.zeros(4, 3), "expects (batch, 2)"),
        (torch.zeros(4, 2, dtype=torch.float64), "dtype"),
    ],
)
def test_the_checks_raise_outside_the_compiled_region(compiled_realnvp, x, message) -> None:
    flow, log_prob = compiled_realnvp
    with pytest.raises((ValueError, TypeError)) as eager_error:
        flow.log_prob(x)
    with pytest.raises(type(eager_error.value)) as compiled_error:
        log_prob(x)
    assert message in str(compiled_error.value)
    assert str(compiled_error.value) == str(eager_error.value)
    assert input_checks_enabled()  # restored after the call


def test_the_checks_are_restored_when_the_compiled_call_fails(compiled_realnvp) -> None:
    flow, log_prob = compiled_realnvp
    with pytest.raises(ValueError, match="context"):
        log_prob(torch.zeros(4, 2), torch.zeros(3, 1))
    assert input_checks_enabled()


def test_only_flows_are_accepted() -> None:
    with pytest.raises(TypeError, match="expects a flowlib Flow"):
        compile_log_prob(spline_flow(2, layers=1, hidden=(8,)).bijection)


def test_the_whole_log_prob_is_one_graph_without_breaks() -> None:
    """With the value checks outside, dynamo captures log_prob in one graph (a check inside would split it)."""
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch.manual_seed(0)
    flow = realnvp(2, layers=3, hidden=(8,))
    log_prob = compile_log_prob(flow, backend=recording_backend)
    x = torch.randn(8, 2)
    torch.testing.assert_close(log_prob(x), flow.log_prob(x), rtol=0, atol=0)  # the eager backend: bit for bit
    assert len(graphs) == 1
