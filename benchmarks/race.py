r"""Race flowlib against zuko, nflows and normflows on tasks A and C of the benchmark protocol.

Run from the repository root with the benchmark's own environment::

    benchmarks/.venv/bin/python benchmarks/race.py --task all          # full run, ~3.5 min on an idle 2-core machine
    benchmarks/.venv/bin/python benchmarks/race.py --task A --quick    # 300-step smoke run

The protocol (``shared/BENCHMARK-PROTOCOL.md``, summarized in ``benchmarks/README.md``):
two-moons data (``make_moons(20000, noise=0.05)`` train, 5000 fresh test samples,
standardized with the train mean/std), Adam with lr 1e-3, batch 512, 1500 steps,
standard normal base (not trainable), plain ReLU MLP conditioners with PyTorch's
default initialization, test NLL every 100 steps.

* Task A: 8 affine couplings on alternating halves, conditioner 1 -> 128 -> 128 -> 2 (136,208 parameters).
* Task C: 5 rational-quadratic spline couplings, 8 bins, bound 5, linear tails,
  conditioner 1 -> 128 -> 128 -> 23 (98,675 parameters).

All contenders run in one process and are *interleaved*: every round trains each
of them for one window of 100 steps (the order rotates from round to round), then
evaluates its test NLL. Other jobs on the machine therefore slow all of them alike,
and the ratios are taken per round (paired) before the median. Throughput is the
median of the per-window rates after one warm-up window.

The *floor* is the same conditioner networks alone: forward, backward and Adam on
the same batch, with no masks, permutations, log-dets or base log-prob (loss: the
mean square of their outputs). What a library spends above the floor is its
bookkeeping. The floor is fast, so its windows are 200 steps (the window's 100
batches twice) to stay above the protocol's 0.5 s.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HIDDEN = (128, 128)
BINS = 8
BOUND = 5.0
LR = 1e-3
BATCH = 512
WINDOW = 100  # steps per timing window, and between two test evaluations
THREADS = 2
N_TRAIN, N_TEST, NOISE = 20_000, 5_000, 0.05


@dataclass(frozen=True)
class Task:
    """One task of the protocol: ``layers`` couplings with ``per_dim`` conditioner outputs per transformed coordinate."""

    name: str
    description: str
    layers: int
    per_dim: int
    protocol_params: int

    @property
    def spline(self) -> bool:
        return self.per_dim != 2


TASKS = {
    "A": Task("A", "8 affine couplings (RealNVP), conditioner 1-128-128-2", 8, 2, 136_208),
    "C": Task(
        "C", "5 RQ-spline couplings, 8 bins, bound 5, linear tails, conditioner 1-128-128-23", 5, 3 * BINS - 1, 98_675
    ),
}


class PlainMLP(nn.Sequential):
    """A ReLU MLP ``in -> 128 -> 128 -> out`` with PyTorch's default initialization.

    ``forward`` accepts (and ignores) a ``context`` argument because nflows and
    normflows call their conditioners as ``net(x, context)``.
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = HIDDEN) -> None:
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        super().__init__(*layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:  # type: ignore[override]
        return super().forward(x)


LogProb = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- the models, one builder per library
# Each builder returns (module holding the parameters, log_prob function, note on how it matches the protocol).
# Layer 0 (the first applied to the data) keeps x0 and transforms x1; layer 1 the other way round; and so on.


def build_flowlib(task: Task, default_init: bool = True) -> tuple[nn.Module, LogProb, str]:
    """flowlib's own constructors (``models.realnvp`` / ``models.spline_flow``).

    flowlib starts every conditioner's last layer at zero (identity flow). The
    protocol asks for PyTorch's default initialization, so with ``default_init``
    the last ``nn.Linear`` of each conditioner is re-initialized with
    ``reset_parameters()``; the architecture is untouched.
    """
    from flowlib import models
    from flowlib.bijections import Coupling

    if task.spline:
        flow = models.spline_flow(2, layers=task.layers, hidden=HIDDEN, bins=BINS, bound=BOUND)
        note = "models.spline_flow(2, layers=5, hidden=(128, 128), bins=8, bound=5)"
    else:
        flow = models.realnvp(2, layers=task.layers, hidden=HIDDEN)
        note = "models.realnvp(2, layers=8, hidden=(128, 128)); log-scale soft-bounded to (-5, 5)"
    if default_init:
        for coupling in (m for m in flow.modules() if isinstance(m, Coupling)):
            [m for m in coupling.conditioner.modules() if isinstance(m, nn.Linear)][-1].reset_parameters()
        note += "; last layers re-initialized (PyTorch default)"
    else:
        note += "; flowlib's zero-initialized last layers (not the protocol)"
    return flow, flow.log_prob, note


def build_zuko(task: Task) -> tuple[nn.Module, LogProb, str]:
    """zuko: ``RealNVP`` for A; ``GeneralCouplingTransform`` with ``MonotonicRQSTransform`` for C.

    ``zuko.flows.NSF`` is autoregressive (MADE masks, dense masked weights), so C
    uses the general coupling transform with the spline as its univariate map.
    """
    import zuko

    if not task.spline:
        flow = zuko.flows.RealNVP(2, transforms=task.layers, hidden_features=HIDDEN)
        note = "flows.RealNVP(2, transforms=8, hidden_features=(128, 128)); log-scale soft-bounded by |log 1e-3|"
    else:
        couplings = [
            zuko.flows.GeneralCouplingTransform(
                2,
                mask=torch.arange(2) % 2 == i % 2,
                univariate=zuko.transforms.MonotonicRQSTransform,  # bound 5, identity (linear) tails
                shapes=[(BINS,), (BINS,), (BINS - 1,)],
                hidden_features=HIDDEN,
            )
            for i in range(task.layers)
        ]
        base = zuko.flows.UnconditionalDistribution(
            zuko.distributions.DiagNormal, torch.zeros(2), torch.ones(2), buffer=True
        )
        flow = zuko.flows.Flow(couplings, base)
        note = "flows.GeneralCouplingTransform(univariate=transforms.MonotonicRQSTransform, bins 8, bound 5)"
    return flow, lambda x: flow().log_prob(x), note


def build_nflows(task: Task) -> tuple[nn.Module, LogProb, str]:
    """nflows: ``AffineCouplingTransform`` / ``PiecewiseRationalQuadraticCouplingTransform`` in a ``Flow``."""
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.coupling import AffineCouplingTransform, PiecewiseRationalQuadraticCouplingTransform

    layers = []
    for i in range(task.layers):
        mask = torch.tensor([0, 1] if i % 2 == 0 else [1, 0])  # nflows: mask > 0 is transformed
        if task.spline:
            layers.append(
                PiecewiseRationalQuadraticCouplingTransform(
                    mask, PlainMLP, num_bins=BINS, tails="linear", tail_bound=BOUND
                )
            )
        else:
            layers.append(AffineCouplingTransform(mask, PlainMLP))
    flow = Flow(CompositeTransform(layers), StandardNormal([2]))
    note = (
        "PiecewiseRationalQuadraticCouplingTransform(tails='linear', tail_bound=5, num_bins=8)"
        if task.spline
        else "AffineCouplingTransform; its scale is sigmoid(s + 2) + 1e-3, i.e. in (0.001, 1.001)"
    )
    return flow, flow.log_prob, note


def build_normflows(task: Task) -> tuple[nn.Module, LogProb, str]:
    """normflows: ``AffineCouplingBlock`` for A; ``PiecewiseRationalQuadraticCoupling`` for C.

    normflows' ready-made ``CoupledRationalQuadraticSpline`` hard-wires a
    ``ResidualNet`` conditioner and an extra unconditional spline on the kept half,
    so C uses the coupling it wraps, with a plain MLP, in a two-line adapter.
    normflows runs ``flows`` from last to first in ``log_prob``, hence the reversal.
    """
    import normflows as nf
    from normflows.flows.neural_spline.coupling import PiecewiseRationalQuadraticCoupling

    class SplineCoupling(nf.flows.Flow):
        """normflows' Flow convention: ``inverse`` is the data -> noise direction."""

        def __init__(self, keep_first: bool) -> None:
            super().__init__()
            mask = torch.tensor([0, 1] if keep_first else [1, 0])
            self.coupling = PiecewiseRationalQuadraticCoupling(
                mask, PlainMLP, num_bins=BINS, tails="linear", tail_bound=BOUND
            )

        def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
            x, log_det = self.coupling.inverse(z)
            return x, log_det.view(-1)

        def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
            z, log_det = self.coupling(x)
            return z, log_det.view(-1)

    flows: list[nn.Module] = []
    for i in range(task.layers):
        keep_first = i % 2 == 0
        if task.spline:
            flows.append(SplineCoupling(keep_first))
        else:  # param_map output: [shift, log-scale] for the one transformed coordinate
            flows.append(
                nf.flows.AffineCouplingBlock(
                    PlainMLP(1, 2), scale_map="exp", split_mode="channel" if keep_first else "channel_inv"
                )
            )
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), flows[::-1])
    note = (
        "flows.neural_spline.coupling.PiecewiseRationalQuadraticCoupling(tails='linear', tail_bound=5)"
        if task.spline
        else "flows.AffineCouplingBlock(scale_map='exp'): unbounded log-scale"
    )
    return flow, flow.log_prob, note


