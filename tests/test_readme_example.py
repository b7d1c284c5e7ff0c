"""The README's worked example (your CSV, an interrupted run, samples) runs as written.

The block after the marker comment in README.md is run twice in a fresh
folder that has only a ``.venv`` link to this interpreter's environment: once
exactly as written (bash, stopping at the first failing command), and once with
the first ``train`` killed by SIGKILL at its first checkpoint, so that the
``--resume`` line really continues an interrupted run, which must end with the
same model as the uninterrupted one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .test_cli_resume import kill_at_step

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- tests/test_readme_example.py runs the next block as written -->"


def example_block() -> str:
    text = (ROOT / "README.md").read_text()
    assert MARKER in text, "the README lost the marker of its tested example"
    after = text.split(MARKER, 1)[1]
    start = after.index("```bash\n") + len("```bash\n")
    return after[start : after.index("```", start)]


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comment lines and blank lines left out."""
    found, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            found.append(current.strip())
            current = ""
    return found


def fresh_folder(path: Path) -> Path:
    """A folder like a fresh clone's root as far as the example is concerned: .venv is this environment."""
    path.mkdir(parents=True, exist_ok=True)
    (path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return path


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def as_written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = fresh_folder(tmp_path_factory.mktemp("readme") / "clone")
    done = subprocess.run(["bash", "-e", "-c", example_block()], cwd=folder, env=environment(), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, f"the README example failed:\n{done.stdout}\n{done.stderr}"
    return folder, done.stdout + done.stderr


def test_the_example_has_the_commands_it_promises() -> None:
    steps = commands(example_block())
    assert steps[0] == "mkdir -p runs" and steps[1].startswith(".venv/bin/python -c ")
    train, resume = steps[2], steps[3]
    assert "--data runs/banana.csv" in train and "--checkpoint-every" in train and resume == train + " --resume"
    assert " sample " in steps[4] and " evaluate " in steps[5] and len(steps) == 6


def test_the_example_runs_as_written(as_written: tuple[Path, str]) -> None:
    folder, output = as_written
    run = folder / "runs" / "banana"
    assert {"model.pt", "last.pt", "history.json", "metrics.json", "samples.png"} <= {p.name for p in run.iterdir()}
    assert "the run had finished at step" in output  # on a fresh clone the --resume line has nothing left to do
    samples = np.load(folder / "runs" / "banana-samples.npy")
    data = np.loadtxt(folder / "runs" / "banana.csv", delimiter=",", skiprows=1)
    assert samples.shape == (1000, 2) and abs(samples[:, 0].mean() - data[:, 0].mean()) < 1.0
    metrics = json.loads((run / "metrics.json").read_text())
    found = re.search(r"on runs/banana.csv, 2000 samples: NLL (\S+) nats per sample of the data in its own", output)
    assert found and abs(float(found.group(1)) - metrics["test_nll_original"]) < 0.5  # all 2,000 rows vs the test split


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the killed processes in /proc")
def test_the_resume_line_continues_a_killed_run(as_written: tuple[Path, str], tmp_path: Path) -> None:
    folder = fresh_folder(tmp_path / "clone")
    make_dirs, make_data, train, resume = commands(example_block())[:4]
    for command in (make_dirs, make_data):
        subprocess.run(["bash", "-e", "-c", command], cwd=folder, env=environment(), check=True, timeout=120)
    process = subprocess.Popen(["bash", "-c", train], cwd=folder, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    step = kill_at_step(process, folder / "runs" / "banana" / "last.pt", 100)
    assert not (folder / "runs" / "banana" / "model.pt").exists()
    done = subprocess.run(["bash", "-e", "-c", resume], cwd=folder, env=environment(), capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming at step {step} of 400" in done.stderr
    a, b = (torch.load(f / "runs" / "banana" / "model.pt", weights_only=True)["model"] for f in (folder, as_written[0]))
    assert all(torch.equal(a[k], b[k]) for k in b)
