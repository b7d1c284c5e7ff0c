"""Glow against chapter 4's multi-scale RealNVP on the 8x8 digits, over several seeds: the runs chapter 5 cites.

    .venv/bin/python benchmarks/glow_digits.py                    # chapter 5's CPU budget, every arm, seeds 0 1 2
    .venv/bin/python benchmarks/glow_digits.py --arms glow,realnvp --seeds 0
    .venv/bin/python benchmarks/glow_digits.py --full --arms glow,realnvp --seeds 0   # FLOWLIB_FULL's budget

The protocol is chapter 4's (and chapter 5's): ``flowlib.data.digits`` train /
val / test (1,257 / 270 / 270), 17 levels; the validation and test images are
dequantized once with ``torch.Generator().manual_seed(4)`` (test first, then
validation), the training batches with fresh noise from the Trainer's generator
(``train_transform``); ``torch.manual_seed(seed)`` right before the model is
built; ``Trainer(lr=1e-3, batch_size=128, eval_every=25, patience=4, seed=seed,
device="cpu", mixed_precision=False)``, 300 steps, best validation weights
restored; one torch thread. ``--full``: 3,000 steps, ``eval_every=50``,
``patience=10``. Seed 0 of an arm is the exact run the chapter makes.

Each run records its test NLL (nats per image of the dequantized pixels),
bits/dim, the validation curve and the mean training loss between
evaluations (both in bits/dim), parameters, the training time (CPU seconds of
this process, and wall seconds) and the time to draw 1,000 samples. Results go
to ``benchmarks/results/glow-digits[-full].json``; a run replaces the entry of
the same arm and seed and keeps the others, and every entry keeps the command
that produced it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from provenance import commit, machine

from flowlib import Compose, Flow
from flowlib import data as datasets
from flowlib.bijections import AffineCoupling, checkerboard_mask
from flowlib.models import glow, multiscale_realnvp
from flowlib.train import Trainer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

GLOW = {"levels": 2, "steps": 8, "hidden_channels": 96}  # chapter 5's Glow


def glow_with_checkerboards(steps: int, hidden: int, seed: int, checkerboards: int = 3) -> Flow:
    """A diagnostic, not Glow: RealNVP's full-resolution checkerboard couplings before Glow's first squeeze."""
    flow = glow((1, 8, 8), levels=2, steps=steps, hidden_channels=hidden, seed=seed)
    logit, body = flow.bijection[0], flow.bijection[1]
    boards = [
        AffineCoupling(checkerboard_mask((1, 8, 8), parity=i % 2), hidden=(hidden,), bound=3.0)
        for i in range(checkerboards)
    ]
    return Flow(flow.base, Compose(logit, *boards, body))


ARMS: dict[str, tuple[str, Callable[[int], Flow]]] = {
    "realnvp": ("chapter 4's multiscale_realnvp((1, 8, 8), hidden_channels=64)",
                lambda seed: multiscale_realnvp((1, 8, 8), hidden_channels=64)),
    "glow": ("glow((1, 8, 8), levels=2, steps=8, hidden_channels=96), LU 1x1 convolutions",
             lambda seed: glow((1, 8, 8), **GLOW, seed=seed)),
    "glow-reverse": ("the same Glow with a fixed channel reversal instead of the 1x1 convolution",
                     lambda seed: glow((1, 8, 8), **GLOW, permutation="reverse", seed=seed)),
    "glow-shuffle": ("the same Glow with a fixed random channel permutation instead of the 1x1 convolution",
                     lambda seed: glow((1, 8, 8), **GLOW, permutation="shuffle", seed=seed)),
    "glow-no-split-prior": ("the same Glow with a standard normal for the half that leaves at the split",
                            lambda seed: glow((1, 8, 8), **GLOW, split_prior=False, seed=seed)),
    "glow-K8-H64": ("glow(levels=2, steps=8, hidden_channels=64): about RealNVP's computation per step",
                    lambda seed: glow((1, 8, 8), levels=2, steps=8, hidden_channels=64, seed=seed)),
    "glow-K4-H64": ("glow(levels=2, steps=4, hidden_channels=64): half RealNVP's computation per step",
                    lambda seed: glow((1, 8, 8), levels=2, steps=4, hidden_channels=64, seed=seed)),
    "glow-K4-H64+checkerboard": ("the K4-H64 Glow after 3 RealNVP checkerboard couplings at 8x8 (a diagnostic)",
                                 lambda seed: glow_with_checkerboards(4, 64, seed)),
}


def _data() -> dict[str, torch.Tensor]:
    x_train, _ = datasets.digits("train")
    x_val, _ = datasets.digits("val")
    x_test, _ = datasets.digits("test")
    noise = torch.Generator().manual_seed(4)
    v_test = datasets.dequantize(x_test, 17, generator=noise)
    v_val = datasets.dequantize(x_val, 17, generator=noise)
    return {"train": x_train, "val": v_val, "test": v_test}


def fresh_noise(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dequantize each training batch with new noise."""
    return datasets.dequantize(batch, 17, generator=generator)


