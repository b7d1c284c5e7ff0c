"""flowlib.compare: the appendix's comparison of flow families, at tiny size."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from flowlib import data as datasets
from flowlib.bijections import logdet_mode
from flowlib.compare import (
    ComparisonRow,
    Contender,
    compare_flows,
    comparison_table,
    cost_summary,
    digits_contenders,
    median_seconds,
    moons_contenders,
)
from flowlib.models import iresnet, nice, realnvp
from flowlib.train import Trainer


@pytest.fixture(scope="module")
def gaussian_data():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(256, 2, generator=generator), torch.randn(48, 2, generator=generator)


def tiny(name: str = "RealNVP") -> Contender:
    return Contender(name, lambda: realnvp(2, layers=2, hidden=(8,)))


def test_one_row_per_contender_with_finite_measurements(gaussian_data) -> None:
    train, test = gaussian_data
    contenders = [tiny(), Contender("NICE", lambda: nice(2, layers=2, hidden=(8,)), sampling_cost="cheap")]
    rows = compare_flows(contenders, train, test, steps=4, batch_size=64, lr=1e-3, n_timing=100, timing_repeats=1)
    assert [row.name for row in rows] == ["RealNVP", "NICE"]
    for row in rows:
        assert isinstance(row, ComparisonRow)
        assert row.steps == 4 and row.bits_per_dim is None and row.parameters > 0
        assert math.isfinite(row.test_nll)
        assert row.step_seconds > 0 and row.density_seconds > 0 and row.sampling_seconds > 0
        assert next(row.flow.parameters()).device.type == "cpu"
    assert (rows[0].density_cost, rows[0].sampling_cost) == ("one pass", "one pass")
    assert rows[1].sampling_cost == "cheap"


def test_every_model_gets_the_same_budget_and_seeds(gaussian_data) -> None:
    """Two identical models under different names end identical: same init seed, batches and steps."""
    train, test = gaussian_data
    first, second = compare_flows([tiny("a"), tiny("b")], train, test, steps=6, batch_size=32, lr=1e-2, seed=3,
                                  n_timing=8, timing_repeats=1)  # fmt: skip
    assert first.test_nll == second.test_nll
    for p, q in zip(first.flow.parameters(), second.flow.parameters()):
        assert torch.equal(p, q)


def test_matches_a_trainer_run_by_hand(gaussian_data) -> None:
    train, test = gaussian_data
    (row,) = compare_flows([tiny()], train, test, steps=5, batch_size=64, lr=1e-2, seed=1, n_timing=8,
                           timing_repeats=1)  # fmt: skip
    torch.manual_seed(1)
    flow = realnvp(2, layers=2, hidden=(8,))
    torch.manual_seed(1)
    Trainer(flow, lr=1e-2, batch_size=64, seed=1, device="cpu", mixed_precision=False).fit(train, steps=5)
    with torch.no_grad():
        expected = -flow.log_prob(test).double().mean().item()
    assert row.test_nll == pytest.approx(expected, abs=1e-12)


def test_bits_per_dim_and_validation() -> None:
    images, _ = datasets.digits("train")
    x_train = images[:64].reshape(64, 64)
    generator = torch.Generator().manual_seed(0)
    v_test = datasets.dequantize(images[64:96].reshape(32, 64), 17, generator=generator)
    v_val = datasets.dequantize(images[96:128].reshape(32, 64), 17, generator=generator)
    contender = Contender("RealNVP", lambda: realnvp(64, layers=2, hidden=(16,)))
    (row,) = compare_flows(
        [contender], x_train, v_test, val=v_val, eval_every=2, patience=5, steps=4, batch_size=32, lr=1e-3,
        train_transform=lambda x, g: datasets.dequantize(x, 17, generator=g), levels=17, n_timing=50,
        timing_repeats=1,
    )  # fmt: skip
    assert row.best_step in (2, 4)
    assert row.bits_per_dim == pytest.approx(datasets.bits_per_dim(row.test_nll, 64, levels=17))


def test_residual_flows_are_evaluated_with_the_exact_logdet(gaussian_data) -> None:
    train, test = gaussian_data
    contender = Contender("iResNet", lambda: iresnet(2, blocks=2, hidden=(8,), logdet="roulette", n_terms=1))
    (row,) = compare_flows([contender], train, test, steps=3, batch_size=64, lr=1e-3, n_timing=8, timing_repeats=1)
    assert row.flow.bijection[0].logdet == "roulette"  # the training mode is restored
    with torch.no_grad(), logdet_mode(row.flow, "exact"):
        exact = -row.flow.log_prob(test).double().mean().item()
    assert row.test_nll == pytest.approx(exact, abs=1e-9)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"contenders": []}, ValueError),
        ({"contenders": [tiny("x"), tiny("x")]}, ValueError),
        ({"steps": 0}, ValueError),
        ({"n_timing": 0}, ValueError),
        ({"steps": 1.5}, TypeError),
    ],
)
def test_bad_arguments_are_refused(gaussian_data, kwargs, error) -> None:
    train, test = gaussian_data
    arguments = {"contenders": [tiny()], "steps": 2, "n_timing": 8}
    arguments.update(kwargs)
    with pytest.raises(error):
        compare_flows(arguments.pop("contenders"), train, test, batch_size=32, lr=1e-3, **arguments)


def test_the_appendix_models_build_and_evaluate() -> None:
    moons = moons_contenders()
    assert [c.name for c in moons] == ["NICE", "RealNVP", "spline coupling", "MAF", "IAF", "iResNet", "planar"]
    points = torch.randn(3, 2)
    for contender in moons:
        torch.manual_seed(0)
        with torch.no_grad(), logdet_mode(flow := contender.build(), "exact"):
            assert flow.log_prob(points).shape == (3,)
    costs = {c.name: (c.density_cost, c.sampling_cost) for c in moons}
    assert costs["MAF"][1] == costs["IAF"][0] == "D passes per layer"
    assert costs["iResNet"][1] == "fixed-point iterations" and costs["planar"][0] == "a root find per layer"
    images = digits_contenders((torch.full((64,), 0.5), torch.full((64,), 0.3)))
    assert [c.name for c in images] == ["multi-scale RealNVP", "Glow", "MAF"]
    v = torch.rand(2, 1, 8, 8)
    for contender in images:
        torch.manual_seed(0)
        with torch.no_grad():
            assert contender.build().log_prob(v).shape == (2,)


def test_table_has_a_heading_row_per_data_set_and_a_line_per_model(gaussian_data) -> None:
    train, test = gaussian_data
    rows = compare_flows([tiny()], train, test, steps=2, batch_size=64, lr=1e-3, n_timing=8, timing_repeats=1)
    discrete = [dataclasses.replace(rows[0], bits_per_dim=2.5)]
    table = comparison_table({"toy": rows, "other": discrete}).splitlines()
    assert len(table) == 6 and table[2].startswith("| **toy** |") and table[4].startswith("| **other** |")
    assert all(line.count("|") == table[0].count("|") for line in table)
    cells = [cell.strip() for cell in table[3].strip("|").split("|")]
    assert cells[0] == "RealNVP" and cells[1].endswith(" nats") and all(float(cell) > 0 for cell in cells[3:6])
    assert cells[6] == "one pass each way"
    assert table[5].split("|")[2].strip() == "2.500 bits/dim"


def test_cost_summary_names_the_expensive_directions() -> None:
    assert cost_summary("one pass", "one pass") == "one pass each way"
    assert cost_summary("D passes per layer", "one pass") == "density: D passes per layer"
    both = cost_summary("log-det series", "fixed-point iterations")
    assert both == "density: log-det series; sampling: fixed-point iterations"


def test_median_seconds() -> None:
    calls = []
    assert median_seconds(lambda: calls.append(1), repeats=3) >= 0 and len(calls) == 3
    with pytest.raises(ValueError):
        median_seconds(lambda: None, repeats=0)
