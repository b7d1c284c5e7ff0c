"""Chapter 8's fits of the four Rezende-Mohamed energies over several seeds: planar flows of K = 2, 8, 32 layers and an IAF.

    .venv/bin/python benchmarks/vi_energies.py                      # chapter 8's CPU budget, seeds 0 1 2
    .venv/bin/python benchmarks/vi_energies.py --models planar32,iaf --seeds 0
    .venv/bin/python benchmarks/vi_energies.py --full --seeds 0     # FLOWLIB_FULL's budget

The protocol is chapter 8's: each flow has a learnable diagonal Gaussian base
(``flowlib.DiagonalGaussian(2)``); ``planarK`` stacks K ``flowlib.bijections.Planar``
layers drawn from ``torch.Generator().manual_seed(seed)``, ``iaf`` stacks 6
``InverseAutoregressive`` layers with MADEs of one hidden layer of 6 units, orders
alternating. ``torch.manual_seed(seed)`` right before each flow is built; then
``flowlib.vi.fit_reverse_kl`` with 256 samples per step, Adam with a cosine schedule
from lr 0.03 and the target annealed over the first half of the steps, 300 steps
(``--full``: lr 0.01, 3,000 steps). After training, ``torch.manual_seed(100 + seed)``
and ``flowlib.vi.estimate_log_normalizer`` with 20,000 samples: the ELBO, the
importance-weighted estimate of log Z with its standard error, and the effective
sample size. The reference log Z is ``EnergyTarget.log_normalizer(n=1200)``, the
midpoint rule on a 1200 x 1200 grid. One torch thread. Seed 0 is the exact run the
chapter makes.

Each run records, per target and model: the parameters, the ELBO gap (log Z - ELBO),
the error of the importance-weighted log Z (estimate - grid) and its standard error,
the ESS as a fraction of the samples, and the training time (CPU seconds). Results go
to ``benchmarks/results/vi-energies[-full].json``; a run replaces the entries of the
same model and seed and keeps the others, and every entry keeps the command that
produced it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from provenance import commit, machine

from flowlib import Compose, DiagonalGaussian, Flow
from flowlib.bijections import InverseAutoregressive, Planar
from flowlib.vi import ENERGY_TARGETS, estimate_log_normalizer, fit_reverse_kl

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def planar(layers: int) -> Callable[[int], Flow]:
    def build(seed: int) -> Flow:
        generator = torch.Generator().manual_seed(seed)
        return Flow(DiagonalGaussian(2), Compose(*[Planar(2, generator=generator) for _ in range(layers)]))

    return build


def iaf(seed: int) -> Flow:
    orders = ("natural", "reversed")
    return Flow(DiagonalGaussian(2), Compose(*[InverseAutoregressive(2, hidden=(6,), order=orders[k % 2])
                                                for k in range(6)]))


MODELS: dict[str, Callable[[int], Flow]] = {"planar2": planar(2), "planar8": planar(8), "planar32": planar(32),
                                              "iaf": iaf}


def run(model: str, seed: int, full: bool) -> list[dict[str, object]]:
    steps, lr = (3000, 0.01) if full else (300, 0.03)
    rows = []
    for name, target in ENERGY_TARGETS.items():
        log_z = target.log_normalizer(n=1200)
        torch.manual_seed(seed)
        q = MODELS[model](seed)
        cpu = time.process_time()
        fit_reverse_kl(q, target.log_prob, steps, num_samples=256, lr=lr, anneal_steps=steps // 2)
        cpu = time.process_time() - cpu
        torch.manual_seed(100 + seed)
        estimate = estimate_log_normalizer(q, target.log_prob, num_samples=20_000)
        rows.append({
            "model": model,
            "target": name,
            "seed": seed,
            "parameters": sum(p.numel() for p in q.parameters()),
            "log_z_grid": round(log_z, 5),
            "elbo_gap": round(log_z - estimate.elbo, 4),
            "iw_error": round(estimate.log_z - log_z, 4),
            "iw_std_error": round(estimate.log_z_std_error, 4),
            "ess_fraction": round(estimate.ess / estimate.num_samples, 4),
            "train_cpu_seconds": round(cpu, 2),
        })
    return rows


def summarize(runs: list[dict[str, object]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per target and model: the mean, smallest and largest ELBO gap and |IW error| over the seeds."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for target in ENERGY_TARGETS:
        for model in MODELS:
            mine = [r for r in runs if r["target"] == target and r["model"] == model]
            if not mine:
                continue
            gaps = [float(r["elbo_gap"]) for r in mine]
            errors = [abs(float(r["iw_error"])) for r in mine]
            out.setdefault(target, {})[model] = {
                "seeds": len(mine),
                "elbo_gap_mean": round(statistics.mean(gaps), 4),
                "elbo_gap_min": min(gaps),
                "elbo_gap_max": max(gaps),
                "abs_iw_error_max": max(errors),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    parser.add_argument("--full", action="store_true", help="FLOWLIB_FULL's budget: 3000 steps, lr 0.01")
    parser.add_argument("--out", type=Path, default=None, help="results file (default results/vi-energies[-full].json)")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    unknown = set(models) - set(MODELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {list(MODELS)}")
    torch.set_num_threads(1)
    path = args.out or RESULTS / f"vi-energies{'-full' if args.full else ''}.json"
    stored = json.loads(path.read_text()) if path.exists() else {"runs": []}
    command = " ".join(["benchmarks/vi_energies.py", *(argv if argv is not None else sys.argv[1:])])
    for seed in args.seeds:
        for model in models:
            rows = run(model, seed, args.full)
            for row in rows:
                row["command"] = f".venv/bin/python {command}"
                row["date"] = datetime.date.today().isoformat()
                row["commit"] = commit()
                print(f"{row['target']} {model:9s} seed {seed}: gap {row['elbo_gap']:.3f}, IW error "
                      f"{row['iw_error']:+.3f} +- {row['iw_std_error']:.3f}, ESS {row['ess_fraction']:.2f}, "
                      f"{row['train_cpu_seconds']:.1f} s CPU", flush=True)
            stored["runs"] = [r for r in stored["runs"] if (r["model"], r["seed"]) != (model, seed)] + rows
            stored["runs"].sort(key=lambda r: (list(ENERGY_TARGETS).index(r["target"]), list(MODELS).index(r["model"]),
                                               r["seed"]))
            stored["protocol"] = __doc__.split("\n\n")[2].replace("\n", " ")
            stored["budget"] = "3000 steps, lr 0.01" if args.full else "300 steps, lr 0.03"
            stored["machine"] = machine(1)
            stored["summary"] = summarize(stored["runs"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=1) + "\n")
    for target, row in stored["summary"].items():
        print(target, ", ".join(f"{m} gap {v['elbo_gap_mean']:.3f} [{v['elbo_gap_min']:.3f}, {v['elbo_gap_max']:.3f}]"
                                for m, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
