"""The command line: python -m flowlib train ... writes a usable model, history, metrics and samples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowlib.cli import _parser, load_model, main

ROOT = Path(__file__).resolve().parent.parent


def test_train_writes_everything_and_the_model_reloads(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["train", "realnvp", "--data", "moons", "--steps", "30", "--n-train", "600", "--batch-size", "128",
                 "--eval-every", "10", "--layers", "4", "--hidden", "16", "--device", "cpu", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"model.pt", "history.json", "metrics.json", "samples.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert metrics["steps"] == 30 and len(history) == 3 and metrics["parameters"] > 0
    assert (out / "samples.png").read_bytes()[:4] == b"\x89PNG"
    flow = load_model(out / "model.pt")
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["config"] == {"model": "realnvp", "layers": 4, "hidden": 16, "data": "moons", "event_shape": [2],
                               "levels": None, "seed": 0}
    assert state["preprocessing"]["standardize"]["std"].shape == (2,)
    x = torch.randn(7, 2)
    assert torch.isfinite(flow.log_prob(x)).all()
    assert min(entry["val_loss"] for entry in history) == pytest.approx(metrics["best_val_nll"])


def test_digits_reports_bits_per_dim(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    code = main(["train", "multiscale", "--data", "digits", "--steps", "4", "--batch-size", "64", "--hidden", "8",
                 "--eval-every", "2", "--device", "cpu", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["test_bits_per_dim"] < 10


def test_help_documents_every_option() -> None:
    result = subprocess.run([sys.executable, "-m", "flowlib", "train", "--help"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0
    train = next(a for a in _parser()._actions if a.dest == "command").choices["train"]
    for action in train._actions:
        for flag in action.option_strings:
            assert flag in result.stdout
        if action.dest != "help":
            assert action.help, f"option {action.dest} has no help text"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "multiscale", "--data", "moons"], "does not fit data"),
        (["train", "realnvp", "--steps", "0"], "--steps must be a positive integer"),
        # 3 points and a batch of 512 used to train 2000 steps on the same 3 points (test NLL 1.2e8), silently
        (["train", "realnvp", "--n-train", "3"], r"the training split has 3 samples, fewer than one batch "
                                                 r"\(--batch-size 512\).*--n-train 512 or more.*at most 3"),
    ],
)
def test_bad_arguments_get_a_clear_error(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)


def test_maf_on_digits_trains_and_reloads(tmp_path: Path) -> None:
    out = tmp_path / "maf"
    code = main(["train", "maf", "--data", "digits", "--steps", "4", "--batch-size", "64", "--hidden", "16",
                 "--eval-every", "2", "--device", "cpu", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 < metrics["test_bits_per_dim"] < 10
    flow = load_model(out / "model.pt")  # the fixed standardization comes back from the state dict
    state = torch.load(out / "model.pt", weights_only=True)
    assert torch.equal(flow.bijection[1].scale, state["model"]["bijection.layers.1.scale"])
    samples = flow.sample(3)
    assert samples.shape == (3, 1, 8, 8) and torch.isfinite(samples).all()