# --------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    """A model in the race: how to train one window and how to evaluate it, and what it recorded."""

    name: str
    params: int
    note: str
    train_window: Callable[[Tensor], float]  # batches (steps, B, 2) -> last loss
    test_nll: Callable[[], float] | None  # None for the floor
    setup: Callable[[], None] = lambda: None  # run before each window and evaluation
    repeat: int = 1  # passes over each window's batches: the floor needs 2 for windows of >= 0.5 s
    windows: list[tuple[int, float]] = field(default_factory=list)  # (steps, seconds) per timed window
    nll: list[tuple[int, float]] = field(default_factory=list)
    failure: str | None = None


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def loop_trainer(module: nn.Module, loss_fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], float]:
    """The training loop every library shares: ``zero_grad``, loss, ``backward``, Adam step."""
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=LR)

    def window(batches: Tensor) -> float:
        loss = torch.zeros(())
        for x in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(x)
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    return window


def flow_contender(
    name: str, built: tuple[nn.Module, LogProb, str], test: Tensor, setup: Callable[[], None] = lambda: None
) -> Contender:
    module, log_prob, note = built

    @torch.no_grad()
    def test_nll() -> float:
        module.eval()
        value = float(-log_prob(test).double().mean())
        module.train()
        return value

    return Contender(name, count(module), note, loop_trainer(module, lambda x: -log_prob(x).mean()), test_nll, setup)


