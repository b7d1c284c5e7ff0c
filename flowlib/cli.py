"""The command line: train the book's models without opening a notebook.

    python -m flowlib train realnvp --data moons --steps 2000 --device auto --out run/
    python -m flowlib train multiscale --data digits --steps 3000 --out run-digits/
    python -m flowlib list

``train`` writes into ``--out``: ``model.pt`` (the best weights as a plain
state dict, with the model's configuration; load it with
:func:`load_model`), ``history.json`` (one entry per evaluation),
``metrics.json`` (best validation and test NLL, bits/dim for digits,
parameter count, wall time) and ``samples.png`` (samples next to the data).
The same script runs on several GPUs with
``torchrun --nproc_per_node=N -m flowlib train ...`` (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import data as datasets
from .core import Flow
from .models import multiscale_realnvp, nice, realnvp, spline_flow
from .train import Trainer

__all__ = ["main", "build_model", "load_model", "train_command", "MODELS", "IMAGE_MODELS"]

MODELS = {
    "realnvp": "RealNVP: affine couplings with alternating halves (2-D toy data)",
    "spline": "neural spline flow: rational-quadratic spline couplings (2-D toy data)",
    "nice": "NICE: additive couplings and a final scaling layer (2-D toy data)",
    "multiscale": "multi-scale RealNVP with convolutional couplings (digits)",
}
IMAGE_MODELS = {"multiscale"}


def build_model(name: str, layers: int | None = None, hidden: int = 128, data: str = "moons") -> Flow:
    """Build a model of :data:`MODELS` by name, for ``data`` (a toy set name or ``"digits"``)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    if (name in IMAGE_MODELS) != (data == "digits"):
        raise ValueError(f"model {name!r} does not fit data {data!r}: 'multiscale' is for digits, the others for 2-D sets")
    if name == "realnvp":
        return realnvp(2, layers=layers or 8, hidden=(hidden, hidden))
    if name == "spline":
        return spline_flow(2, layers=layers or 5, hidden=(hidden, hidden))
    if name == "nice":
        return nice(2, layers=layers or 4, hidden=(hidden, hidden))
    return multiscale_realnvp((1, 8, 8), hidden_channels=hidden)


def load_model(path: str | Path) -> Flow:
    """Rebuild a model saved by ``python -m flowlib train`` and load its weights (``weights_only=True``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = state["config"]
    flow = build_model(config["model"], config["layers"], config["hidden"], config["data"])
    flow.load_state_dict(state["model"])
    return flow


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flowlib", description="Train the course's flows.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the models and data sets")
    train = commands.add_parser(
        "train",
        help="train a model and write checkpoint, history, metrics and samples",
        description="Train a flow by maximum likelihood (Adam, mini-batches, validation with early stopping).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("model", choices=sorted(MODELS), help="which model (see 'list')")
    train.add_argument("--data", default="moons", choices=sorted(datasets.TOY_DATASETS) + ["digits"],
                       help="training data: a generated 2-D set, or sklearn's 8x8 digits")
    train.add_argument("--steps", type=int, default=2000, help="number of optimizer steps")
    train.add_argument("--batch-size", type=int, default=512, help="global batch size (split across GPUs under torchrun)")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--layers", type=int, default=None, help="number of coupling layers (2-D models; default per model)")
    train.add_argument("--hidden", type=int, default=128, help="hidden width of the conditioner networks")
    train.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this value")
    train.add_argument("--eval-every", type=int, default=100, help="evaluate the validation NLL every N steps")
    train.add_argument("--patience", type=int, default=None,
                       help="stop after this many evaluations without improvement (default: never stop early)")
    train.add_argument("--n-train", type=int, default=20000, help="training samples (2-D sets)")
    train.add_argument("--device", default="auto", help="'auto' (CUDA, else MPS, else CPU), 'cpu', 'cuda', 'cuda:1', 'mps'")
    train.add_argument("--mixed-precision", choices=["auto", "on", "off"], default="auto",
                       help="bf16 autocast for the conditioners (CUDA only; 'auto' = on with CUDA)")
    train.add_argument("--seed", type=int, default=0, help="seed of the data, the initialization and the batches")
    train.add_argument("--out", type=Path, default=Path("run"), help="output folder")
    train.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser


def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Train/validation/test tensors, the batch transform and the unit conversion for ``args.data``."""
    if args.data == "digits":
        x_train, _ = datasets.digits("train", seed=args.seed)
        x_val, _ = datasets.digits("val", seed=args.seed)
        x_test, _ = datasets.digits("test", seed=args.seed)
        g = torch.Generator().manual_seed(args.seed + 1)
        return {
            "train": x_train,
            "val": datasets.dequantize(x_val, 17, g),
            "test": datasets.dequantize(x_test, 17, g),
            "transform": lambda x, generator: datasets.dequantize(x, 17, generator),
            "scaler": None,
        }
    if args.n_train < 2:
        raise ValueError(f"--n-train must be at least 2, got {args.n_train}")
    scaler = datasets.Standardizer()
    train = scaler.fit_transform(datasets.toy_dataset(args.data, args.n_train, seed=args.seed))
    val = scaler.transform(datasets.toy_dataset(args.data, 5000, seed=args.seed + 1))
    test = scaler.transform(datasets.toy_dataset(args.data, 5000, seed=args.seed + 2))
    return {"train": train, "val": val, "test": test, "transform": None, "scaler": scaler}


