r"""Image data: sklearn's 8x8 digits, dequantization, and the conversion of an NLL to bits per dimension.

Integer pixels are dequantized to :math:`v = (x + u)/17 \in [0, 1)^D`
(:func:`dequantize`), then possibly standardized
(:class:`~flowlib.data.Standardizer`) or logit-transformed (the
:class:`~flowlib.bijections.Logit` layer); each step has a log-determinant, so
that :func:`bits_per_dim` can convert the model's NLL back to the discrete data.
Nothing is downloaded: the digits ship with scikit-learn.

Example:
    >>> import torch
    >>> images, labels = digits("test")
    >>> v = dequantize(images, levels=17, generator=torch.Generator().manual_seed(0))
    >>> v.shape, bool(((v >= 0) & (v < 1)).all())
    (torch.Size([270, 1, 8, 8]), True)
"""

from __future__ import annotations

import functools
import math
import operator

import numpy as np
import torch
from torch import Tensor

from ..checks import check_float, check_int, check_seed

__all__ = ["DIGITS_SPLIT_SIZES", "digits", "dequantize", "bits_per_dim"]


DIGITS_SPLIT_SIZES: tuple[int, int, int] = (1257, 270, 270)
"""Default ``(train, val, test)`` sizes of :func:`digits`: 70 / 15 / 15 % of the 1,797 images."""


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def digits(
    split: str = "train",
    seed: int = 0,
    *,
    sizes: tuple[int, int, int] = DIGITS_SPLIT_SIZES,
) -> tuple[Tensor, Tensor]:
    r"""sklearn's 8x8 handwritten digits: ``(images, labels)`` of one split.

    ``images`` has shape ``(n, 1, 8, 8)``, dtype float32, integer pixel values
    0..16 (17 levels: dequantize with ``levels=17``); ``labels`` is int64 in 0..9.
    The 1,797 images are permuted once with ``numpy.random.RandomState(seed)``
    (a generator whose stream numpy keeps fixed across versions) and cut into
    ``train`` / ``val`` / ``test`` of ``sizes`` images, by default
    **1,257 / 270 / 270**. The same ``seed`` and ``sizes`` always give the same,
    disjoint splits. ``sizes=(1500, 0, 297)`` gives the split sizes of the
    benchmark protocol's task B (not the peers' exact permutation).

    Example:
        >>> x, y = digits("val")
        >>> x.shape, y.shape, x.max().item()
        (torch.Size([270, 1, 8, 8]), torch.Size([270]), 16.0)
    """
    splits = ("train", "val", "test")
    if split not in splits:
        raise ValueError(f"digits: split must be one of {splits}, got {split!r}")
    seed = check_seed("digits: seed", seed)
    images, labels = _load_digits()
    try:
        sizes = tuple(operator.index(s) for s in sizes)
    except TypeError as error:
        raise TypeError(f"digits: sizes must be three ints (train, val, test), got {sizes!r}") from error
    if len(sizes) != 3 or any(s < 0 for s in sizes) or sum(sizes) > len(images):
        raise ValueError(
            f"digits: sizes must be three ints >= 0 (train, val, test) adding up to at most {len(images)}, got {sizes}"
        )
    order = np.random.RandomState(seed).permutation(len(images))
    start = sum(sizes[: splits.index(split)])
    index = order[start : start + sizes[splits.index(split)]]
    if len(index) == 0:
        raise ValueError(f"digits: the {split!r} split is empty with sizes={sizes}")
    x = torch.from_numpy(images[index].copy()).unsqueeze(1)
    return x, torch.from_numpy(labels[index].copy())



def dequantize(x_int: Tensor, levels: int = 17, generator: torch.Generator | None = None) -> Tensor:
    r"""Uniform dequantization: :math:`v = (x + u) / L`, :math:`u \sim U[0, 1)^D`, so :math:`v \in [0, 1)^D`.

    ``x_int`` holds integers in :math:`\{0, \dots, L-1\}` (any dtype); the result
    is float (float32 for integer input). Draw fresh noise for every training
    batch and keep one fixed draw for a test set.

    Why it is legitimate: the cell :math:`[x/L, (x+1)/L)^D` of an integer vector
    :math:`x` has volume :math:`L^{-D}`, and a density :math:`p` on
    :math:`[0,1)^D` defines a discrete model :math:`P(x) = \int_{\text{cell}} p`.
    By Jensen's inequality

    .. math::

        \log P(x) = \log \mathbb{E}_u\big[p\big((x+u)/L\big)\big] - D\log L
        \;\ge\; \mathbb{E}_u\big[\log p(v)\big] - D \log L ,

    so the density of the dequantized data, shifted by :math:`-D\log L`,
    lower-bounds the discrete log-likelihood (see :func:`bits_per_dim`). Without
    the noise, a continuous model could put unbounded density on the integer
    points.

    Example:
        >>> import torch
        >>> v = dequantize(torch.tensor([[0, 16]]), levels=17, generator=torch.Generator().manual_seed(0))
        >>> bool(((v >= 0) & (v < 1)).all()), (v * 17).floor().tolist()
        (True, [[0.0, 16.0]])
    """
    if not isinstance(x_int, Tensor):
        raise TypeError(f"dequantize: expected a torch.Tensor of integers, got {type(x_int).__name__}")
    levels = check_int("dequantize: levels", levels, minimum=2)
    if x_int.numel() == 0:
        raise ValueError(f"dequantize: the input is empty (shape {tuple(x_int.shape)})")
    x = x_int if x_int.is_floating_point() else x_int.to(torch.float32)
    if not bool(torch.isfinite(x).all()) or not torch.equal(x, x.round()):
        raise ValueError("dequantize: expected integer values (e.g. raw pixel levels), got non-integers")
    low, high = x.min().item(), x.max().item()
    if low < 0 or high > levels - 1:
        raise ValueError(f"dequantize: values must lie in 0..{levels - 1} for levels={levels}, got {low:g}..{high:g}")
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    # (x + u) / L can round up to exactly 1 (or the next level) in float32; keep v inside [x/L, (x+1)/L).
    v = (x + u) / levels
    upper = torch.nextafter((x + 1) / levels, torch.zeros_like(v))
    return torch.minimum(v, upper)



