"""SIGKILL a command-line training run at many random moments; check last.pt after every kill.

    python tests/cli_kill_harness.py WORK_DIR [--kills 30] [--seed 0]

Used by tests/test_cli_resume.py. The harness imports torch and flowlib once
and then forks: each child runs ``flowlib.cli.main(["train", ..., "--checkpoint-every",
"1"])`` (with ``--resume`` once a ``last.pt`` exists), so that a kill costs
milliseconds instead of a Python start-up. Each child is killed at a random
moment (0 to 40 ms) after it has replaced ``last.pt`` once, so the kills land
while it trains, and, with a checkpoint after every step (a save with its
``fsync`` takes about as long as a step), about half of them inside a save.
After each kill the harness checks that ``last.pt`` loads with
``weights_only=True`` and holds a consistent state, and counts the kills that
left a temporary file behind (a kill inside a save: between creating the
temporary file and renaming it over ``last.pt``). Then it lets the chain of
resumed runs finish and compares the result with an uninterrupted run.

It prints one JSON object: ``kills``, ``kills_during_save``, ``problems``
(a list of strings, empty when all is well), ``steps`` and ``same_as_uninterrupted``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

STEPS = 400
TRAIN = [
    "train", "realnvp", "--layers", "2", "--hidden", "8", "--steps", str(STEPS), "--batch-size", "64",
    "--eval-every", "7", "--patience", "8", "--lr", "0.01", "--device", "cpu", "--seed", "3",
]  # fmt: skip
N_SAMPLES = 800  # 640 for training: 10 batches per epoch


def write_data(path: Path) -> None:
    """A small 3-D data set as a CSV file with a header."""
    import numpy as np

    g = np.random.default_rng(0)
    x = g.standard_normal((N_SAMPLES, 3))
    x[:, 1] += x[:, 0] ** 2
    x[:, 2] = 0.5 * x[:, 2] + np.sin(x[:, 0])
    np.savetxt(path, x, delimiter=",", header="a,b,c", comments="")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def run_child(argv: list[str], delay: float | None, watch: Path | None = None) -> tuple[int | None, bool]:
    """Fork a child that runs the CLI with ``argv`` and SIGKILL it ``delay`` seconds later (None: let it finish).

    With ``watch`` (the run's ``last.pt``) the delay starts once the child has
    replaced that file: so the kill lands while it trains and saves, however
    long its start takes on a busy machine. Returns ``(exit status or None, killed)``.
    """
    before = None if watch is None else _identity(watch)
    pid = os.fork()
    if pid == 0:  # the child: quiet, runs the command line, never returns to the harness
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            from flowlib.cli import main

            os._exit(main(argv))
        except BaseException:
            os._exit(99)
    if delay is not None:
        deadline = time.monotonic() + 60
        while watch is not None and _identity(watch) == before and time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0]:  # it ended (finished) before saving again
                return 0, False
            time.sleep(0.001)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return None, True
    return os.WEXITSTATUS(status), False


def check_checkpoint(path: Path, steps_per_epoch: int, eval_every: int) -> tuple[int, bool, list[str]]:
    """Load ``last.pt`` with ``weights_only=True`` and check that its parts agree; return (step, finished, problems)."""
    import torch

    try:
        state = torch.load(path, weights_only=True)
    except Exception as error:  # a half-written file
        return -1, False, [f"{path} does not load: {type(error).__name__}: {error}"]
    problems = []
    step, fit = state["step"], state["fit"]
    for index, param_state in state["optimizer"]["state"].items():
        if int(param_state["step"]) != step:
            problems.append(f"step {step}: Adam's step count of parameter {index} is {int(param_state['step'])}")
    history = state["history"]
    last_entry = history[-1]["step"] if history else 0
    if fit["window"]["count"] != step - last_entry:
        problems.append(f"step {step}: the loss window holds {fit['window']['count']} losses since step {last_entry}")
    expected = [s for s in range(eval_every, step + 1, eval_every)]
    if not fit["finished"] and [e["step"] for e in history] != expected:
        problems.append(f"step {step}: history steps {[e['step'] for e in history]}, expected {expected}")
    if step and state["schedule"]["position"] != (step - 1) % steps_per_epoch + 1:
        problems.append(f"step {step}: schedule position {state['schedule']['position']}")
    losses = [e["val_loss"] for e in history]
    if losses and fit["stopping"]["best_loss"] != min(losses):
        best = fit["stopping"]["best_loss"]
        problems.append(f"step {step}: best loss {best} but the history's minimum is {min(losses)}")
    return step, bool(fit["finished"]), problems


def same_outputs(a: Path, b: Path) -> list[str]:
    """Differences between two finished runs' model.pt and history.json (wall-clock times excluded)."""
    import torch

    problems = []
    wa, wb = (torch.load(p / "model.pt", weights_only=True)["model"] for p in (a, b))
    if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
        problems.append("model.pt weights differ")
    ha, hb = ([{k: v for k, v in e.items() if k != "elapsed"} for e in json.loads((p / "history.json").read_text())]
              for p in (a, b))
    if ha != hb:
        problems.append("history.json differs")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("work", type=Path)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (imported once here, not in every child)
    import torch

    torch.set_num_threads(1)
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # Adam's first use imports much of torch: do it once

    data = args.work / "data.csv"
    write_data(data)
    run, reference = args.work / "run", args.work / "reference"
    argv = [*TRAIN, "--data", str(data), "--checkpoint-every", "1", "--out", str(run)]
    steps_per_epoch, eval_every = int(N_SAMPLES * 0.8) // 64, 7

    rng = random.Random(args.seed)
    summary: dict[str, Any] = {"kills": 0, "kills_during_save": 0, "problems": [], "steps": []}
    start = time.perf_counter()
    code, _ = run_child([*TRAIN, "--data", str(data), "--out", str(reference)], None)
    summary["reference_seconds"] = round(time.perf_counter() - start, 2)
    if code != 0:
        summary["problems"].append(f"the uninterrupted run failed with status {code}")
    seen: set[Path] = set()
    for _ in range(args.kills):
        resume = ["--resume"] if (run / "last.pt").exists() else []
        code, killed = run_child(argv + resume, rng.uniform(0.0, 0.04), watch=run / "last.pt")
        if not killed:
            summary["problems"].append(f"a run was not killed (status {code}): it finished too early")
            break
        summary["kills"] += 1
        stale = set(run.glob(".last.pt.*.tmp")) if run.exists() else set()
        summary["kills_during_save"] += bool(stale - seen)  # a new temporary file: this kill hit a save
        seen |= stale
        if (run / "last.pt").exists():
            step, finished, problems = check_checkpoint(run / "last.pt", steps_per_epoch, eval_every)
            if summary["steps"] and step < summary["steps"][-1]:
                problems.append(f"last.pt went back from step {summary['steps'][-1]} to {step}")
            summary["steps"].append(step)
            summary["problems"] += problems
            if finished:
                break
    code, _ = run_child(argv + (["--resume"] if (run / "last.pt").exists() else []), None)
    if code != 0:
        summary["problems"].append(f"the last resumed run failed with status {code}")
    elif not list(run.glob(".last.pt.*.tmp")):
        summary["same_as_uninterrupted"] = not same_outputs(run, reference)
        summary["problems"] += same_outputs(run, reference)
    else:
        summary["problems"].append("a temporary file was left behind by a run that was not killed")
    summary["seconds"] = round(time.perf_counter() - start, 2)
    json.dump(summary, sys.stdout)


if __name__ == "__main__":
    main()
