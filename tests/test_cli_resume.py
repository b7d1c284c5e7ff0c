"""Kill ``python -m flowlib train`` with SIGKILL and resume it: the result equals an uninterrupted run, bit for bit.

Three kinds of kill:

* one process, killed at a random step (seeded), once a checkpoint at or after
  that step exists, then resumed with ``--resume``;
* two processes under ``torchrun`` (gloo, CPU), the whole job killed the same
  way, then resumed under ``torchrun``;
* many kills at random moments of a run that saves after every step
  (tests/cli_kill_harness.py): ``last.pt`` must load with ``weights_only=True``
  and be consistent after every one, and many of the kills land inside a save.

Each compares ``model.pt`` (``torch.equal``), ``history.json`` and
``metrics.json`` with those of an uninterrupted run, leaving out wall-clock
fields (``elapsed``, ``train_seconds``). The runs are subprocesses with
``OMP_NUM_THREADS=1``, so that every run does the same float arithmetic.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from flowlib.cli import main

from .cli_kill_harness import write_data

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TRAIN = [
    "train", "realnvp", "--layers", "4", "--hidden", "16", "--steps", "300", "--batch-size", "100",
    "--eval-every", "20", "--patience", "4", "--lr", "0.01", "--device", "cpu", "--seed", "3",
]  # fmt: skip
"""A run that stops early: its best validation NLL at step 140, then 4 worse evaluations, the end at step 220."""


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def launch(args: list[str], cwd: Path, processes: int = 1) -> subprocess.Popen:
    """Start ``python -m flowlib ARGS`` (under torchrun for several processes) in its own process group."""
    if processes == 1:
        command = [sys.executable, "-m", "flowlib", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--standalone",
                   "-m", "flowlib", *args]  # fmt: skip
    return subprocess.Popen(command, cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"exit status {process.returncode}:\n{output}"
    return output


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_job(process: subprocess.Popen) -> None:
    """SIGKILL the process, its process group and every descendant at once, as a preempted job is killed."""
    workers = descendants(process.pid)
    os.killpg(process.pid, signal.SIGKILL)
    for pid in workers:
        try:
            os.killpg(pid, signal.SIGKILL)  # a worker leads its own session
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
              for pid in workers if Path(f"/proc/{pid}/stat").exists()):  # fmt: skip
        assert time.monotonic() < deadline, "a worker survived SIGKILL"
        time.sleep(0.05)


def checkpoint_step(path: Path) -> int | None:
    try:
        return int(torch.load(path, weights_only=True)["step"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return None


def kill_at_step(process: subprocess.Popen, checkpoint: Path, step: int, timeout: float = 240) -> int:
    """Wait until ``checkpoint`` holds ``step`` or later, then SIGKILL the job; return the checkpoint's step."""
    deadline, seen = time.monotonic() + timeout, None
    while True:
        assert process.poll() is None, f"the run ended before step {step}:\n{process.communicate()[0]}"
        assert time.monotonic() < deadline, f"no checkpoint at step {step} after {timeout} s"
        if checkpoint.exists() and (mtime := checkpoint.stat().st_mtime_ns) != seen:
            seen = mtime
            saved = checkpoint_step(checkpoint)
            if saved is not None and saved >= step:
                kill_job(process)
                return saved
        time.sleep(0.01)


def assert_same_run(run: Path, reference: Path) -> None:
    """model.pt equal tensor by tensor, history and metrics equal apart from wall-clock times."""
    a, b = (torch.load(p / "model.pt", weights_only=True) for p in (run, reference))
    assert a["config"] == b["config"] and a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    history = [json.loads((p / "history.json").read_text()) for p in (run, reference)]
    strip = [[{k: v for k, v in entry.items() if k != "elapsed"} for entry in h] for h in history]
    assert strip[0] == strip[1]
    metrics = [json.loads((p / "metrics.json").read_text()) for p in (run, reference)]
    for m in metrics:
        m.pop("train_seconds")
    assert metrics[0] == metrics[1]