def floor_contender(task: Task) -> Contender:
    """The conditioner networks alone, each fed one column of the batch."""
    nets = nn.ModuleList(PlainMLP(1, task.per_dim) for _ in range(task.layers))

    def loss_fn(x: Tensor) -> Tensor:
        return sum(net(x[:, i % 2 : i % 2 + 1]).square().mean() for i, net in enumerate(nets))  # type: ignore[return-value]

    return Contender(
        "floor (conditioners only)",
        count(nets),
        f"{task.layers} x PlainMLP(1, {task.per_dim})",
        loop_trainer(nets, loss_fn),
        None,
        repeat=2,
    )


def flowlib_trainer_contender(task: Task, train: Tensor, test: Tensor, seed: int) -> Contender:
    """flowlib's ``Trainer.fit`` (its own batch order, NaN and gradient-norm checks), checks on."""
    from flowlib.train import Trainer

    flow, _, note = build_flowlib(task)
    trainer = Trainer(flow, lr=LR, batch_size=BATCH, device="cpu", seed=seed, restore_best=False)

    def window(batches: Tensor) -> float:
        trainer.fit(train, steps=len(batches))
        return float(trainer.history[-1]["train_loss"])

    return Contender("flowlib Trainer.fit", count(flow), note, window, lambda: trainer.evaluate(test), _checks(True))


