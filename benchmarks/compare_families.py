"""The appendix's comparison of flow families, repeated over seeds: how much of its table is noise.

    .venv/bin/python benchmarks/compare_families.py                   # the appendix's CPU budget, seeds 0 1 2
    .venv/bin/python benchmarks/compare_families.py --data moons --seeds 3 4
    .venv/bin/python benchmarks/compare_families.py --full --seeds 0  # FLOWLIB_FULL's budget

Each seed runs exactly what the appendix runs (``flowlib.compare``: the data of
``moons_data()`` and ``digits_data()``, the models of ``moons_contenders()`` and
``digits_contenders()``, the budget of ``appendix_budget(data, full)``), with
``seed`` in place of the appendix's 0: it seeds the models' initialization
and the batch order; the data and the test noise stay fixed. Seed 0 is the
appendix's own run. One torch thread, on the CPU.

Each run records, per model, the test NLL (nats per sample of what the
models see), bits/dim for the digits, parameters, steps, best step, and the
three times (ms per training step, log_prob of 1,000 points, 1,000 samples).
Results go to ``benchmarks/results/compare-families[-full].json``; a run
replaces the entries of the same data set and seed and keeps the others, and
every entry keeps the command that produced it. The summary gives, per data
set and model, the mean and standard deviation of the test NLL (bits/dim for
the digits) over the seeds, and in how many seeds each model was the best of
its data set.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

import torch
from provenance import commit, machine

from flowlib.compare import (
    appendix_budget,
    compare_flows,
    digits_contenders,
    digits_data,
    moons_contenders,
    moons_data,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def run(data_name: str, seed: int, full: bool) -> list[dict[str, object]]:
    data = moons_data() if data_name == "moons" else digits_data()
    contenders = moons_contenders() if data_name == "moons" else digits_contenders(data.standardize)
    rows = compare_flows(
        contenders, data.train, data.test, val=data.val, train_transform=data.train_transform, levels=data.levels,
        seed=seed, **appendix_budget(data_name, full),
    )  # fmt: skip
    return [
        {
            "data": data_name,
            "seed": seed,
            "model": row.name,
            "parameters": row.parameters,
            "steps": row.steps,
            "best_step": row.best_step,
            "test_nll": round(row.test_nll, 5),
            "test_bpd": None if row.bits_per_dim is None else round(row.bits_per_dim, 5),
            "ms_per_step": round(1e3 * row.step_seconds, 2),
            "log_prob_1000_ms": round(1e3 * row.density_seconds, 2),
            "sample_1000_ms": round(1e3 * row.sampling_seconds, 2),
            "references": {name: round(value, 5) for name, value in data.references.items()},
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
        for row in rows
    ]


def summarize(runs: list[dict[str, object]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per data set and model: mean and sd of the test score over seeds, and how often it was the best."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for data_name in ("moons", "digits"):
        mine = [r for r in runs if r["data"] == data_name]
        if not mine:
            continue
        key = "test_bpd" if data_name == "digits" else "test_nll"
        seeds = sorted({int(r["seed"]) for r in mine})
        best = {seed: min((r for r in mine if r["seed"] == seed), key=lambda r: float(r[key]))["model"] for seed in seeds}
        out[data_name] = {}
        for model in dict.fromkeys(r["model"] for r in mine):
            scores = [float(r[key]) for r in mine if r["model"] == model]
            out[data_name][model] = {
                "seeds": len(scores),
                f"{key}_mean": round(statistics.mean(scores), 5),
                f"{key}_sd": round(statistics.stdev(scores), 5) if len(scores) > 1 else 0.0,
                f"{key}_min": round(min(scores), 5),
                f"{key}_max": round(max(scores), 5),
                "best_in_seeds": sum(1 for seed in seeds if best[seed] == model),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["moons", "digits", "both"], default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run")
    parser.add_argument("--full", action="store_true", help="FLOWLIB_FULL's budget (appendix_budget(data, True))")
    parser.add_argument("--out", type=Path, default=None, help="results file (default results/compare-families[-full].json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    path = args.out or RESULTS / f"compare-families{'-full' if args.full else ''}.json"
    stored = json.loads(path.read_text()) if path.exists() else {"runs": []}
    command = " ".join(["benchmarks/compare_families.py", *(argv if argv is not None else sys.argv[1:])])
    names = ["moons", "digits"] if args.data == "both" else [args.data]
    for seed in args.seeds:
        for data_name in names:
            results = run(data_name, seed, args.full)
            for result in results:
                result["command"] = f".venv/bin/python {command}"
                result["date"] = datetime.date.today().isoformat()
                result["commit"] = commit()
                score = f"{result['test_bpd']:.4f} bits/dim" if result["test_bpd"] is not None else \
                    f"{result['test_nll']:.4f} nats"
                print(f"{data_name:6s} seed {seed} {result['model']:20s} {score}, {result['ms_per_step']:.1f} ms/step",
                      flush=True)
            stored["runs"] = [r for r in stored["runs"] if (r["data"], r["seed"]) != (data_name, seed)] + results
            stored["runs"].sort(key=lambda r: (r["data"] != "moons", r["seed"]))
            stored["protocol"] = __doc__.split("\n\n")[2].replace("\n", " ")
            stored["budgets"] = {name: appendix_budget(name, args.full) for name in ("moons", "digits")}
            stored["machine"] = machine(1)
            stored["summary"] = summarize(stored["runs"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=1) + "\n")
    for data_name, models in stored["summary"].items():
        for model, row in models.items():
            key = "test_bpd" if data_name == "digits" else "test_nll"
            print(f"{data_name:6s} {model:20s} {row['seeds']} seeds: {row[key + '_mean']:.4f} +- {row[key + '_sd']:.4f}"
                  f" (best in {row['best_in_seeds']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
