"""Task B's likelihood gap: does the affine transformer's scale parameterization decide the best bits/dim?

The race (``race.py --task B --seeds 0 1 2``) finds flowlib's protocol MAF at a
median best test of 2.482 bits/dim, peaking at step 300 in every seed, while
nflows reaches 2.457, peaking at 500-600 steps. The two differ, inside the
protocol, in how the MADE's raw output ``r`` becomes the scale of
``z = x * scale + shift`` (data to noise):

* flowlib: ``scale = exp(r / (1 + |r| / B))``, ``B = 5`` (a soft bound on the log-scale);
* nflows: ``scale = softplus(r) + 1e-3``.

This script trains the race's task-B model (same data, batches, seeds, PyTorch's
default initialization of the last layers, Adam 1e-3, batch 256, 3000 steps,
test bits/dim every 100 steps) with several transformers in flowlib's
``MaskedAutoregressive`` and reports each one's best test bits/dim per seed and
the median. Nothing here changes flowlib: the variants are passed as the
``transform`` of each layer. It is an experiment for benchmarks/README.md, not
part of the race.

    benchmarks/.venv/bin/python benchmarks/maf_scale_sweep.py --seeds 0 1 2 --threads 1
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
from torch import Tensor
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import race  # noqa: E402  (the race's data, batches and model, so that the runs are the race's)

from provenance import machine  # noqa: E402

from flowlib.bijections import MaskedAutoregressive  # noqa: E402
from flowlib.bijections.scalar import AffineTransform, ScalarTransform  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


class SoftplusAffine(ScalarTransform):
    """``z = x * (softplus(r) + eps) + t``: nflows' MAF scale, as a flowlib scalar transformer."""

    num_params = 2

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = eps

    def _log_scale(self, raw: Tensor) -> Tensor:
        return torch.log(functional.softplus(raw) + self.eps)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self._log_scale(params[..., 1])
        return x * torch.exp(log_scale) + params[..., 0], log_scale

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self._log_scale(params[..., 1])
        return (y - params[..., 0]) * torch.exp(-log_scale), -log_scale

    def __repr__(self) -> str:
        return f"SoftplusAffine(eps={self.eps})"


VARIANTS: dict[str, Callable[[], ScalarTransform]] = {
    "exp(soft bound 5) (flowlib's default)": lambda: AffineTransform(bound=5.0),
    "exp(soft bound 2)": lambda: AffineTransform(bound=2.0),
    "exp(soft bound 1)": lambda: AffineTransform(bound=1.0),
    "softplus + 1e-3 (nflows')": SoftplusAffine,
}


def build(variant: str) -> torch.nn.Module:
    """The race's flowlib MAF (PyTorch's default init of the last layers) with another transformer."""
    flow, _, _, _ = race.build_flowlib_maf(default_init=True)
    for layer in flow.modules():
        if isinstance(layer, MaskedAutoregressive):
            layer.transform = VARIANTS[variant]()
            layer._affine = type(layer.transform) is AffineTransform  # flowlib's fused path for its own affine
    return flow


def run(variant: str, seed: int, steps: int) -> dict:
    data = race.digits_data(seed)
    batches = race.digits_batches(data, steps, seed)
    torch.manual_seed(seed)
    flow = build(variant)
    train_window = race.loop_trainer(flow, lambda x: -flow.log_prob(x).mean())
    curve: list[tuple[int, float]] = []
    start = time.perf_counter()
    for r in range(steps // race.WINDOW):
        train_window(batches(r))
        with torch.no_grad():
            flow.eval()
            nll = float(-flow.log_prob(data.test).double().mean())
            flow.train()
        curve.append(((r + 1) * race.WINDOW, data.bits_per_dim(nll)))
    best_step, best = min(curve, key=lambda point: point[1])
    return {
        "variant": variant, "seed": seed, "best_bpd": round(best, 4), "best_step": best_step,
        "final_bpd": round(curve[-1][1], 4), "seconds": round(time.perf_counter() - start, 1),
        "curve": [[s, round(v, 4)] for s, v in curve],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", default=None, help="comma-separated indices into the list (default: all)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "maf-scale-sweep.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = list(VARIANTS)
    chosen = [names[int(i)] for i in args.variants.split(",")] if args.variants else names
    stored = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    for variant in chosen:
        for seed in args.seeds:
            result = run(variant, seed, args.steps)
            print(f"{variant:40s} seed {seed}: best {result['best_bpd']:.3f} bits/dim at step "
                  f"{result['best_step']}, final {result['final_bpd']:.3f} ({result['seconds']:.0f} s)", flush=True)
            stored["runs"] = [r for r in stored["runs"] if (r["variant"], r["seed"]) != (variant, seed)] + [result]
    stored["runs"].sort(key=lambda r: (names.index(r["variant"]), r["seed"]))
    stored["command"] = "benchmarks/.venv/bin/python benchmarks/maf_scale_sweep.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    stored["date"] = datetime.date.today().isoformat()
    stored["commit"] = race.flowlib_commit()
    stored["machine"] = machine(args.threads)
    summary = {}
    for variant in names:
        mine = [r for r in stored["runs"] if r["variant"] == variant]
        if mine:
            summary[variant] = {
                "seeds": [r["seed"] for r in mine],
                "median_best_bpd": round(statistics.median(r["best_bpd"] for r in mine), 4),
                "best_steps": [r["best_step"] for r in mine],
            }
    stored["summary"] = summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stored, indent=1) + "\n")
    for variant, row in summary.items():
        print(f"{variant:40s} median best {row['median_best_bpd']:.3f} bits/dim over seeds {row['seeds']}, "
              f"best steps {row['best_steps']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
