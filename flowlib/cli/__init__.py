"""The command line: train the book's models on built-in or your own data, then sample and evaluate them.

    python -m flowlib list
    python -m flowlib train realnvp --data moons --steps 2000 --device auto --out run/
    python -m flowlib train multiscale --data digits --steps 3000 --out run-digits/
    python -m flowlib train glow --data digits --layers 8 --hidden 96 --steps 3000 --out run-glow/
    python -m flowlib train maf --data digits --hidden 256 --steps 3000 --batch-size 256 --out run-maf/
    python -m flowlib train realnvp --data points.csv --batch-size 128 --checkpoint-every 100 --out run/ [--resume]
    python -m flowlib sample run/ --n 1000 --out samples.npy --temperature 0.8
    python -m flowlib evaluate run/ --data new_points.csv --json

``train`` writes into ``--out``: ``model.pt`` (the best weights as a plain
state dict, with the model's configuration and the data's standardization;
load it with :func:`load_model` or :func:`~flowlib.cli.models.load_run`),
``history.json`` (one entry per evaluation), ``metrics.json`` (best validation
and test NLL, bits/dim for images, parameter count, wall time),
``samples.png`` (samples next to the data) and, with ``--checkpoint-every N``,
``last.pt`` (a checkpoint every ``N`` steps, from which ``--resume`` continues
a killed run exactly). The same command runs on several GPUs with
``torchrun --nproc_per_node=N -m flowlib train ...`` (DistributedDataParallel).

The modules: :mod:`~flowlib.cli.parser` (options), :mod:`~flowlib.cli.models`
(build, save, load), :mod:`~flowlib.cli.datasets` (built-in and your data,
guard rails), :mod:`~flowlib.cli.train`, :mod:`~flowlib.cli.use` (``sample``,
``evaluate``).

Example:
    >>> main(["evaluate", "no-such-run/", "--data", "moons"])
    2
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..data import DATA_SUFFIXES
from .models import BUILT_IN_DATA, IMAGE_MODELS, MODELS, build_model, load_model, load_run
from .parser import build_parser
from .train import train_command
from .use import evaluate_command, sample_command

__all__ = [
    "main",
    "build_model",
    "load_model",
    "load_run",
    "train_command",
    "sample_command",
    "evaluate_command",
    "build_parser",
    "MODELS",
    "IMAGE_MODELS",
]

_parser = build_parser  # the name earlier versions (and their tests) used


def _list() -> None:
    for name, text in MODELS.items():
        print(f"{name:12s} {text}")
    print("data sets:   " + ", ".join(BUILT_IN_DATA))
    print(f"your data:   a {', '.join(DATA_SUFFIXES)} file of shape (N, D) (vectors) or (N, C, H, W) "
          "(images), or a folder of .png images")


def _interrupted(args) -> int:
    checkpoint = Path(args.out) / "last.pt"
    if checkpoint.is_file():
        hint = f"continue from {checkpoint} with the same command and --resume"
    else:
        hint = "no checkpoint was written (train with --checkpoint-every N to be able to --resume)"
    print(f"\ninterrupted: {hint}", file=sys.stderr)
    return 130


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    A problem with the options or the data is printed as ``error: ...`` on
    stderr with status 2; Ctrl-C during ``train`` says how to continue (130).
    """
    args = build_parser().parse_args(argv)
    if args.command == "list":
        _list()
        return 0
    command = {"train": train_command, "sample": sample_command, "evaluate": evaluate_command}[args.command]
    try:
        command(args)
    except (ValueError, TypeError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command != "train":
            raise
        return _interrupted(args)
    return 0
