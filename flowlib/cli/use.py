r"""``python -m flowlib sample`` and ``evaluate``: use a trained run without repeating its options.

Both load the run's ``model.pt`` with ``weights_only=True`` and rebuild the
model from the configuration stored in it (:func:`~flowlib.cli.models.load_run`).

* ``sample`` draws ``--n`` samples (``Flow.sample(n, temperature=T)``, seeded)
  and writes them in the units of the training data: vectors un-standardized,
  integer pixels back to integers :math:`\lfloor vL\rfloor \in \{0..L-1\}`,
  float pixels clipped to :math:`[0, 1)`.
* ``evaluate`` scores every sample of ``--data`` (or a built-in set's test
  split): the mean NLL in nats per sample of the data in its own units (for
  vectors the model's NLL of the standardized data minus the standardization's
  log-determinant :math:`-\sum_i\log\sigma_i`), and for images bits per
  dimension.

Example:
    >>> v = torch.tensor([0.0, 0.49, 0.51, 0.999]).reshape(1, 1, 2, 2)   # one 2x2 image, 2 levels
    >>> to_data_units(v, None, levels=2).flatten().tolist()
    [0, 0, 1, 1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import data as datasets
from ..checks import check_float, check_int, check_seed
from ..core import Flow
from ..train import resolve_device
from .datasets import evaluation_data
from .models import SavedRun, Standardization, load_run

__all__ = ["sample_command", "evaluate_command", "to_data_units", "mean_nll"]

CHUNK = 4096


def to_data_units(samples: Tensor, standardization: Standardization | None, levels: int | None) -> Tensor:
    """Samples of the model (its space) in the units of the training data (see the module's docstring)."""
    if samples.dim() == 2:
        return samples if standardization is None else standardization.inverse(samples)
    if levels is None:
        return samples.clamp(0.0, float(np.nextafter(np.float32(1), np.float32(0))))
    x = torch.floor(samples.double() * levels).clamp(0, levels - 1)
    return x.to(torch.uint8 if levels <= 256 else torch.int32)


@torch.no_grad()
def mean_nll(flow: Flow, x: Tensor, batch_size: int, device: torch.device) -> float:
    """Mean negative log-likelihood of ``x`` (nats per sample), in batches, summed in float64."""
    total = 0.0
    for start in range(0, x.shape[0], batch_size):
        log_p = flow.log_prob(x[start : start + batch_size].to(device))
        total -= float(log_p.double().sum())
    return total / x.shape[0]


def _save(path: Path, samples: Tensor) -> None:
    array = samples.numpy()
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise ValueError(f"--out {path}: write samples to a .npy file (any data) or a .csv file (vectors)")
    if suffix == ".csv" and array.ndim != 2:
        raise ValueError(f"--out {path}: images of shape {array.shape[1:]} do not fit a CSV table; use .npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(path, array)
    else:
        np.savetxt(path, array, delimiter=",", fmt="%.8g")


def _units(run: SavedRun) -> str:
    if not run.is_images:
        if run.standardization is None:
            return "standardized units (this model.pt, written by an earlier flowlib, has no statistics)"
        return "the units of the training data"
    if run.levels is not None:
        return f"integer pixels 0..{run.levels - 1}"
    return "pixels in [0, 1)"


def sample_command(args: argparse.Namespace) -> Path:
    """Run ``python -m flowlib sample``; return the path written."""
    n = check_int("--n", args.n, minimum=1)
    temperature = check_float("--temperature", args.temperature, above=0.0)
    seed = check_seed("--seed", args.seed)
    run = load_run(args.run)
    device = resolve_device(args.device)
    flow = run.flow.to(device)
    torch.manual_seed(seed)
    with torch.no_grad():
        parts = [flow.sample(min(CHUNK, n - start), temperature=temperature).cpu() for start in range(0, n, CHUNK)]
    samples = torch.cat(parts)
    bad = int((~torch.isfinite(samples)).flatten(1).any(1).sum())
    if bad:
        print(f"warning: {bad} of {n} samples are not finite (NaN or Inf); try a lower --temperature", file=sys.stderr)
    samples = to_data_units(samples, run.standardization, run.levels)
    _save(args.out, samples)
    print(f"wrote {n} samples of shape {tuple(samples.shape[1:])} to {args.out} ({_units(run)}; temperature "
          f"{temperature:g}, seed {seed})")
    return args.out


def evaluate_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``python -m flowlib evaluate``; return the result it prints."""
    batch_size = check_int("--batch-size", args.batch_size, minimum=1)
    seed = check_seed("--seed", args.seed)
    run = load_run(args.run)
    x, described = evaluation_data(run, str(args.data), seed)
    device = resolve_device(args.device)
    nll = mean_nll(run.flow.to(device), x, batch_size, device)
    result: dict[str, Any] = {"model": run.config["model"], "run": str(run.path), **described}
    if run.is_images:
        dims = math.prod(run.event_shape)
        result["nll"] = nll
        result["bits_per_dim"] = float(datasets.bits_per_dim(nll, dims, levels=run.levels or 1))
        result["units"] = (
            f"nats per image of the dequantized pixels v = (x + u) / {run.levels}" if run.levels is not None
            else "nats per image of the pixels in [0, 1); bits/dim without a dequantization term"
        )
    else:
        assert run.standardization is not None
        result["nll"] = nll - run.standardization.logabsdet
        result["nll_standardized"] = nll
        result["units"] = "nats per sample of the data in its own units"
    if args.json:
        print(json.dumps(result))
    else:
        line = f"{result['model']} ({run.path}) on {result['data']}, {result['samples']} samples: "
        line += f"NLL {result['nll']:.4f} {result['units']}"
        if "bits_per_dim" in result:
            line += f"; {result['bits_per_dim']:.4f} bits/dim"
        print(line)
    return result
