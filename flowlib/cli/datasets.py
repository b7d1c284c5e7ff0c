r"""The command line's data: the built-in sets and your own files, split, checked and preprocessed.

* Built-in 2-D sets (``moons``, ...): ``--n-train`` training samples, 5,000
  validation and 5,000 test samples, standardized with statistics of the
  training samples.
* ``digits``: sklearn's 8x8 digits, split 1,257 / 270 / 270, 17 levels.
* Your vectors (``.npy``, ``.npz``, ``.csv`` of shape ``(N, D)``): split into
  train / validation / test by ``--val-fraction`` / ``--test-fraction`` with
  ``--seed``, standardized with the training split's statistics (stored in
  ``model.pt``).
* Your images (a folder of PNGs, or an ``(N, C, H, W)`` array): the same
  split; integer pixels (``--levels L``; PNGs: 256) are dequantized to
  :math:`v = (x + u)/L`, fresh noise for every training batch and one fixed
  draw for validation and test; float pixels must lie in :math:`[0, 1)`.

Guard rails: a training split smaller than one batch and an empty validation
or test split are refused, with what to change.

Example:
    >>> problem = split_sizes_problem(n_train=3, n_val=5000, n_test=5000, batch_size=512, more_data="--n-train 512")
    >>> import textwrap
    >>> print(textwrap.fill(problem, 100))
    the training split has 3 samples, fewer than one batch (--batch-size 512): every step would see the
    same 3 samples and the model would learn them by heart (a test NLL far above the validation NLL).
    Use more training data (--n-train 512), or a --batch-size of at most 3
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import data as datasets
from ..train import BatchTransform
from .models import BUILT_IN_DATA, IMAGE_MODELS, SavedRun, Standardization

__all__ = [
    "TOY_SPLIT_SIZE",
    "DEFAULT_FRACTION",
    "PreparedData",
    "prepare_training_data",
    "evaluation_data",
    "split_sizes_problem",
    "pixel_standardization",
]

TOY_SPLIT_SIZE = 5000
"""Validation and test samples of the built-in 2-D sets."""
DEFAULT_FRACTION = 0.1
"""Default ``--val-fraction`` and ``--test-fraction`` of your own data."""
DEFAULT_N_TRAIN = 20000
PNG_LEVELS = 256


@dataclass
class PreparedData:
    """Training, validation and test data as the model sees them, and how they were made.

    Attributes:
        train: what the Trainer gets (standardized vectors, or pixels before dequantization).
        val, test: ready for the model (standardized, or dequantized once).
        transform: the per-batch dequantization of integer pixels, or ``None``.
        standardization: the vectors' standardization, or ``None``.
        levels: integer pixels were dequantized from this many levels, or ``None``.
        event_shape: ``(D,)`` or ``(C, H, W)``.
        fingerprint: SHA-256 of the three splits: a resumed run checks it is given the same data.
        built_in: a built-in set (``moons``, ..., ``digits``) rather than a file.
    """

    train: Tensor
    val: Tensor
    test: Tensor
    transform: BatchTransform | None
    standardization: Standardization | None
    levels: int | None
    event_shape: tuple[int, ...]
    fingerprint: str
    built_in: bool

    @property
    def is_images(self) -> bool:
        return len(self.event_shape) == 3


def _fingerprint(*tensors: Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(repr((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def _dequantizer(levels: int) -> BatchTransform:
    return lambda x, generator: datasets.dequantize(x, levels, generator)


def split_sizes_problem(n_train: int, n_val: int, n_test: int, batch_size: int, more_data: str) -> str | None:
    """What is wrong with these split sizes for training (or ``None``): the guard rails of ``train``."""
    if n_val == 0:
        return (
            "the validation split is empty, so there would be no validation NLL, no early stopping and no best "
            f"weights to keep; {more_data}"
        )
    if n_test == 0:
        return f"the test split is empty, so there would be no test NLL; {more_data}"
    if n_train < 2:
        return f"the training split has {n_train} sample(s); a flow needs at least 2 (and many more); {more_data}"
    if n_train < batch_size:
        return (
            f"the training split has {n_train} samples, fewer than one batch (--batch-size {batch_size}): every step "
            f"would see the same {n_train} samples and the model would learn them by heart (a test NLL far above the "
            f"validation NLL). Use more training data ({more_data}), or a --batch-size of at most {n_train}"
        )
    return None


def _check_sizes(n_train: int, n_val: int, n_test: int, batch_size: int, more_data: str) -> None:
    problem = split_sizes_problem(n_train, n_val, n_test, batch_size, more_data)
    if problem is not None:
        raise ValueError(problem)


def prepare_training_data(args: argparse.Namespace) -> PreparedData:
    """Train / validation / test data for ``args.data`` (a built-in name or a path), checked and preprocessed."""
    built_in = args.data in BUILT_IN_DATA
    if built_in:
        for option, value in (("--val-fraction", args.val_fraction), ("--test-fraction", args.test_fraction),
                              ("--levels", args.levels)):
            if value is not None:
                raise ValueError(f"{option} is for your own data, not for the built-in set {args.data!r}")
        return _digits(args) if args.data == "digits" else _toy(args)
    if args.n_train is not None:
        raise ValueError(
            "--n-train is for the generated 2-D sets; your data is split by --val-fraction/--test-fraction"
        )
    if not Path(args.data).exists():
        raise ValueError(
            f"--data {args.data}: no such file or folder, and not a built-in set ({', '.join(BUILT_IN_DATA)})"
        )
    array = datasets.read_array(args.data)
    folder = Path(args.data).is_dir()
    images = args.model in IMAGE_MODELS or (args.model == "maf" and array.ndim != 2)
    if not images:
        if args.levels is not None:
            raise ValueError(f"--levels is for integer pixels of images; {args.data} holds vectors for {args.model!r}")
        return _user_vectors(args, datasets.vectors_from_array(array, source=str(args.data)))
    levels = args.levels if args.levels is not None or not folder else PNG_LEVELS
    return _user_images(args, datasets.images_from_array(array, source=str(args.data), levels=levels), levels)


def _fractions(args: argparse.Namespace) -> tuple[float, float]:
    val = DEFAULT_FRACTION if args.val_fraction is None else args.val_fraction
    test = DEFAULT_FRACTION if args.test_fraction is None else args.test_fraction
    return val, test


def _split(args: argparse.Namespace, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    val_fraction, test_fraction = _fractions(args)
    parts = datasets.split_indices(x.shape[0], val_fraction, test_fraction, seed=args.seed)
    train, val, test = (x[torch.from_numpy(index)] for index in parts)
    if len(val) and len(test):
        more = f"{args.data} has {x.shape[0]} samples, {len(train)} of them for training"
    else:
        more = (
            f"{args.data} has {x.shape[0]} samples: use more data, or a larger --val-fraction/--test-fraction "
            f"(now {val_fraction}/{test_fraction}) so that each split gets at least one sample"
        )
    _check_sizes(len(train), len(val), len(test), args.batch_size, more)
    return train, val, test


def _toy(args: argparse.Namespace) -> PreparedData:
    n_train = DEFAULT_N_TRAIN if args.n_train is None else args.n_train
    if n_train < 2:
        raise ValueError(f"--n-train must be at least 2, got {n_train}")
    _check_sizes(n_train, TOY_SPLIT_SIZE, TOY_SPLIT_SIZE, args.batch_size, f"--n-train {args.batch_size} or more")
    raw = datasets.toy_dataset(args.data, n_train, seed=args.seed)
    standardization = Standardization.fit(raw)
    train = standardization.transform(raw)
    val = standardization.transform(datasets.toy_dataset(args.data, TOY_SPLIT_SIZE, seed=args.seed + 1))
    test = standardization.transform(datasets.toy_dataset(args.data, TOY_SPLIT_SIZE, seed=args.seed + 2))
    return PreparedData(train, val, test, None, standardization, None, (2,), _fingerprint(train, val, test), True)


def _digits_splits(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """The digits' training images (integers) and the validation and test images, dequantized once."""
    x_train, _ = datasets.digits("train", seed=seed)
    x_val, _ = datasets.digits("val", seed=seed)
    x_test, _ = datasets.digits("test", seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    return x_train, datasets.dequantize(x_val, 17, g), datasets.dequantize(x_test, 17, g)


def _digits(args: argparse.Namespace) -> PreparedData:
    train, val, test = _digits_splits(args.seed)
    _check_sizes(len(train), len(val), len(test), args.batch_size, "the digits have 1,257 training images")
    return PreparedData(
        train, val, test, _dequantizer(17), None, 17, (1, 8, 8), _fingerprint(train, val, test), True
    )


def _user_vectors(args: argparse.Namespace, x: Tensor) -> PreparedData:
    train, val, test = _split(args, x)
    constant = (train.double().std(0, correction=0) == 0).nonzero().flatten().tolist()
    if constant:
        raise ValueError(
            f"{args.data}: column(s) {[c + 1 for c in constant]} (1-based) are constant in the training split; a "
            "flow cannot model a feature without spread (its density would be infinite): drop those columns"
        )
    standardization = Standardization.fit(train)
    train, val, test = (standardization.transform(t) for t in (train, val, test))
    return PreparedData(
        train, val, test, None, standardization, None, (x.shape[1],), _fingerprint(train, val, test), False
    )


def _user_images(args: argparse.Namespace, x: Tensor, levels: int | None) -> PreparedData:
    train, val, test = _split(args, x)
    transform = None
    if levels is not None:
        g = torch.Generator().manual_seed(args.seed + 1)
        val, test = datasets.dequantize(val, levels, g), datasets.dequantize(test, levels, g)
        transform = _dequantizer(levels)
    shape = tuple(x.shape[1:])
    return PreparedData(train, val, test, transform, None, levels, shape, _fingerprint(train, val, test), False)


def pixel_standardization(prepared: PreparedData, seed: int) -> tuple[Tensor, Tensor]:
    """Per-pixel mean and std of the training images (dequantized once with ``seed``): ``maf`` on images."""
    x = prepared.train
    if prepared.levels is not None:
        x = datasets.dequantize(x, prepared.levels, torch.Generator().manual_seed(seed))
    constant = int((x.double().std(0, correction=0) == 0).sum())
    if constant:
        raise ValueError(
            f"maf standardizes every pixel, but {constant} pixel(s) are constant across the training images (an "
            "empty border?): use multiscale or glow for these images, or give integer pixels with --levels (they are "
            "dequantized, so never constant)"
        )
    scaler = datasets.Standardizer().fit(x)
    assert scaler.mean is not None and scaler.std is not None
    return scaler.mean, scaler.std



def evaluation_data(run: SavedRun, source: str, seed: int) -> tuple[Tensor, dict[str, Any]]:
    """Data to score with a saved run, in the model's space, and a description of it.

    ``source`` is a file or folder (every sample in it is scored) or a built-in
    set's name (its test split, as ``train`` makes it with the run's seed).
    Integer pixels are dequantized with ``seed``.
    """
    run_seed = int(run.config.get("seed") or 0)
    expected = run.event_shape
    if source in BUILT_IN_DATA:
        if source == "digits":
            x = _digits_splits(run_seed)[2]
        else:
            x = datasets.toy_dataset(source, TOY_SPLIT_SIZE, seed=run_seed + 2)
        described = f"the test split of {source}"
    else:
        array = datasets.read_array(source)
        if run.is_images:
            levels = run.levels
            x = datasets.images_from_array(array, source=source, levels=levels)
            if levels is not None:
                x = datasets.dequantize(x, levels, torch.Generator().manual_seed(seed))
        else:
            x = datasets.vectors_from_array(array, source=source)
        described = source
    if tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{source}: the model was trained on samples of shape {expected}, but this data has samples of shape "
            f"{tuple(x.shape[1:])} (array shape {tuple(x.shape)})"
        )
    if not run.is_images:
        if run.standardization is None:
            raise ValueError(
                f"{run.path} holds no standardization statistics (it was written by an earlier flowlib): "
                "retrain the model to score data in its own units"
            )
        x = run.standardization.transform(x)
    return x, {"data": described, "samples": int(x.shape[0])}
