r"""Your own data: read ``.npy``, ``.npz``, ``.csv`` files and folders of PNG images, check them, split them.

:func:`read_array` reads a file or folder into a numpy array;
:func:`vectors_from_array` and :func:`images_from_array` check it for a vector
model ``(N, D)`` or an image model ``(N, C, H, W)`` and return a float32
tensor; :func:`split_indices` cuts ``N`` rows into seeded train / validation /
test parts. Every problem is a :class:`ValueError` (a wrong value: shape,
NaN/Inf, range, an empty or unreadable file) or a :class:`TypeError` (a wrong
kind of data: strings, complex numbers, booleans, Python objects), and the
message says what was expected and what to change.

Pixels: integer images (``uint8`` arrays, PNG files) are dequantized while
training, :math:`v = (x + u)/L` (see :func:`~flowlib.data.dequantize`), which
needs the number of levels :math:`L` (256 for 8-bit images); floating-point
images are taken as values in :math:`[0, 1)` as they are.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "points.csv"
    >>> _ = path.write_text("a,b\n0.5,1\n2,3.5\n-1,0\n")
    >>> x = vectors_from_array(read_array(path), source=path.name)
    >>> x.shape, x.dtype
    (torch.Size([3, 2]), torch.float32)
    >>> images_from_array(np.zeros((4, 8, 8), np.uint8), source="digits.npy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: digits.npy: an image model needs ... (N, C, H, W), got (4, 8, 8); add a channel axis, ...
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..checks import check_float, check_int, check_seed

__all__ = ["DATA_SUFFIXES", "read_array", "vectors_from_array", "images_from_array", "split_indices"]

DATA_SUFFIXES = (".npy", ".npz", ".csv")
"""The file types :func:`read_array` reads (besides a folder of ``.png`` images)."""


def read_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a data file or a folder of images into a numpy array.

    * ``.npy``: one array (``allow_pickle=False``: files holding Python objects are refused);
    * ``.npz``: its only array, or the one named ``x``;
    * ``.csv``: numbers separated by commas, one sample per row; an optional
      header row (every cell a name) and lines starting with ``#`` are skipped;
    * a folder: its ``.png`` files, sorted by name, all of the same size and
      kind (grayscale or RGB, 8 bits): a ``uint8`` array ``(N, C, H, W)``.

    Raises:
        ValueError: a missing, empty or unreadable file, an unknown suffix, a
            CSV cell that is not a number, rows of different lengths, images of
            different sizes.
        TypeError: an array of Python objects.
    """
    path = Path(path)
    if path.is_dir():
        return _read_png_folder(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ValueError(
            f"{path}: unknown kind of data file {suffix or '(no suffix)'!r}; expected one of "
            f"{', '.join(DATA_SUFFIXES)}, or a folder of .png images"
        )
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the file ({error.strerror or error})") from error
    if not raw.strip():
        raise ValueError(f"{path}: the file is empty")
    if suffix == ".csv":
        return _parse_csv(raw, path)
    return _load_numpy(raw, path, suffix)


def _load_numpy(raw: bytes, path: Path, suffix: str) -> np.ndarray:
    what = "a .npy file" if suffix == ".npy" else "a .npz file"
    magic = (b"\x93NUMPY",) if suffix == ".npy" else (b"PK\x03\x04", b"PK\x05\x06")
    if not raw.startswith(magic):
        raise ValueError(
            f"{path}: cannot read the file as {what} (it does not begin like one; was it written by "
            f"{'np.save' if suffix == '.npy' else 'np.savez'}?)"
        )
    objects = TypeError(
        f"{path}: the file holds Python objects, not numbers; save a numeric array "
        "(e.g. np.save(path, np.asarray(data, dtype=np.float32)))"
    )
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
        if suffix == ".npy":
            return loaded
        with loaded:
            names = list(loaded.files)
            if not names:
                raise ValueError(f"{path}: the .npz file holds no arrays")
            if len(names) > 1 and "x" not in names:
                raise ValueError(
                    f"{path}: the .npz file holds {len(names)} arrays {names}; keep only the data, or name it 'x' "
                    "(np.savez(path, x=data))"
                )
            return loaded[names[0] if len(names) == 1 else "x"]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise objects from error
        if str(error).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read the file as {what} ({error})") from error
    except Exception as error:  # a damaged file raises many kinds (OSError, EOFError, BadZipFile, zlib.error, ...)
        raise ValueError(f"{path}: cannot read the file as {what} ({type(error).__name__}: {error})") from error


def _parse_csv(raw: bytes, path: Path) -> np.ndarray:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        reason = f"{error.reason} at byte {error.start}"
        raise ValueError(f"{path}: cannot read the file as text (UTF-8): {reason}") from error
    rows: list[list[float]] = []
    header_seen = False
    for line_number, cells in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [cell.strip() for cell in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        values = [_number(cell) for cell in cells]
        if not rows and not header_seen and all(v is None for v in values):
            header_seen = True
            continue
        for column, (cell, value) in enumerate(zip(cells, values), start=1):
            if value is None:
                shown = "an empty cell" if not cell else f"{cell[:40]!r}"
                raise ValueError(
                    f"{path}: line {line_number}, column {column}: {shown} is not a number; a data CSV holds "
                    "numbers only (one optional header row of names, '#' comment lines)"
                )
        if rows and len(values) != len(rows[0]):
            raise ValueError(
                f"{path}: line {line_number} has {len(values)} values but the first data row has {len(rows[0])}; "
                "every row must have the same number of columns"
            )
        rows.append(values)  # type: ignore[arg-type]
    if not rows:
        raise ValueError(f"{path}: the file has no rows of numbers" + (" (only a header)" if header_seen else ""))
    return np.asarray(rows, dtype=np.float64)


def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


_PNG_CHANNELS = {"L": 1, "RGB": 3}


def _read_png_folder(folder: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        others = sorted({p.suffix.lower() for p in folder.iterdir() if p.is_file()} - {""})
        found = f" (found {', '.join(others)} files)" if others else " (it is empty)"
        raise ValueError(f"{folder}: no .png images in the folder{found}; an image folder holds .png files")
    images, first = [], None
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
                mode = image.mode
                if mode in ("1", "P"):
                    image = image.convert("L" if mode == "1" else "RGB")
                    mode = image.mode
                if mode not in _PNG_CHANNELS:
                    raise ValueError(
                        f"{file}: PNG mode {mode!r} is not supported; save 8-bit grayscale ('L') or RGB images "
                        "without transparency"
                    )
                array = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as error:
            raise ValueError(f"{file}: cannot read the image ({error})") from error
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        if first is None:
            first = (file, array.shape)
        elif array.shape != first[1]:
            raise ValueError(
                f"{file}: image of shape (C, H, W) = {array.shape}, but {first[0].name} has {first[1]}; every "
                "image of the folder must have the same size and the same kind (grayscale or RGB)"
            )
        images.append(array)
    return np.stack(images)


def _check_numeric(array: np.ndarray, source: str) -> None:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{source}: expected a numpy array, got {type(array).__name__}")
    kind = array.dtype.kind
    if kind == "b":
        raise TypeError(f"{source}: the data is boolean (dtype bool); convert it to numbers (0/1) first")
    if kind == "c":
        raise TypeError(f"{source}: the data is complex (dtype {array.dtype}); a flow models real numbers")
    if kind not in "iuf":
        raise TypeError(f"{source}: expected numbers (integers or floats), got dtype {array.dtype}")


def _check_not_empty(array: np.ndarray, source: str) -> None:
    if array.size == 0:
        raise ValueError(f"{source}: the data is empty (shape {array.shape})")


def _check_finite(array: np.ndarray, source: str) -> None:
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{source}: the data contains NaN or Inf ({int(bad.sum())} of {array.size} values; the first at "
            f"index {where}); remove or fill those samples first"
        )


def _to_float32(array: np.ndarray, source: str) -> Tensor:
    with np.errstate(over="ignore"):
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{source}: some values are too large for float32 (|x| > 3.4e38); rescale the data")
    return x


def vectors_from_array(array: np.ndarray, source: str = "data") -> Tensor:
    """Check an ``(N, D)`` array of samples for a vector model and return it as a float32 tensor.

    Needs numbers (integers or floats), at least one sample, ``D >= 2``
    features (the coupling models split the features in two) and no NaN/Inf.

    Example:
        >>> vectors_from_array(np.ones((5, 1)), source="x.npy")
        Traceback (most recent call last):
        ...
        ValueError: x.npy: the vector models need at least 2 features (columns), got shape (5, 1)
    """
    _check_numeric(array, source)
    if array.ndim != 2:
        hint = " (for images use the image models: multiscale, glow)" if array.ndim == 4 else ""
        raise ValueError(
            f"{source}: a vector model needs a table of shape (N, D): one row per sample, one column per feature; "
            f"got shape {array.shape}{hint}"
        )
    _check_not_empty(array, source)
    if array.shape[1] < 2:
        raise ValueError(f"{source}: the vector models need at least 2 features (columns), got shape {array.shape}")
    _check_finite(array, source)
    return _to_float32(array, source)


def images_from_array(array: np.ndarray, source: str = "data", levels: int | None = None) -> Tensor:
    r"""Check an ``(N, C, H, W)`` array of images for an image model; return it as a float32 tensor.

    With ``levels`` :math:`L` the pixels must be integers in ``0..L-1`` (any
    dtype): they are returned as such, to be dequantized to
    :math:`v = (x + u)/L` batch by batch. Without ``levels`` the pixels must
    be floats in :math:`[0, 1)`; integer pixels then are an error that asks
    for ``levels``.

    Example:
        >>> images_from_array(np.full((2, 1, 4, 4), 255, np.uint8), source="img.npy", levels=256).max().item()
        255.0
        >>> images_from_array(np.full((2, 1, 4, 4), 255, np.uint8), source="img.npy")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: img.npy: the pixels are integers (dtype uint8, 255..255); pass --levels L, ... v = (x + u) / L
    """
    _check_numeric(array, source)
    if array.ndim != 4:
        hint = {3: "; add a channel axis, e.g. x[:, None] for (N, 1, H, W)",
                2: " (a table of vectors: use a vector model such as realnvp)"}.get(array.ndim, "")
        raise ValueError(f"{source}: an image model needs an array of shape (N, C, H, W), got {array.shape}{hint}")
    _check_not_empty(array, source)
    _check_finite(array, source)
    low, high = array.min().item(), array.max().item()
    integral = array.dtype.kind in "iu" or bool(np.all(array == np.round(array)))
    if levels is not None:
        levels = check_int("--levels", levels, minimum=2)
        if not integral or low < 0 or high > levels - 1:
            found = "non-integer values" if not integral else f"values {low:g}..{high:g}"
            raise ValueError(
                f"{source}: with --levels {levels} the pixels must be integers in 0..{levels - 1}, got {found}; "
                "give the number of levels of your pixels, or floats in [0, 1) without --levels"
            )
        return _to_float32(array, source)
    if array.dtype.kind in "iu":
        raise ValueError(
            f"{source}: the pixels are integers (dtype {array.dtype}, {low:g}..{high:g}); pass --levels L, the number "
            "of pixel levels (256 for 8-bit images), so that they are dequantized to v = (x + u) / L"
        )
    if low < 0 or high >= 1:
        hint = ""
        if integral and low >= 0:
            hint = f"; they look like integer levels 0..{high:g}: pass --levels {2 ** math.ceil(math.log2(high + 1))}"
            hint += " (or the true number of levels) to dequantize them"
        raise ValueError(
            f"{source}: floating-point pixels must lie in [0, 1), got values {low:g}..{high:g}{hint}; or scale "
            "them into [0, 1)"
        )
    return _to_float32(array, source)


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train / validation / test row indices of ``n`` samples.

    The rows are permuted once with ``numpy.random.RandomState(seed)`` (as
    :func:`~flowlib.data.digits` does); the validation and test parts take
    ``round(n * fraction)`` rows each, the training part the rest. Parts may
    come out empty for small ``n``: the caller decides what to do.

    Example:
        >>> [len(part) for part in split_indices(100, 0.1, 0.2, seed=0)]
        [70, 10, 20]
    """
    n = check_int("split_indices: n", n, minimum=0)
    val_fraction = check_float("--val-fraction", val_fraction, minimum=0.0, below=1.0)
    test_fraction = check_float("--test-fraction", test_fraction, minimum=0.0, below=1.0)
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"--val-fraction + --test-fraction must be < 1 to leave training data, got {val_fraction} + {test_fraction}"
        )
    order = np.random.RandomState(check_seed("split_indices: seed", seed)).permutation(n)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    n_train = n - n_val - n_test
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
