"""``python -m flowlib sample`` and ``evaluate``: a saved run, used without repeating its options."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flowlib.cli import build_parser, load_model, load_run, main
from flowlib.data import bits_per_dim, split_indices

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def vector_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A realnvp trained briefly on a 3-D CSV with large, shifted scales (so that standardization matters)."""
    folder = tmp_path_factory.mktemp("vectors")
    g = np.random.default_rng(0)
    x = g.standard_normal((600, 3)) * np.array([50.0, 0.2, 3.0]) + np.array([1000.0, -5.0, 0.0])
    np.savetxt(folder / "data.csv", x, delimiter=",", header="a,b,c", comments="")
    np.save(folder / "data.npy", x)
    code = main(["train", "realnvp", "--data", str(folder / "data.csv"), "--layers", "2", "--hidden", "8", "--steps",
                 "40", "--batch-size", "64", "--eval-every", "20", "--device", "cpu", "--out", str(folder / "run")])
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multiscale model trained for a few steps on a folder of 8x8 grayscale PNGs (levels 256 by default)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    (folder / "pngs").mkdir()
    g = np.random.default_rng(1)
    for i in range(60):
        Image.fromarray(g.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / "pngs" / f"{i:03d}.png")
    code = main(["train", "multiscale", "--data", str(folder / "pngs"), "--hidden", "4", "--steps", "3",
                 "--batch-size", "16", "--eval-every", "3", "--device", "cpu", "--out", str(folder / "run")])
    assert code == 0
    return folder


