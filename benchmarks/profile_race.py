r"""Profile flowlib against the fastest peer on the race's tasks: where the time of a step goes.

Run from the repository root with the benchmark's environment::

    benchmarks/.venv/bin/python benchmarks/profile_race.py                 # tasks A, B and C, 2 threads
    benchmarks/.venv/bin/python benchmarks/profile_race.py --task C --top 20

For each task it builds the race's contenders (``race.py``: same models, same data, same seed,
PyTorch's default initialization, untrained) and, for each of three phases,

* ``train``: one training step of the shared loop (``zero_grad``, loss, ``backward``, Adam step)
  on one batch of the race (512 points; task B: 256 images);
* ``log_prob``: ``log_prob`` of the race's inference batch (10,000 points; task B: 1,000 images),
  gradients off;
* ``sample``: ``sample`` of as many points, gradients off;

1. times every contender without the profiler (``--repeats`` calls each, interleaved, median), and
   picks the fastest peer of that phase; for ``train`` also on a batch of one point (one image), which
   leaves the fixed cost of a step (Python, dispatch, autograd bookkeeping, Adam) and hardly any arithmetic;
2. runs ``torch.profiler`` (CPU activities) over ``--calls`` calls of flowlib (input checks on, as a
   user gets it) and of that peer, and of the floor for ``train``, and prints for each the number of
   operator calls per call and the top operators by self CPU time.

Everything printed is also written to ``results/profile-<tasks>[-<n>thread].md``. The profiler adds its
own overhead per operator, so compare the un-profiled times for speed and the profiles for *where* the
time goes; "ops per call" counts the aten operators (each costs dispatcher and, in autograd, graph time).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import race  # noqa: E402  (the race's models, data and contenders)

PHASES = ("train", "log_prob", "sample")
FLOWLIB = "flowlib (checks on)"
CHECKS_OFF = "flowlib (checks off)"


def setups(task: race.Task, seed: int) -> tuple[list[race.Contender], Tensor, Tensor]:
    """The race's contenders of ``task`` (not ``Trainer.fit``), a block of training batches, the inference points."""
    if task.name == "B":
        digits = race.digits_data(seed)
        racers = race.contenders_b(race.LIBRARIES, digits, seed, extras=False)
        batches = race.digits_batches(digits, race.WINDOW, seed)(0)
        points = race.inference_points(digits.test, race.SAMPLE_N)
    else:
        train, test = race.moons_data(seed)
        racers = race.contenders(task, race.LIBRARIES, train, test, seed, extras=False)
        batches = race.batch_plan(train, race.WINDOW, seed)
        points = race.inference_points(test, race.INFER_N)
    keep = [c for c in racers if not c.failure and c.name != "flowlib Trainer.fit"]
    return keep, batches, points


def phase_call(c: race.Contender, phase: str, batches: Tensor, points: Tensor) -> Callable[[int], object] | None:
    """``call(i)`` runs one call of ``phase`` (step ``i`` uses batch ``i``); ``None`` if ``c`` has no such phase."""
    if phase == "train":
        return lambda i: c.train_window(batches[i % len(batches)][None])
    fn = c.log_prob if phase == "log_prob" else c.sample
    if fn is None:
        return None
    n = points.shape[0]

    def call(i: int) -> object:
        with torch.no_grad():
            return fn(points) if phase == "log_prob" else fn(n)

    return call


def time_calls(
    calls: dict[str, Callable[[int], object]], setup: dict[str, Callable[[], None]], repeats: int
) -> dict[str, float]:
    """Median seconds per call of each, over ``repeats`` interleaved calls (after 3 warm-up calls each)."""
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for name, call in calls.items():
        setup[name]()
        for i in range(3):
            call(i)
    for i in range(repeats):
        for name, call in calls.items():
            setup[name]()
            start = time.perf_counter()
            call(i)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in seconds.items()}


def profile_calls(
    call: Callable[[int], object], setup: Callable[[], None], calls: int, top: int
) -> tuple[int, float, list[tuple[str, int, float]]]:
    """Profile ``calls`` calls: aten ops per call, self CPU ms per call, top ops as (name, calls, self ms) per call."""
    setup()
    for i in range(3):
        call(i)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(calls):
            call(i)
    events = prof.key_averages()
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    total = sum(e.self_cpu_time_total for e in events) / 1000 / calls
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return ops // calls, total, [(e.key, round(e.count / calls), e.self_cpu_time_total / 1000 / calls) for e in ranked]


