"""Chapter 8's three digits VAEs over several seeds: diagonal Gaussian posterior, IAF posterior, MAF prior.

    .venv/bin/python benchmarks/vi_digits_vae.py                      # chapter 8's CPU budget, every arm, seeds 0-4
    .venv/bin/python benchmarks/vi_digits_vae.py --arms gaussian,iaf --seeds 0
    .venv/bin/python benchmarks/vi_digits_vae.py --full               # FLOWLIB_FULL's budget

The protocol is chapter 8's: ``flowlib.data.digits`` train / val / test (1,257 / 270 / 270),
the integer pixels as they are (the decoder is a categorical distribution over the 17
levels of each pixel, so nothing is dequantized); ``torch.manual_seed(seed)`` right
before the model is built with ``flowlib.vi.digits_vae(latent=8, hidden=(128,), ...)``;
``Trainer(lr=3e-3, batch_size=128, eval_every=50, patience=4, seed=seed, device="cpu",
mixed_precision=False)`` for at most 600 steps, the validation loss being the one-sample
negative ELBO of the validation images, best validation weights restored; one torch
thread. ``--full``: at most 3,000 steps with ``eval_every=100`` and ``patience=6``.
After training, ``torch.manual_seed(1000 + seed)`` and S = 1000 posterior samples per
test image: their mean log-weight is the test ELBO, their log-mean-exp the importance-
weighted estimate of log p(x) (IWAE, S = 1000 samples); both in nats per image and in
bits per pixel, -log p / (64 ln 2), which is the bits/dim of the discrete images. The
first 200 of the samples are those of the chapter's S = 200, which is recorded too.
Seed 0 of an arm is the exact run the chapter makes (on the CPU budget).

Each run records the parameters, the steps, the best step, the test ELBO and the
importance-weighted log-likelihood (nats and bits/dim), their difference (the gap,
an estimate of the mean KL from q(z|x) to the true posterior), and the training time
(CPU seconds of this process, and wall seconds). Results go to
``benchmarks/results/vi-digits-vae[-full].json``; a run replaces the entry of the
same arm and seed and keeps the others, and every entry keeps the command that
produced it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from provenance import commit, machine

from flowlib import data as datasets
from flowlib.train import Trainer
from flowlib.vi import digits_vae, log_mean_exp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

COMMON = {"latent": 8, "hidden": (128,)}
ARMS: dict[str, tuple[str, dict[str, object]]] = {
    "gaussian": ("diagonal Gaussian posterior, N(0, I) prior", {}),
    "iaf": ("IAF posterior: 4 layers, MADEs (64, 64), context 16; N(0, I) prior",
            {"posterior_layers": 4, "posterior_hidden": (64, 64), "context_features": 16}),
    "maf": ("diagonal Gaussian posterior; MAF prior: 4 layers, MADEs (64, 64)",
            {"prior": "maf", "prior_layers": 4, "prior_hidden": (64, 64)}),
}
IW_SAMPLES = 1000


def _data() -> dict[str, torch.Tensor]:
    return {split: datasets.digits(split)[0] for split in ("train", "val", "test")}


def _bpd(log_p: float) -> float:
    return -log_p / (64 * math.log(2))


def run(arm: str, seed: int, full: bool, data: dict[str, torch.Tensor]) -> dict[str, object]:
    steps, every, patience = (3000, 100, 6) if full else (600, 50, 4)
    torch.manual_seed(seed)
    vae = digits_vae(**COMMON, **ARMS[arm][1])
    trainer = Trainer(vae, lr=3e-3, batch_size=128, eval_every=every, patience=patience, device="cpu",
                      mixed_precision=False, seed=seed)
    cpu, wall = time.process_time(), time.perf_counter()
    trainer.fit(data["train"], val=data["val"], steps=steps)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    torch.manual_seed(1000 + seed)
    with torch.no_grad():
        log_w = torch.cat([vae.log_weights(data["test"], 50) for _ in range(IW_SAMPLES // 50)]).double()
    test_elbo = log_w.mean().item()
    test_iw = log_mean_exp(log_w).mean().item()
    test_iw_200 = log_mean_exp(log_w[:200]).mean().item()  # the chapter's S = 200: the same first draws
    return {
        "arm": arm,
        "seed": seed,
        "model": ARMS[arm][0],
        "parameters": sum(p.numel() for p in vae.parameters()),
        "steps": trainer.step,
        "best_step": trainer.best_step,
        "test_elbo": round(test_elbo, 4),
        "test_elbo_bpd": round(_bpd(test_elbo), 5),
        "test_iw_log_likelihood": round(test_iw, 4),
        "test_iw_bpd": round(_bpd(test_iw), 5),
        "gap": round(test_iw - test_elbo, 4),
        "test_iw_log_likelihood_s200": round(test_iw_200, 4),
        "test_elbo_s200": round(log_w[:200].mean().item(), 4),
        "val_curve": [[entry["step"], round(entry["val_loss"], 3)] for entry in trainer.history],
        "train_cpu_seconds": round(cpu, 2),
        "train_wall_seconds": round(wall, 2),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """Per arm: mean and standard deviation over seeds of the test ELBO, IW log-likelihood and gap; and
    per seed, the differences to the Gaussian arm of the same seed (paired)."""
    out: dict[str, dict[str, float]] = {}
    baseline = {r["seed"]: r for r in runs if r["arm"] == "gaussian"}
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        row: dict[str, float] = {"seeds": len(mine), "parameters": int(mine[0]["parameters"])}
        for key in ("test_elbo", "test_iw_log_likelihood", "gap", "test_iw_bpd", "test_iw_log_likelihood_s200",
                    "train_cpu_seconds"):
            mean, sd = _mean_sd([float(r[key]) for r in mine])
            row[f"{key}_mean"], row[f"{key}_sd"] = round(mean, 4), round(sd, 4)
        paired = [r for r in mine if r["seed"] in baseline]
        if arm != "gaussian" and paired:
            for key in ("test_elbo", "test_iw_log_likelihood", "gap", "test_iw_log_likelihood_s200"):
                diffs = [float(r[key]) - float(baseline[r["seed"]][key]) for r in paired]
                mean, sd = _mean_sd(diffs)
                row[f"{key}_minus_gaussian_mean"], row[f"{key}_minus_gaussian_sd"] = round(mean, 4), round(sd, 4)
        out[arm] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {','.join(ARMS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds to run")
    parser.add_argument("--full", action="store_true", help="FLOWLIB_FULL's budget: 3000 steps, patience 6")
    parser.add_argument("--out", type=Path, default=None, help="results file (default results/vi-digits-vae[-full].json)")
    args = parser.parse_args(argv)
    arms = args.arms.split(",")
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; choose from {list(ARMS)}")
    torch.set_num_threads(1)
    path = args.out or RESULTS / f"vi-digits-vae{'-full' if args.full else ''}.json"
    stored = json.loads(path.read_text()) if path.exists() else {"runs": []}
    command = " ".join(["benchmarks/vi_digits_vae.py", *(argv if argv is not None else sys.argv[1:])])
    data = _data()
    for seed in args.seeds:
        for arm in arms:
            result = run(arm, seed, args.full, data)
            result["command"] = f".venv/bin/python {command}"
            result["date"] = datetime.date.today().isoformat()
            result["commit"] = commit()
            print(f"{arm:9s} seed {seed}: ELBO {result['test_elbo']:.2f}, IW {result['test_iw_log_likelihood']:.2f} "
                  f"({result['test_iw_bpd']:.4f} bits/dim), gap {result['gap']:.2f}, best step {result['best_step']}, "
                  f"{result['train_cpu_seconds']:.1f} s CPU", flush=True)
            stored["runs"] = [r for r in stored["runs"] if (r["arm"], r["seed"]) != (arm, seed)] + [result]
            stored["runs"].sort(key=lambda r: (list(ARMS).index(r["arm"]), r["seed"]))
            stored["protocol"] = __doc__.split("\n\n")[2].replace("\n", " ")
            stored["budget"] = "3000 steps, eval every 100, patience 6" if args.full else \
                "600 steps, eval every 50, patience 4"
            stored["machine"] = machine(1)
            stored["summary"] = summarize(stored["runs"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=1) + "\n")
    for arm, row in stored["summary"].items():
        extra = ""
        if "test_iw_log_likelihood_minus_gaussian_mean" in row:
            extra = (f"; minus Gaussian: ELBO {row['test_elbo_minus_gaussian_mean']:+.2f} "
                     f"+- {row['test_elbo_minus_gaussian_sd']:.2f}, IW {row['test_iw_log_likelihood_minus_gaussian_mean']:+.2f} "
                     f"+- {row['test_iw_log_likelihood_minus_gaussian_sd']:.2f}")
        print(f"{arm:9s} {row['seeds']} seeds: ELBO {row['test_elbo_mean']:.2f} +- {row['test_elbo_sd']:.2f}, "
              f"IW {row['test_iw_log_likelihood_mean']:.2f} +- {row['test_iw_log_likelihood_sd']:.2f}, "
              f"gap {row['gap_mean']:.2f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
