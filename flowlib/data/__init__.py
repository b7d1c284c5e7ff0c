r"""Data for the course: 2-D toy sets with their true densities, and image data, sharing the Standardizer.

Everything is generated or ships with scikit-learn: nothing is downloaded.

* :mod:`~flowlib.data.toy`: ``moons``, ``circles``, ``eight_gaussians``,
  ``checkerboard``, ``pinwheel``, ``two_spirals``: each ``name(n, seed=0,
  **options)`` draws a float32 ``(n, 2)`` tensor, and where the density of the
  process is known ``name_log_prob(x, **options)`` evaluates it;
  :func:`toy_dataset` and :func:`toy_log_prob` look them up by name.
* :mod:`~flowlib.data.images`: :func:`digits` (sklearn's 1,797 8x8 digit
  images, pixel values 0..16, split once and for all into 1,257 / 270 / 270),
  :func:`dequantize` and :func:`bits_per_dim`.
* :mod:`~flowlib.data.standardize`: :class:`Standardizer`, the per-feature
  standardization used for both, with its log-determinant.
* :mod:`~flowlib.data.files`: your own data: :func:`read_array` (``.npy``,
  ``.npz``, ``.csv``, a folder of PNG images), :func:`vectors_from_array`,
  :func:`images_from_array` (checked, with errors that say what to change)
  and :func:`split_indices` (seeded train / validation / test rows).

**From a density on preprocessed data to bits/dim.** Integer pixels are
dequantized to :math:`v = (x + u)/17 \in [0, 1)^D` (:func:`dequantize`), then
possibly standardized (:class:`Standardizer`) or logit-transformed (the
:class:`~flowlib.bijections.Logit` layer); each step has a log-determinant, so
that :func:`bits_per_dim` can convert the model's NLL back to the discrete data.

The chapters import the package as ``from flowlib import data as datasets``;
every name below is available as ``flowlib.data.<name>``.

Example:
    >>> x = toy_dataset("moons", 1000, seed=0)
    >>> x.shape, x.dtype
    (torch.Size([1000, 2]), torch.float32)
    >>> scaler = Standardizer().fit(x)
    >>> v = scaler.transform(x)   # log p_x(x) = log p_v(v) + scaler.logabsdet
    >>> round(bits_per_dim(0.0, num_dims=64, levels=17), 4)   # uniform on [0,1)^64: log2(17)
    4.0875
"""

from .files import DATA_SUFFIXES, images_from_array, read_array, split_indices, vectors_from_array
from .images import DIGITS_SPLIT_SIZES, bits_per_dim, dequantize, digits
from .standardize import Standardizer
from .toy import (
    TOY_DATASETS,
    TOY_LOG_PROBS,
    ToyDataset,
    checkerboard,
    checkerboard_log_prob,
    circles,
    circles_log_prob,
    eight_gaussians,
    eight_gaussians_log_prob,
    moons,
    moons_log_prob,
    pinwheel,
    toy_dataset,
    toy_log_prob,
    two_spirals,
)

__all__ = [
    "moons",
    "circles",
    "eight_gaussians",
    "checkerboard",
    "pinwheel",
    "two_spirals",
    "moons_log_prob",
    "circles_log_prob",
    "eight_gaussians_log_prob",
    "checkerboard_log_prob",
    "ToyDataset",
    "TOY_DATASETS",
    "TOY_LOG_PROBS",
    "toy_dataset",
    "toy_log_prob",
    "Standardizer",
    "DIGITS_SPLIT_SIZES",
    "digits",
    "dequantize",
    "bits_per_dim",
    "DATA_SUFFIXES",
    "read_array",
    "vectors_from_array",
    "images_from_array",
    "split_indices",
]