def _bpd(nll: float) -> float:
    return float(datasets.bits_per_dim(nll, 64, levels=17))


def run(arm: str, seed: int, full: bool, data: dict[str, torch.Tensor]) -> dict[str, object]:
    steps, every, patience = (3000, 50, 10) if full else (300, 25, 4)
    torch.manual_seed(seed)
    flow = ARMS[arm][1](seed)
    trainer = Trainer(flow, lr=1e-3, batch_size=128, eval_every=every, patience=patience, device="cpu",
                      mixed_precision=False, seed=seed)
    cpu, wall = time.process_time(), time.perf_counter()
    trainer.fit(data["train"], val=data["val"], steps=steps, train_transform=fresh_noise)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    with torch.no_grad():
        test_nll = -flow.log_prob(data["test"]).double().mean().item()
    torch.manual_seed(7)
    sample_times = []
    for _ in range(3):
        start = time.perf_counter()
        flow.sample(1000)
        sample_times.append(time.perf_counter() - start)
    return {
        "arm": arm,
        "seed": seed,
        "model": ARMS[arm][0],
        "parameters": sum(p.numel() for p in flow.parameters()),
        "steps": trainer.step,
        "best_step": trainer.best_step,
        "test_nll": round(test_nll, 5),
        "test_bpd": round(_bpd(test_nll), 5),
        "best_val_bpd": round(_bpd(trainer.best_val_loss), 5),
        "val_curve": [[entry["step"], round(_bpd(entry["val_loss"]), 5)] for entry in trainer.history],
        "train_curve": [[entry["step"], round(_bpd(entry["train_loss"]), 5)] for entry in trainer.history],
        "train_cpu_seconds": round(cpu, 2),
        "train_wall_seconds": round(wall, 2),
        "sample_1000_seconds": round(statistics.median(sample_times), 4),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def summarize(runs: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """Per arm: mean and standard deviation of the test bits/dim over seeds, and the mean times."""
    out: dict[str, dict[str, float]] = {}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        bpd = [float(r["test_bpd"]) for r in mine]
        out[arm] = {
            "seeds": len(mine),
            "test_bpd_mean": round(statistics.mean(bpd), 5),
            "test_bpd_sd": round(statistics.stdev(bpd), 5) if len(bpd) > 1 else 0.0,
            "train_cpu_seconds_mean": round(statistics.mean(float(r["train_cpu_seconds"]) for r in mine), 2),
            "parameters": int(mine[0]["parameters"]),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    parser.add_argument("--full", action="store_true", help="FLOWLIB_FULL's budget: 3000 steps, patience 10")
    parser.add_argument("--out", type=Path, default=None, help="results file (default results/glow-digits[-full].json)")
    args = parser.parse_args(argv)
    arms = args.arms.split(",")
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; choose from {list(ARMS)}")
    torch.set_num_threads(1)
    path = args.out or RESULTS / f"glow-digits{'-full' if args.full else ''}.json"
    stored = json.loads(path.read_text()) if path.exists() else {"runs": []}
    command = " ".join(["benchmarks/glow_digits.py", *(argv if argv is not None else sys.argv[1:])])
    data = _data()
    for seed in args.seeds:
        for arm in arms:
            result = run(arm, seed, args.full, data)
            result["command"] = f".venv/bin/python {command}"
            result["date"] = datetime.date.today().isoformat()
            result["commit"] = commit()
            print(f"{arm:26s} seed {seed}: test {result['test_bpd']:.4f} bits/dim, best val "
                  f"{result['best_val_bpd']:.4f} at step {result['best_step']}, {result['parameters']:,} parameters, "
                  f"{result['train_cpu_seconds']:.1f} s CPU ({result['train_wall_seconds']:.1f} s wall)", flush=True)
            stored["runs"] = [r for r in stored["runs"] if (r["arm"], r["seed"]) != (arm, seed)] + [result]
            stored["runs"].sort(key=lambda r: (list(ARMS).index(r["arm"]), r["seed"]))
            stored["protocol"] = __doc__.split("\n\n")[2].replace("\n", " ")
            stored["budget"] = "3000 steps, eval every 50, patience 10" if args.full else \
                "300 steps, eval every 25, patience 4"
            stored["machine"] = machine(1)
            stored["summary"] = summarize(stored["runs"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=1) + "\n")
    for arm, row in stored["summary"].items():
        print(f"{arm:26s} {row['seeds']} seeds: {row['test_bpd_mean']:.4f} +- {row['test_bpd_sd']:.4f} bits/dim, "
              f"{row['parameters']:,} parameters, {row['train_cpu_seconds_mean']:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