def test_samples_are_in_the_units_of_the_data(vector_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = vector_run / "samples.npy"
    assert main(["sample", str(vector_run / "run"), "--n", "5000", "--out", str(out), "--device", "cpu"]) == 0
    assert "wrote 5000 samples of shape (3,)" in capsys.readouterr().out
    samples, data = np.load(out), np.load(vector_run / "data.npy")
    assert samples.shape == (5000, 3) and samples.dtype == np.float32
    # a briefly trained model is close to a Gaussian fit: the samples have the data's location and scale
    np.testing.assert_allclose(samples.mean(0), data.mean(0), atol=0.3 * data.std(0).max())
    np.testing.assert_allclose(samples.std(0) / data.std(0), 1.0, atol=0.3)

    cold = vector_run / "cold.csv"
    assert main(["sample", str(vector_run / "run"), "--n", "5000", "--out", str(cold), "--temperature", "0.3",
                 "--device", "cpu"]) == 0
    cold_samples = np.loadtxt(cold, delimiter=",")
    assert cold_samples.shape == (5000, 3)
    assert (cold_samples.std(0) < 0.6 * samples.std(0)).all()  # temperature shrinks the spread


def test_samples_depend_on_the_seed_only(vector_run: Path) -> None:
    def draw(seed: int) -> np.ndarray:
        out = vector_run / f"seed{seed}.npy"
        assert main(["sample", str(vector_run / "run" / "model.pt"), "--n", "7", "--seed", str(seed), "--out",
                     str(out), "--device", "cpu"]) == 0
        return np.load(out)

    assert np.array_equal(draw(3), draw(3)) and not np.array_equal(draw(3), draw(4))


def test_evaluate_adds_the_standardization_log_det(vector_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(vector_run / "run"), "--data", str(vector_run / "data.csv"), "--json",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    std = torch.load(vector_run / "run" / "model.pt", weights_only=True)["preprocessing"]["standardize"]["std"]
    assert result["samples"] == 600
    assert result["nll"] == pytest.approx(result["nll_standardized"] + float(std.double().log().sum()), rel=1e-6)
    # by hand: standardize with the stored statistics, add sum(log sigma)
    run = load_run(vector_run / "run")
    x = torch.from_numpy(np.loadtxt(vector_run / "data.csv", delimiter=",", skiprows=1).astype(np.float32))
    with torch.no_grad():
        by_hand = -run.flow.log_prob(run.standardization.transform(x)).double().mean().item()
    assert result["nll_standardized"] == pytest.approx(by_hand, rel=1e-6)


def test_evaluate_on_the_test_split_reproduces_the_test_nll(vector_run: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = np.load(vector_run / "data.npy")
    _, _, test_rows = split_indices(len(data), 0.1, 0.1, seed=0)
    np.save(vector_run / "test.npy", data[test_rows])
    assert main(["evaluate", str(vector_run / "run"), "--data", str(vector_run / "test.npy"), "--json",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((vector_run / "run" / "metrics.json").read_text())
    assert result["nll_standardized"] == pytest.approx(metrics["test_nll"], rel=1e-12)
    assert result["nll"] == pytest.approx(metrics["test_nll_original"], rel=1e-12)
    assert main(["evaluate", str(vector_run / "run"), "--data", str(vector_run / "test.npy"), "--device", "cpu"]) == 0
    assert f"NLL {result['nll']:.4f} nats per sample of the data in its own units" in capsys.readouterr().out


def test_images_sample_as_integers_and_evaluate_in_bits_per_dim(image_run: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = image_run / "samples.npy"
    assert main(["sample", str(image_run / "run"), "--n", "6", "--out", str(out), "--device", "cpu"]) == 0
    assert "wrote 6 samples of shape (1, 8, 8)" in capsys.readouterr().out
    samples = np.load(out)
    assert samples.shape == (6, 1, 8, 8) and samples.dtype == np.uint8
    assert main(["evaluate", str(image_run / "run"), "--data", str(image_run / "pngs"), "--json",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 60 and "dequantized pixels v = (x + u) / 256" in result["units"]
    assert result["bits_per_dim"] == pytest.approx(bits_per_dim(result["nll"], 64, levels=256))
    metrics = json.loads((image_run / "run" / "metrics.json").read_text())
    assert 0 < metrics["test_bits_per_dim"] < 12
    assert main(["sample", str(image_run / "run"), "--n", "2", "--out", str(image_run / "s.csv")]) == 2
    assert "do not fit a CSV table" in capsys.readouterr().err


def test_evaluate_refuses_data_of_another_shape(vector_run: Path, image_run: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    np.save(vector_run / "wide.npy", np.zeros((5, 4)))
    assert main(["evaluate", str(vector_run / "run"), "--data", str(vector_run / "wide.npy")]) == 2
    assert "trained on samples of shape (3,), but this data has samples of shape (4,)" in capsys.readouterr().err
    np.save(image_run / "float.npy", np.full((5, 1, 8, 8), 0.5, np.float32))  # the run was trained on 8-bit pixels
    assert main(["evaluate", str(image_run / "run"), "--data", str(image_run / "float.npy")]) == 2
    assert "with --levels 256 the pixels must be integers in 0..255" in capsys.readouterr().err
    np.save(image_run / "big.npy", np.zeros((5, 1, 16, 16), np.uint8))
    assert main(["evaluate", str(image_run / "run"), "--data", str(image_run / "big.npy")]) == 2
    err = capsys.readouterr().err
    assert "trained on samples of shape (1, 8, 8), but this data has samples of shape (1, 16, 16)" in err
    assert main(["evaluate", str(vector_run), "--data", "moons"]) == 2
    assert "no such file; give a run folder written by 'python -m flowlib train'" in capsys.readouterr().err


def test_models_of_the_earlier_format_still_load(vector_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """model.pt files written before the format had preprocessing: config with four keys, weights."""
    main(["train", "realnvp", "--data", "moons", "--n-train", "200", "--steps", "2", "--batch-size", "50",
          "--layers", "2", "--hidden", "8", "--device", "cpu", "--out", str(tmp_path / "new")])
    state = torch.load(tmp_path / "new" / "model.pt", weights_only=True)
    old = {"config": {k: state["config"][k] for k in ("model", "layers", "hidden", "data")}, "model": state["model"]}
    (tmp_path / "old").mkdir()
    torch.save(old, tmp_path / "old" / "model.pt")
    flow = load_model(tmp_path / "old" / "model.pt")
    probe = torch.randn(5, 2)
    assert torch.equal(flow.log_prob(probe), load_model(tmp_path / "new").log_prob(probe))
    assert main(["sample", str(tmp_path / "old"), "--n", "3", "--out", str(tmp_path / "s.npy")]) == 0
    out = capsys.readouterr().out
    assert "standardized units (this model.pt, written by an earlier flowlib, has no statistics)" in out
    assert main(["evaluate", str(tmp_path / "old"), "--data", "moons"]) == 2
    assert "holds no standardization statistics" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "new"), "--data", "moons", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "the test split of moons" and result["samples"] == 5000
    metrics = json.loads((tmp_path / "new" / "metrics.json").read_text())
    assert result["nll_standardized"] == pytest.approx(metrics["test_nll"], rel=1e-12)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n", "0"], "--n must be a positive int, got 0"),
        (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
        (["--seed", "-1"], r"--seed must be an int in \[0, 2\*\*32\)"),
        (["--out", "samples.txt"], "write samples to a .npy file"),
    ],
)
def test_bad_sample_options(vector_run: Path, argv: list[str], message: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", str(vector_run / "run"), *argv]) == 2
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)


@pytest.mark.parametrize("command", ["train", "sample", "evaluate"])
def test_help_documents_every_option(command: str) -> None:
    """(tests/test_cli.py runs ``python -m flowlib train --help`` itself; here the parser's text is enough.)"""
    parser = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    text = parser.format_help()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        if action.dest != "help":
            assert action.help, f"{command}: option {action.dest} has no help text"
    assert "(default: None)" not in text
    if command == "train":
        assert "--resume" in text and "bit for bit" in text and "--levels L" in text and "divisible by 4" in text


def test_every_command_runs_as_a_module() -> None:
    result = subprocess.run([sys.executable, "-m", "flowlib", "sample", "--help"], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0 and "--temperature" in result.stdout


def test_list_names_the_data_you_can_bring(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "multiscale" in out and "digits" in out and ".csv" in out and ".png" in out
    assert math.isfinite(len(out))
