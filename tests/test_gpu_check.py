"""scripts/gpu_check.py, as far as it can be tested without a GPU: arguments, the plan, the summary."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up there
_spec.loader.exec_module(gpu_check)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_dry_run_lists_every_check_and_every_cli_model() -> None:
    done = run("--dry-run", "--steps", "50")
    assert done.returncode == 0, done.stderr
    for check in gpu_check.CHECKS:
        assert check in done.stdout
    from flowlib.cli import MODELS

    for model in MODELS:
        assert model in done.stdout
    assert "50 steps" in done.stdout


def test_bad_arguments_are_refused_with_a_message() -> None:
    done = run("--steps", "3", "--dry-run")
    assert done.returncode == 2 and "--steps must be at least 10" in done.stderr
    done = run("--only", "no-such-check")
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_the_summary_reads_as_one_screen() -> None:
    results = [
        gpu_check.Result("environment", True, 0.4, "NVIDIA X, torch 2.13.0"),
        gpu_check.Result("models", False, 120.0, "glow: bf16 NLL 900.1 vs float32 850.0"),
    ]
    text = gpu_check.summarize(results, header="flowlib GPU check")
    lines = text.splitlines()
    assert lines[0] == "flowlib GPU check"
    assert lines[1].startswith("PASS  environment") and lines[2].startswith("FAIL  models")
    assert lines[-1] == "GPU check FAILED: models (2 checks, 120 s)"
    assert gpu_check.summarize(results[:1]).splitlines()[-1].startswith("GPU check passed")


def test_the_bf16_tolerance_grows_with_the_nll() -> None:
    assert gpu_check.bf16_tolerance(0.0) == pytest.approx(0.05)
    assert gpu_check.bf16_tolerance(-100.0) == pytest.approx(2.05)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the real check is gpu_check.sh")
def test_without_a_gpu_it_fails_clearly_and_skips_the_rest(tmp_path: Path) -> None:
    done = run("--only", "environment", "checkpoint", "--out", str(tmp_path))
    assert done.returncode == 1
    assert "no CUDA device visible" in done.stdout and "skipped: no CUDA device" in done.stdout
    assert "GPU check FAILED: environment, checkpoint (2 checks" in (tmp_path / "summary.txt").read_text()