def kill_and_resume(tmp_path: Path, train: list[str], seed: int, processes: int) -> tuple[int, int, str]:
    """Run the reference, a killed run and its resumption; return (kill step asked, checkpoint step, resume output)."""
    reference = launch([*train, "--out", "reference"], tmp_path, processes)
    interrupted = launch([*train, "--checkpoint-every", "10", "--out", "run"], tmp_path, processes)
    step = random.Random(seed).randint(30, 180)
    saved = kill_at_step(interrupted, tmp_path / "run" / "last.pt", step)
    assert not (tmp_path / "run" / "model.pt").exists()  # it really was interrupted
    assert checkpoint_step(tmp_path / "run" / "last.pt") == saved  # ... and left a whole checkpoint
    print(f"\n{processes} process(es): asked to kill at step {step}, killed with last.pt at step {saved}")
    output = finish(launch([*train, "--checkpoint-every", "10", "--out", "run", "--resume"], tmp_path, processes))
    finish(reference)
    assert_same_run(tmp_path / "run", tmp_path / "reference")
    return step, saved, output


def test_one_process_killed_at_a_random_step_resumes_bit_for_bit(tmp_path: Path) -> None:
    step, saved, output = kill_and_resume(tmp_path, [*TRAIN, "--data", "moons", "--n-train", "2000"], 0, 1)
    assert f"resuming at step {saved} of 300" in output
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history[-1]["step"] == 220 and saved < 220  # early stopping decided after the resume, as without the kill


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds torchrun's workers in /proc")
def test_two_processes_killed_at_a_random_step_resume_bit_for_bit(tmp_path: Path) -> None:
    write_data(tmp_path / "data.csv")
    step, saved, output = kill_and_resume(tmp_path, [*TRAIN, "--data", "data.csv"], 1, 2)
    assert f"resuming at step {saved} of 300" in output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["processes"] == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the harness forks")
def test_sigkill_during_saves_never_leaves_a_broken_checkpoint(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "cli_kill_harness.py"), str(tmp_path), "--kills", "40", "--seed", "0"],
        cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    print(f"\n{summary['kills']} kills, {summary['kills_during_save']} of them inside a save; "
          f"checkpoint steps {summary['steps']}")
    assert summary["problems"] == []
    assert summary["kills"] >= 10 and summary["kills_during_save"] >= 5, summary
    assert summary["same_as_uninterrupted"]


# ---------------------------------------------------------------------------- refusals, in-process


def small_run(tmp_path: Path, *extra: str) -> list[str]:
    write_data(tmp_path / "data.csv")
    return ["train", "realnvp", "--data", str(tmp_path / "data.csv"), "--layers", "2", "--hidden", "8", "--steps",
            "20", "--batch-size", "64", "--eval-every", "5", "--device", "cpu", "--out", str(tmp_path / "run"),
            *extra]  # fmt: skip


def test_resume_refuses_a_missing_or_foreign_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = small_run(tmp_path, "--checkpoint-every", "5")
    assert main([*argv, "--resume"]) == 2
    assert "cannot --resume: there is no checkpoint" in capsys.readouterr().err
    assert main(argv) == 0
    assert main([*argv, "--hidden", "16", "--lr", "0.01", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "was written for a different run: --hidden 8 in last.pt, 16 now; --lr 0.001 in last.pt, 0.01 now" in err
    data = (tmp_path / "data.csv").read_text().splitlines()
    (tmp_path / "data.csv").write_text("\n".join([data[0], data[2], data[1], *data[3:]]) + "\n")
    assert main([*argv, "--resume"]) == 2
    assert "the data differ from those of the interrupted run" in capsys.readouterr().err
    torch.save({"format": "something else"}, tmp_path / "run" / "last.pt")
    assert main([*argv, "--resume"]) == 2
    assert "is not a checkpoint written by Trainer.save_checkpoint" in capsys.readouterr().err


def test_resume_of_a_finished_run_and_the_fresh_start_notice(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = small_run(tmp_path, "--checkpoint-every", "5")
    assert main(argv) == 0
    first = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]
    assert main([*argv[:-2], "--resume", "--out", str(tmp_path / "run")]) == 0  # --checkpoint-every comes from last.pt
    assert "the run had finished at step 20: nothing left to train" in capsys.readouterr().err
    again = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert main(small_run(tmp_path)) == 0  # a new run without checkpoints removes the old last.pt
    assert "last.pt from an earlier run is replaced" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_ctrl_c_says_how_to_continue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from flowlib.train import Trainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    assert main(small_run(tmp_path, "--checkpoint-every", "5")) == 130
    assert "no checkpoint was written (train with --checkpoint-every N" in capsys.readouterr().err