def _checks(enabled: bool) -> Callable[[], None]:
    def setup() -> None:
        from flowlib.core import set_input_checks

        set_input_checks(enabled)

    return setup


LIBRARIES = ("flowlib", "zuko", "nflows", "normflows")


def contenders(
    task: Task, libs: Sequence[str], train: Tensor, test: Tensor, seed: int, extras: bool
) -> list[Contender]:
    """Build every contender of a task, each right after ``torch.manual_seed(seed)``; a failing one is recorded."""
    makers: list[tuple[str, Callable[[], Contender]]] = [("floor (conditioners only)", lambda: floor_contender(task))]
    if "flowlib" in libs:
        makers += [
            (
                "flowlib (checks on)",
                lambda: flow_contender("flowlib (checks on)", build_flowlib(task), test, _checks(True)),
            ),
            (
                "flowlib (checks off)",
                lambda: flow_contender("flowlib (checks off)", build_flowlib(task), test, _checks(False)),
            ),
            ("flowlib Trainer.fit", lambda: flowlib_trainer_contender(task, train, test, seed)),
        ]
        if extras:
            makers.append(
                (
                    "flowlib zero-init",
                    lambda: flow_contender(
                        "flowlib zero-init (checks off)", build_flowlib(task, default_init=False), test, _checks(False)
                    ),
                )
            )
    builders = {"zuko": build_zuko, "nflows": build_nflows, "normflows": build_normflows}

    def peer(lib: str) -> Callable[[], Contender]:
        return lambda: flow_contender(lib, builders[lib](task), test, _checks(True))

    makers += [(lib, peer(lib)) for lib in libs if lib in builders]
    out = []
    for name, make in makers:
        torch.manual_seed(seed)
        try:
            out.append(make())
        except Exception as error:  # noqa: BLE001 (a peer that does not build: report it and go on)
            out.append(Contender(name, 0, "", lambda b: math.nan, None, failure=f"build: {error!r}"))
    return out


# --------------------------------------------------------------------------- the race


def moons_data(seed: int) -> tuple[Tensor, Tensor]:
    """Standardized train (20000) and test (5000, fresh: another seed) sets of two moons."""
    from flowlib.data import Standardizer, moons

    train, test = moons(N_TRAIN, seed=seed, noise=NOISE), moons(N_TEST, seed=seed + 1, noise=NOISE)
    scaler = Standardizer().fit(train)
    return scaler.transform(train), scaler.transform(test)


