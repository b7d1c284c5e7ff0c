"""``python -m flowlib train``: train, checkpoint, resume, and write model, history, metrics and samples.

The run's folder (``--out``) receives ``model.pt`` (:mod:`flowlib.cli.models`),
``history.json``, ``metrics.json``, ``samples.png`` and, with
``--checkpoint-every``, ``last.pt``: the Trainer's checkpoint, which also
holds the run's options and a fingerprint of its data, so that ``--resume``
refuses to continue a different run.

Example:
    >>> import argparse
    >>> args = argparse.Namespace(model="realnvp", data="moons", layers=4, hidden=16, steps=300, batch_size=128,
    ...                           lr=1e-3, grad_clip=None, eval_every=50, patience=None, n_train=None,
    ...                           val_fraction=None, test_fraction=None, levels=None, seed=0)
    >>> differences({**run_options(args), "hidden": 32}, run_options(args))
    ['--hidden 32 in last.pt, 16 now']
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .. import data as datasets
from ..core import Flow
from ..train import Trainer
from ..train.checkpoint import atomic_write_text, read_checkpoint, remove_stale_temporaries
from ..train.distributed import process_info
from .datasets import PreparedData, pixel_standardization, prepare_training_data
from .models import Standardization, build_model, save_run

__all__ = ["train_command", "run_options", "differences", "RESUME_OPTIONS"]

RESUME_OPTIONS = (
    "model", "data", "layers", "hidden", "steps", "batch_size", "lr", "grad_clip", "eval_every", "patience",
    "n_train", "val_fraction", "test_fraction", "levels", "seed",
)  # fmt: skip
"""The options a resumed run must share with the interrupted one (``--data`` only for a built-in set: a
file is compared by its content). ``--device``, ``--mixed-precision``, ``--progress`` and
``--checkpoint-every`` may change."""


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``args`` that decide the run's result (:data:`RESUME_OPTIONS`)."""
    return {name: getattr(args, name) for name in RESUME_OPTIONS}


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``['--hidden 32 in last.pt, 16 now', ...]`` for every option that differs."""
    def shown(value: Any) -> str:
        return "not given" if value is None else str(value)

    return [
        f"--{name.replace('_', '-')} {shown(saved.get(name))} in last.pt, {shown(now.get(name))} now"
        for name in RESUME_OPTIONS
        if saved.get(name) != now.get(name)
    ]


def _check_positive(args: argparse.Namespace) -> None:
    for name in ("steps", "batch_size", "eval_every", "hidden", "checkpoint_every", "layers", "patience", "levels"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")


def _checkpoint_to_resume(path: Path, options: dict[str, Any], prepared: PreparedData) -> dict[str, Any]:
    """Read ``last.pt`` and check that it belongs to this run; return its metadata."""
    if not path.is_file():
        raise ValueError(
            f"cannot --resume: there is no checkpoint {path} (a run writes it with --checkpoint-every N); start the "
            "run without --resume"
        )
    state = read_checkpoint(path, torch.device("cpu"))
    metadata = state.get("metadata") or {}
    if "options" not in metadata or state.get("fit") is None:
        raise ValueError(f"cannot --resume: {path} was not written by 'python -m flowlib train --checkpoint-every'")
    metadata = {**metadata, "finished": bool(state["fit"]["finished"])}
    saved = dict(metadata["options"])
    if not prepared.built_in:  # a file may move: its content decides
        saved["data"] = options["data"]
    found = differences(saved, options)
    if metadata.get("fingerprint") != prepared.fingerprint:
        found.append("the data differ from those of the interrupted run (same options, different content)")
    if found:
        raise ValueError(
            f"cannot --resume: {path} was written for a different run: " + "; ".join(found) + ". Give the same "
            "options as the interrupted run, or train from the start in a new --out folder (or without --resume)"
        )
    return metadata


def _model_config(args: argparse.Namespace, prepared: PreparedData) -> dict[str, Any]:
    return {
        "model": args.model, "layers": args.layers, "hidden": args.hidden, "data": str(args.data),
        "event_shape": list(prepared.event_shape), "levels": prepared.levels, "seed": args.seed,
    }  # fmt: skip


def _metrics(args: argparse.Namespace, trainer: Trainer, prepared: PreparedData, test_nll: float,
             seconds: float) -> dict[str, Any]:
    flow = trainer.flow
    metrics: dict[str, Any] = {
        "model": args.model,
        "data": str(args.data),
        "steps": trainer.step,
        "device": str(trainer.device),
        "processes": trainer.world_size,
        "parameters": sum(p.numel() for p in flow.parameters()),
        "best_val_nll": trainer.best_val_loss,
        "best_step": trainer.best_step,
        "test_nll": test_nll,
        "train_seconds": round(seconds, 2),
    }
    if prepared.is_images:
        dims = math.prod(prepared.event_shape)
        levels = prepared.levels or 1
        metrics["test_bits_per_dim"] = float(datasets.bits_per_dim(test_nll, dims, levels=levels))
        if prepared.levels is not None:
            metrics["units"] = f"NLL in nats per image of the dequantized pixels v = (x + u) / {prepared.levels}"
        else:
            metrics["units"] = "NLL in nats per image of the pixels in [0, 1); bits/dim without a dequantization term"
    else:
        assert prepared.standardization is not None
        metrics["test_nll_original"] = test_nll - prepared.standardization.logabsdet
        metrics["units"] = (
            "NLL in nats per sample of the standardized data; test_nll_original: per sample of the data in its "
            "own units"
        )
    return metrics


def _tile(images: torch.Tensor, columns: int = 8) -> Any:
    """``(n, C, H, W)`` in [0, 1] -> one ``(rows*(H+1)-1, columns*(W+1)-1[, 3])`` array for ``imshow``."""
    n, c, h, w = images.shape
    images = images[:, :3] if c >= 3 else images[:, :1]
    rows = -(-n // columns)
    grid = torch.zeros(images.shape[1], rows * (h + 1) - 1, columns * (w + 1) - 1)
    for index in range(n):
        top, left = (index // columns) * (h + 1), (index % columns) * (w + 1)
        grid[:, top : top + h, left : left + w] = images[index]
    return grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy()


def _save_samples(flow: Flow, prepared: PreparedData, path: Path, data_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flow = flow.to("cpu").eval()
    torch.manual_seed(0)
    with torch.no_grad():
        if prepared.is_images:
            fig, ax = plt.subplots(figsize=(5, 5))
            grid = _tile(flow.sample(64).clamp(0, 1))
            ax.imshow(grid, cmap="gray_r" if grid.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title("64 samples")
            ax.axis("off")
        else:
            samples, data = flow.sample(5000), prepared.test
            fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), sharex=True, sharey=True)
            for ax, points, title in ((axes[0], data, "test data"), (axes[1], samples, "samples")):
                ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=1, alpha=0.4)
                ax.set_title(f"{title} (standardized{'' if prepared.built_in else ', features 1 and 2'})")
                ax.set_aspect("equal")
            axes[0].set_xlim(-3, 3)
            axes[0].set_ylim(-3, 3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _build(args: argparse.Namespace, prepared: PreparedData) -> Flow:
    standardize = None
    if args.model == "maf" and prepared.is_images and not prepared.built_in:
        standardize = pixel_standardization(prepared, args.seed)
    torch.manual_seed(args.seed)
    return build_model(args.model, args.layers, args.hidden, str(args.data), seed=args.seed,
                       event_shape=prepared.event_shape, standardize=standardize)


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``python -m flowlib train``; return the metrics it writes."""
    _check_positive(args)
    prepared = prepare_training_data(args)
    flow = _build(args, prepared)
    options = run_options(args)
    checkpoint = args.out / "last.pt"
    main_process = process_info().rank == 0
    every, saved = args.checkpoint_every, None
    if args.resume:
        saved = _checkpoint_to_resume(checkpoint, options, prepared)
        every = every or saved.get("checkpoint_every")
    if main_process:
        for name in ("model.pt", "history.json", "metrics.json"):  # left by a kill while writing the outputs
            remove_stale_temporaries(args.out / name)
        if not args.resume and checkpoint.exists():
            print(f"note: {checkpoint} from an earlier run is replaced: this run starts at step 0 (to continue that "
                  "run, give its command with --resume)", file=sys.stderr)
            checkpoint.unlink()
    mixed = {"auto": "auto", "on": True, "off": False}[args.mixed_precision]
    trainer = Trainer(
        flow, lr=args.lr, batch_size=args.batch_size, grad_clip=args.grad_clip, eval_every=args.eval_every,
        patience=args.patience, device=args.device, mixed_precision=mixed, seed=args.seed, progress=args.progress,
        checkpoint_dir=args.out if every else None, checkpoint_every=every, save_best=False,
        metadata={"options": options, "fingerprint": prepared.fingerprint, "checkpoint_every": every},
    )  # fmt: skip
    if saved is not None:
        trainer.load_checkpoint(checkpoint)
        if trainer.is_main_process:
            status = (f"the run had finished at step {trainer.step}: nothing left to train, writing its outputs again"
                      if saved["finished"] else f"resuming at step {trainer.step} of {args.steps}")
            print(f"{checkpoint}: {status}", file=sys.stderr)
    start = time.perf_counter()
    trainer.fit(prepared.train, val=prepared.val, steps=args.steps, train_transform=prepared.transform,
                resume=args.resume)
    seconds = time.perf_counter() - start
    test_nll = trainer.evaluate(prepared.test)
    metrics = _metrics(args, trainer, prepared, test_nll, seconds)
    if trainer.is_main_process:
        _write_outputs(args, trainer, prepared, metrics)
    return metrics


def _write_outputs(args: argparse.Namespace, trainer: Trainer, prepared: PreparedData, metrics: dict[str, Any]) -> None:
    import json

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    save_run(out / "model.pt", _model_config(args, prepared), trainer.flow, prepared.standardization, prepared.levels)
    atomic_write_text(out / "history.json", json.dumps(trainer.history, indent=1) + "\n")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    _save_samples(trainer.flow, prepared, out / "samples.png", str(args.data))
    test_nll = metrics["test_nll"]
    summary = f"test NLL {test_nll:.4f}"
    if "test_bits_per_dim" in metrics:
        summary += f" ({metrics['test_bits_per_dim']:.3f} bits/dim)"
    if not prepared.built_in and "test_nll_original" in metrics:
        summary += f" ({metrics['test_nll_original']:.4f} nats per sample in the data's own units)"
    print(f"{args.model} on {args.data}: {trainer.step} steps in {metrics['train_seconds']:.1f} s on {trainer.device}; "
          f"best val NLL {trainer.best_val_loss:.4f} at step {trainer.best_step}; {summary}")
    written = "model.pt, history.json, metrics.json, samples.png" + (", last.pt" if trainer.checkpoint_every else "")
    print(f"wrote {out}/{written}")