def _save_samples(flow: Flow, prepared: dict[str, Any], path: Path, data_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flow = flow.to("cpu").eval()
    torch.manual_seed(0)
    if data_name == "digits":
        from .viz import image_grid

        fig, ax = plt.subplots(figsize=(5, 5))
        ax.imshow(image_grid(flow.sample(64).clamp(0, 1), columns=8, pad=1), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title("64 samples")
        ax.axis("off")
    else:
        samples = flow.sample(5000)
        fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), sharex=True, sharey=True)
        data = prepared["test"]
        for ax, points, title in ((axes[0], data, "test data"), (axes[1], samples, "samples")):
            ax.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=1, alpha=0.4)
            ax.set_title(f"{title} (standardized)")
            ax.set_aspect("equal")
        axes[0].set_xlim(-3, 3)
        axes[0].set_ylim(-3, 3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train_command(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``python -m flowlib train``; return the metrics it writes."""
    for name in ("steps", "batch_size", "eval_every", "hidden"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    torch.manual_seed(args.seed)
    flow = build_model(args.model, args.layers, args.hidden, args.data)
    prepared = _prepare(args)
    mixed = {"auto": "auto", "on": True, "off": False}[args.mixed_precision]
    trainer = Trainer(
        flow, lr=args.lr, batch_size=args.batch_size, grad_clip=args.grad_clip, eval_every=args.eval_every,
        patience=args.patience, device=args.device, mixed_precision=mixed, seed=args.seed, progress=args.progress,
    )
    start = time.perf_counter()
    trainer.fit(prepared["train"], val=prepared["val"], steps=args.steps, train_transform=prepared["transform"])
    seconds = time.perf_counter() - start
    test_nll = trainer.evaluate(prepared["test"])
    metrics: dict[str, Any] = {
        "model": args.model,
        "data": args.data,
        "steps": trainer.step,
        "device": str(trainer.device),
        "processes": trainer.world_size,
        "parameters": sum(p.numel() for p in flow.parameters()),
        "best_val_nll": trainer.best_val_loss,
        "best_step": trainer.best_step,
        "test_nll": test_nll,
        "train_seconds": round(seconds, 2),
    }
    if args.data == "digits":
        metrics["test_bits_per_dim"] = float(datasets.bits_per_dim(test_nll, 64, levels=17))
        metrics["units"] = "NLL in nats per image of the dequantized pixels v = (x + u) / 17"
    else:
        metrics["units"] = "NLL in nats per sample of the standardized data"
    if trainer.is_main_process:
        args.out.mkdir(parents=True, exist_ok=True)
        config = {"model": args.model, "layers": args.layers, "hidden": args.hidden, "data": args.data}
        model_state = {k: v.detach().cpu() for k, v in flow.state_dict().items()}
        torch.save({"config": config, "model": model_state}, args.out / "model.pt")
        (args.out / "history.json").write_text(json.dumps(trainer.history, indent=1))
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        _save_samples(flow, prepared, args.out / "samples.png", args.data)
        summary = f"test NLL {test_nll:.4f}"
        if "test_bits_per_dim" in metrics:
            summary += f" ({metrics['test_bits_per_dim']:.3f} bits/dim)"
        print(f"{args.model} on {args.data}: {trainer.step} steps in {seconds:.1f} s on {trainer.device}; "
              f"best val NLL {trainer.best_val_loss:.4f} at step {trainer.best_step}; {summary}")
        print(f"wrote {args.out}/model.pt, history.json, metrics.json, samples.png")
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        for name, text in MODELS.items():
            print(f"{name:12s} {text}")
        print("data sets:  " + ", ".join(sorted(datasets.TOY_DATASETS)) + ", digits")
        return 0
    try:
        train_command(args)
    except (ValueError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

