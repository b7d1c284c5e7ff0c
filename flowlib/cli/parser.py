"""The command line's options: ``python -m flowlib {list, train, sample, evaluate} --help``.

Example:
    >>> args = build_parser().parse_args(["sample", "run/", "--n", "10", "--temperature", "0.7"])
    >>> args.command, args.n, args.temperature, str(args.out)
    ('sample', 10, 0.7, 'samples.npy')
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .models import BUILT_IN_DATA, MODELS

__all__ = ["build_parser"]

EPILOG_TRAIN = """\
examples:
  python -m flowlib train realnvp --data moons --steps 2000 --out run/
  python -m flowlib train realnvp --data points.csv --batch-size 128 --checkpoint-every 100 --out run/
  python -m flowlib train realnvp --data points.csv --batch-size 128 --checkpoint-every 100 --out run/ --resume
  python -m flowlib train glow --data my_pngs/ --steps 3000 --batch-size 64 --out run-glow/

Your data: a .npy, .npz or .csv file of shape (N, D) for the vector models (realnvp, spline, nice, maf),
a folder of .png images or an .npy array (N, C, H, W) for the image models (multiscale, glow; H and W
divisible by 4) and maf. It is split into train/validation/test by --val-fraction/--test-fraction and
--seed; vectors are standardized with the training split's statistics (stored in model.pt); integer
pixels need --levels L (PNG files: 256) and are dequantized to v = (x + u) / L.

A run killed on the way (preempted job, closed laptop) continues from --out's last.pt, written every
--checkpoint-every steps: give the same command with --resume. It ends with the model and history an
uninterrupted run would have had (bit for bit on the CPU). --steps is the total of the run.
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults, except ``None`` and ``False`` (the help text says what those mean); keep the epilog's lines."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _train_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train a model and write checkpoint, history, metrics and samples",
        description="Train a flow by maximum likelihood (Adam, mini-batches, validation with early stopping).",
        epilog=EPILOG_TRAIN,
        formatter_class=_Formatter,
    )
    train.add_argument("model", choices=sorted(MODELS), help="which model (see 'list')")
    train.add_argument("--data", default="moons",
                       help=f"a built-in set ({', '.join(BUILT_IN_DATA)}) or your data: a .npy/.npz/.csv file, or a "
                            "folder of .png images (see below)")
    train.add_argument("--steps", type=int, default=2000, help="number of optimizer steps of the whole run")
    train.add_argument("--batch-size", type=int, default=512,
                       help="global batch size (split across GPUs under torchrun); at most the training split's size")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--layers", type=int, default=None,
                       help="number of coupling or autoregressive layers (vector models and maf), or of "
                            "steps per level (glow); default per model")
    train.add_argument("--hidden", type=int, default=128, help="hidden width of the conditioner networks")
    train.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this value")
    train.add_argument("--eval-every", type=int, default=100, help="evaluate the validation NLL every N steps")
    train.add_argument("--patience", type=int, default=None,
                       help="stop after this many evaluations without improvement (default: never stop early)")
    train.add_argument("--n-train", type=int, default=None,
                       help="training samples of the generated 2-D sets (default 20000)")
    train.add_argument("--val-fraction", type=float, default=None,
                       help="your data: the fraction of samples held out for validation (default 0.1)")
    train.add_argument("--test-fraction", type=float, default=None,
                       help="your data: the fraction of samples held out for the test NLL (default 0.1)")
    train.add_argument("--levels", type=int, default=None,
                       help="your images: the number of levels of integer pixels (e.g. 256 for 8-bit; PNG folders: "
                            "256), dequantized to v = (x + u) / L; float pixels must lie in [0, 1) instead")
    train.add_argument("--checkpoint-every", type=int, default=None,
                       help="write --out/last.pt every N steps (atomically), to continue a killed run with --resume")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last.pt; give the same options as the interrupted "
                            "run (checked against the configuration stored in last.pt)")
    train.add_argument("--device", default="auto",
                       help="'auto' (CUDA, else MPS, else CPU), 'cpu', 'cuda', 'cuda:1', 'mps'")
    train.add_argument("--mixed-precision", choices=["auto", "on", "off"], default="auto",
                       help="bf16 autocast for the conditioners (CUDA only; 'auto' = on with CUDA)")
    train.add_argument("--seed", type=int, default=0, help="seed of the data split, the initialization and the batches")
    train.add_argument("--out", type=Path, default=Path("run"), help="output folder")
    train.add_argument("--progress", action="store_true", help="show a progress bar")


def _sample_parser(commands: argparse._SubParsersAction) -> None:
    sample = commands.add_parser(
        "sample",
        help="draw samples from a trained model",
        description="Draw samples from a run's model.pt, in the units of the data it was trained on (vectors "
                    "un-standardized; integer pixels as integers 0..L-1, float pixels in [0, 1)).",
        formatter_class=_Formatter,
    )
    sample.add_argument("run", type=Path, help="the run folder written by 'train' (or its model.pt)")
    sample.add_argument("--n", type=int, default=1000, help="number of samples")
    sample.add_argument("--out", type=Path, default=Path("samples.npy"),
                        help="where to write them: .npy (any data) or .csv (vectors)")
    sample.add_argument("--temperature", type=float, default=1.0,
                        help="scale of the base distribution's standard deviation (below 1: smoother, more typical)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the samples")
    sample.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'")


def _evaluate_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="score data with a trained model (NLL, bits/dim for images)",
        description="The mean negative log-likelihood of data under a run's model.pt, in nats per sample of the "
                    "data in its own units (vectors: the standardization's log-determinant included), and "
                    "bits per dimension for images.",
        formatter_class=_Formatter,
    )
    evaluate.add_argument("run", type=Path, help="the run folder written by 'train' (or its model.pt)")
    evaluate.add_argument("--data", required=True,
                          help="a file or folder like those of 'train --data' (every sample is scored), or a built-in "
                               "set's name (its test split)")
    evaluate.add_argument("--json", action="store_true", help="print the result as one JSON object")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the dequantization noise of integer pixels")
    evaluate.add_argument("--batch-size", type=int, default=4096, help="samples per forward pass")
    evaluate.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m flowlib``: ``list``, ``train``, ``sample``, ``evaluate``."""
    parser = argparse.ArgumentParser(
        prog="python -m flowlib",
        description="Train the course's flows on built-in or your own data, then sample from and evaluate them.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the models and data sets")
    _train_parser(commands)
    _sample_parser(commands)
    _evaluate_parser(commands)
    return parser