def bits_per_dim(
    nll_nats_per_sample: float | Tensor,
    num_dims: int,
    levels: float = 17,
    extra_logdet: float | Tensor = 0.0,
) -> float | Tensor:
    r"""Bits per dimension of discrete data from the NLL (in nats) of a model of the preprocessed data.

    .. math::

        \text{bits/dim} = \frac{\mathrm{NLL} - \text{extra\_logdet} + D \ln L}{D \ln 2} .

    Where each term comes from, for integer data :math:`x \in \{0..L-1\}^D`:

    1. Dequantization (:func:`dequantize`): :math:`v = (x + u)/L`. The discrete
       model is :math:`P(x) = \int_{\text{cell}(x)} p_v`, a cell of volume
       :math:`L^{-D}`; Jensen gives :math:`-\log P(x) \le \mathbb{E}_u[-\log p_v(v)] + D\ln L`.
       The :math:`D \ln L` is the change of variables of the scaling by
       :math:`1/L` (log-determinant :math:`-D\ln L`): a density on
       :math:`[0,1)^D` is :math:`L^D` times the density on :math:`[0, L)^D`.
    2. Preprocessing after dequantization, :math:`y = g(v)` (standardization,
       logit, ...), whose log-determinant is ``extra_logdet`` :math:`=
       \log|\det \partial y/\partial v|`: :math:`\log p_v(v) = \log p_y(y) +
       \text{extra\_logdet}`, so :math:`-\log p_v = \mathrm{NLL} - \text{extra\_logdet}`.
       For a :class:`~flowlib.data.Standardizer` pass its ``logabsdet`` (:math:`-\sum\log\sigma_i`,
       i.e. the NLL of :math:`v` is the standardized NLL plus :math:`\sum\log\sigma_i`);
       for a :class:`~flowlib.bijections.Logit` layer applied outside the model, its
       per-sample log-det (or the mean); for several steps, the sum.
    3. Division by :math:`D \ln 2` turns nats per sample into bits per dimension.

    This is the formula of the benchmark protocol's task B with ``levels=17``,
    ``num_dims=64`` and the standardization log-det. A model uniform on
    :math:`[0,1)^D` has NLL 0 and gets exactly :math:`\log_2 L` bits/dim, the
    cost of storing each pixel with no model at all. ``levels=1`` drops the
    dequantization term (continuous data).

    Args:
        nll_nats_per_sample: the model's NLL in nats per sample of the data it
            saw (a float, or a tensor of per-sample values).
        num_dims: :math:`D`, the number of scalar dimensions per sample (64 for 8x8 digits).
        levels: :math:`L`, the number of integer levels before dequantization (17 for digits).
        extra_logdet: :math:`\log|\det\partial y/\partial v|` of the preprocessing after
            dequantization (a float, or per-sample values matching the NLL).

    Returns:
        A float, or a tensor when either input is a tensor.

    Example:
        >>> round(bits_per_dim(100.0, num_dims=64, levels=17), 4)   # (100 + 64 ln 17) / (64 ln 2)
        6.3417
    """
    num_dims = check_int("bits_per_dim: num_dims", num_dims, minimum=1)
    levels = check_float("bits_per_dim: levels", levels, minimum=1.0, hint="1 means continuous data")
    for name, value in (("nll_nats_per_sample", nll_nats_per_sample), ("extra_logdet", extra_logdet)):
        if not isinstance(value, (int, float, Tensor)) or isinstance(value, bool):
            raise TypeError(f"bits_per_dim: {name} must be a float or a tensor, got {type(value).__name__}")
    nll_v = nll_nats_per_sample - extra_logdet
    result = (nll_v + num_dims * math.log(levels)) / (num_dims * math.log(2.0))
    return result if isinstance(result, Tensor) else float(result)