def batch_plan(train: Tensor, steps: int, seed: int) -> Tensor:
    """The batches all loop-trained contenders see: epochs of a seeded permutation, remainder dropped."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = train.shape[0] // BATCH
    epochs = math.ceil(steps / per_epoch)
    order = torch.cat([torch.randperm(train.shape[0], generator=generator)[: per_epoch * BATCH] for _ in range(epochs)])
    return train[order[: steps * BATCH]].reshape(steps, BATCH, -1).contiguous()


def race(task: Task, libs: Sequence[str], steps: int, seed: int, extras: bool, log: Callable[[str], None]) -> dict:
    train, test = moons_data(seed)
    batches = batch_plan(train, steps, seed)
    racers = contenders(task, libs, train, test, seed, extras)
    for c in racers:
        status = f"FAILED ({c.failure})" if c.failure else f"{c.params:>7,}  {c.note}"
        log(f"  {c.name:<30} params {status}  [protocol {task.protocol_params:,}]")
    rounds = math.ceil(steps / WINDOW)
    for r in range(rounds):
        block = batches[r * WINDOW : (r + 1) * WINDOW]
        shift = r % len(racers)
        for c in racers[shift:] + racers[:shift]:
            if c.failure:
                continue
            c.setup()
            try:
                start = time.perf_counter()
                for _ in range(c.repeat):
                    loss = c.train_window(block)
                c.windows.append((len(block) * c.repeat, time.perf_counter() - start))
                if not math.isfinite(loss):
                    raise FloatingPointError(f"training loss {loss}")
                if c.test_nll is not None:
                    c.nll.append((r * WINDOW + len(block), c.test_nll()))
            except Exception as error:  # noqa: BLE001 (a diverging or crashing model: report it and go on)
                c.failure = f"step <= {(r + 1) * WINDOW}: {error!r}"[:300]
        rates = ", ".join(
            f"{c.name} {n / t:.0f}" for c in racers if c.windows and not c.failure for n, t in c.windows[-1:]
        )
        log(f"  round {r + 1}/{rounds} (step {min((r + 1) * WINDOW, steps)}), steps/s: {rates}")
    return summarize(task, racers, steps)


def paired_ratio(windows: list[tuple[int, float]], reference: list[tuple[int, float]]) -> float | None:
    """Median over the timed rounds (after the warm-up one) of time per step / the reference's in the same round."""
    pairs = [(t / n) / (t_ref / n_ref) for (n, t), (n_ref, t_ref) in list(zip(windows, reference))[1:]]
    return statistics.median(pairs) if pairs else None


def summarize(task: Task, racers: list[Contender], steps: int) -> dict:
    floor = racers[0]
    flowlib = next((c for c in racers if c.name == "flowlib (checks on)"), None)
    rows = []
    for c in racers:
        timed = c.windows[1:]
        rates = [n / t for n, t in timed]
        best = min(c.nll, key=lambda e: e[1]) if c.nll else None
        rows.append(
            {
                "library": c.name,
                "params": c.params,
                "protocol_params": task.protocol_params,
                "note": c.note,
                "steps_per_s": statistics.median(rates) if rates else None,
                "steps_per_s_min_max": [min(rates), max(rates)] if rates else None,
                "timed_windows": len(timed),
                "disturbed_windows": sum(rate < statistics.median(rates) / 2 for rate in rates),
                "shortest_window_s": min(t for _, t in timed) if timed else None,
                "x_floor": paired_ratio(c.windows, floor.windows) if not floor.failure else None,
                "x_flowlib": paired_ratio(c.windows, flowlib.windows) if flowlib and not flowlib.failure else None,
                "best_test_nll": best[1] if best else None,
                "best_step": best[0] if best else None,
                "final_test_nll": c.nll[-1][1] if c.nll else None,
                "test_nll_curve": c.nll,
                "windows_steps_seconds": [(n, round(t, 4)) for n, t in c.windows],
                "failure": c.failure,
            }
        )
    return {"task": task.name, "model": task.description, "steps": steps, "rows": rows}