def profile_task(task: race.Task, seed: int, repeats: int, calls: int, top: int, out: Callable[[str], None]) -> None:
    racers, batches, points = setups(task, seed)
    by_name = {c.name: c for c in racers}
    floor = racers[0]
    out(f"## Task {task.name}: {task.description}")
    out("")
    for phase in PHASES:
        runnable = {c.name: phase_call(c, phase, batches, points) for c in racers}
        runnable = {name: call for name, call in runnable.items() if call is not None}
        setup = {name: by_name[name].setup for name in runnable}
        medians = time_calls(runnable, setup, repeats)
        peers = {name: t for name, t in medians.items() if name in race.PEERS}
        fastest = min(peers, key=peers.get)
        size = (
            f"one step, batch {batches.shape[1]}" if phase == "train"
            else f"n = {points.shape[0]:,}, gradients off"
        )
        out(f"### Task {task.name}, {phase} ({size})")
        out("")
        out(f"Un-profiled, median of {repeats} interleaved calls: "
            + ", ".join(f"{name} {t * 1000:.2f} ms" for name, t in medians.items())
            + f". Fastest peer: {fastest}. flowlib ÷ {fastest}: {medians[FLOWLIB] / medians[fastest]:.2f}×"
            + (
                f", ÷ floor: {medians[FLOWLIB] / medians[floor.name]:.2f}× "
                f"(peer ÷ floor {medians[fastest] / medians[floor.name]:.2f}×)"
                if phase == "train" else ""
            )
            + (
                f"; checks off ÷ checks on: {medians[CHECKS_OFF] / medians[FLOWLIB]:.3f}"
                if CHECKS_OFF in medians else ""
            )
            + ".")
        out("")
        if phase == "train":  # the fixed cost of a step: Python, dispatch, autograd, Adam; hardly any arithmetic
            tiny = {
                name: (lambda i, c=by_name[name]: c.train_window(batches[i % len(batches)][None, :1]))
                for name in runnable
            }
            fixed = time_calls(tiny, setup, repeats)
            out(f"The same step on a batch of 1 (its fixed cost), median of {repeats}: "
                + ", ".join(f"{name} {t * 1000:.2f} ms" for name, t in fixed.items())
                + f". Above the floor's: flowlib {1000 * (fixed[FLOWLIB] - fixed[floor.name]):.2f} ms"
                + (
                    f" (checks off {1000 * (fixed[CHECKS_OFF] - fixed[floor.name]):.2f} ms)"
                    if CHECKS_OFF in fixed else ""
                )
                + f", {fastest} {1000 * (fixed[fastest] - fixed[floor.name]):.2f} ms; at batch {batches.shape[1]}: "
                f"flowlib {1000 * (medians[FLOWLIB] - medians[floor.name]):.2f} ms, "
                f"{fastest} {1000 * (medians[fastest] - medians[floor.name]):.2f} ms.")
            out("")
        profiled = [FLOWLIB, fastest] + ([floor.name] if phase == "train" else [])
        for name in profiled:
            ops, total, ranked = profile_calls(runnable[name], setup[name], calls, top)
            out(f"{name}: {ops} aten ops per call, {total:.2f} ms self CPU per call under the profiler")
            out("")
            out("| operator | calls per call | self CPU ms per call | share |")
            out("|---|---:|---:|---:|")
            for key, count, ms in ranked:
                out(f"| `{key}` | {count} | {ms:.3f} | {ms / total:.0%} |")
            out("")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["A", "B", "C", "all"], default="all")
    parser.add_argument("--threads", type=int, default=race.THREADS, help=f"torch threads (protocol: {race.THREADS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=30, help="un-profiled calls per contender and phase")
    parser.add_argument("--calls", type=int, default=10, help="profiled calls per contender and phase")
    parser.add_argument("--top", type=int, default=12, help="operators shown per profile")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines: list[str] = []

    def out(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    out(f"# Profiles: `{' '.join([os.path.relpath(sys.executable), *sys.argv])}`")
    out("")
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    out(f"{now}; flowlib at commit {race.flowlib_commit()}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; seed {args.seed}; untrained models "
        f"(the race's initialization); load average (1 min) {os.getloadavg()[0]:.2f}.")
    out("")
    for name in ["A", "B", "C"] if args.task == "all" else [args.task]:
        torch.manual_seed(args.seed)
        profile_task(race.TASKS[name], args.seed, args.repeats, args.calls, args.top, out)
    out(f"Load average (1 min) at the end: {os.getloadavg()[0]:.2f}.")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"profile-{args.task}" + ("" if args.threads == race.THREADS else f"-{args.threads}thread")
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"written: {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