# --------------------------------------------------------------------------- reporting


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(result: dict) -> str:
    lines = [
        f"Task {result['task']}: {result['model']}, {result['steps']} steps",
        "",
        "| library | params | train steps/s | time/step ÷ floor | time/step ÷ flowlib | best test NLL (step) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        if row["failure"] and row["steps_per_s"] is None:
            lines.append(f"| {row['library']} | — | failed: {row['failure']} | | | |")
            continue
        best = "—" if row["best_test_nll"] is None else f"{row['best_test_nll']:.3f} ({row['best_step']})"
        if row["failure"]:
            best += f" then failed: {row['failure']}"
        lines.append(
            f"| {row['library']} | {row['params']:,} | {_fmt(row['steps_per_s'], '.1f')} | "
            f"{_fmt(row['x_floor'], '.2f')}× | {_fmt(row['x_flowlib'], '.2f')}× | {best} |"
        )
    shortest = min((row["shortest_window_s"] for row in result["rows"] if row["shortest_window_s"]), default=None)
    timed = max((row["timed_windows"] for row in result["rows"]), default=0)
    disturbed = sum(row["disturbed_windows"] for row in result["rows"])
    lines += [
        "",
        f"{timed} timed windows per model after one warm-up window; shortest window {_fmt(shortest, '.2f')} s"
        + (" (the protocol asks for >= 0.5 s)" if shortest and shortest < 0.5 else "")
        + f"; {disturbed} of {timed * len(result['rows'])} windows ran at less than half their model's median"
        + (" (other load): rerun on a quieter machine or with --threads 1" if disturbed > timed else ""),
    ]
    return "\n".join(lines)


def flowlib_commit() -> str:
    """The repository's commit, with ``+dirty`` when flowlib/ has uncommitted changes (results depend on them)."""
    import subprocess

    def git(*words: str) -> subprocess.CompletedProcess[str]:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(["git", *words], cwd=root, capture_output=True, text=True, check=False)

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "flowlib")
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("flowlib", "zuko", "nflows", "normflows", "numpy", "scikit-learn"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["A", "C", "all"], default="all")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per model (default 1500)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 steps, results to *-quick files")
    parser.add_argument("--libs", default=",".join(LIBRARIES), help="comma-separated subset of " + ",".join(LIBRARIES))
    parser.add_argument(
        "--extras", action="store_true", help="also race flowlib with its own zero-initialized last layers"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help=f"torch threads (protocol: {THREADS}; 1 is far steadier when other jobs share the CPUs)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. what else was running)")
    args = parser.parse_args(argv)
    steps = 300 if args.quick else args.steps
    if steps < 2 * WINDOW:
        parser.error(f"--steps must be at least {2 * WINDOW} (one warm-up and one timed window)")
    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(libs) - set(LIBRARIES)
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; choose from {LIBRARIES}")

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    started = datetime.datetime.now().astimezone()
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "versions": versions(),
        "flowlib_commit": flowlib_commit(),
        "torch_threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
        "seed": args.seed,
        "batch": BATCH,
        "window_steps": WINDOW,
        "note": args.note,
    }
    print(
        f"race: {meta['date']}, torch {torch.__version__}, {args.threads} threads, load average {load_start[0]:.2f}",
        flush=True,
    )
    results = []
    for name in ["A", "C"] if args.task == "all" else [args.task]:
        print(f"task {name}: {TASKS[name].description}", flush=True)
        results.append(race(TASKS[name], libs, steps, args.seed, args.extras, lambda s: print(s, flush=True)))
    load_end = os.getloadavg()
    meta["elapsed_s"] = round((datetime.datetime.now().astimezone() - started).total_seconds(), 1)
    meta["load_average_1min_start_end"] = [round(load_start[0], 2), round(load_end[0], 2)]
    busy = max(load_start[0], load_end[0]) > 0.5
    meta["machine_load"] = (
        "other jobs were using the CPU during this run (1-min load average above 0.5 outside the race): "
        "absolute steps/s are depressed and noisy; the paired ratios are the figures to compare"
        if busy
        else "the machine was otherwise idle at the start and end of the run"
    )

    header = "\n".join(
        [
            (
                f"Date {meta['date']}; flowlib at commit {meta['flowlib_commit']}; "
                f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs; "
                f"zuko {meta['versions']['zuko']}, nflows {meta['versions']['nflows']}, "
                f"normflows {meta['versions']['normflows']}; {meta['elapsed_s']} s in all."
            ),
            f"Load average (1 min) at start/end: {load_start[0]:.2f}/{load_end[0]:.2f}: {meta['machine_load']}.",
            *([f"Note: {args.note}"] if args.note else []),
        ]
    )
    report = header + "\n\n" + "\n\n".join(table(r) for r in results) + "\n"
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = (
        f"race-{args.task}"
        + ("" if args.threads == THREADS else f"-{args.threads}thread")
        + ("-quick" if args.quick else "")
    )
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(f"# flowlib race: `{meta['command']}`\n\n{report}")
    print(f"written: {args.out / (stem + '.json')}, {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
