r"""Per-feature standardization, shared by the toy sets and the images, with its log-determinant.

Example:
    >>> import torch
    >>> scaler = Standardizer().fit(torch.tensor([[0.0, 1.0], [2.0, 5.0]]))
    >>> scaler.mean.tolist(), scaler.std.tolist()
    ([1.0, 3.0], [1.0, 2.0])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..checks import check_float

__all__ = ["Standardizer"]


class Standardizer:
    r"""Per-feature standardization :math:`v = (x - \mu) / \sigma`, fitted on the training set.

    ``fit`` computes the mean and the (population, ``ddof=0``) standard deviation
    of every feature over the batch dimension: for images of shape ``(n, C, H, W)``
    one value per pixel. The map is affine with a diagonal Jacobian, so

    .. math::

        \log p_x(x) = \log p_v(v) + \log\left|\det\frac{\partial v}{\partial x}\right|
        = \log p_v(v) - \sum_i \log \sigma_i ,

    and :attr:`logabsdet` is :math:`-\sum_i \log\sigma_i`: add it to a
    log-likelihood measured on standardized data (subtract it from an NLL) to
    get the log-likelihood of the original data.

    Args:
        min_std: features whose standard deviation is below this are given
            ``min_std`` instead; without it (default) a constant feature is an
            error, since dividing by zero would be meaningless.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
        >>> s = Standardizer().fit(x)
        >>> s.transform(x).tolist(), round(s.logabsdet, 4)   # sigma = (1, 10): -log 10
        ([[-1.0, -1.0], [1.0, 1.0]], -2.3026)
        >>> torch.equal(s.inverse_transform(s.transform(x)), x)
        True
    """

    def __init__(self, min_std: float | None = None) -> None:
        min_std = check_float("Standardizer: min_std", min_std, above=0.0, allow_none=True)
        self.min_std = min_std
        self.mean: Tensor | None = None
        self.std: Tensor | None = None

    def fit(self, x: Tensor) -> Standardizer:
        """Compute the mean and standard deviation of ``x`` (shape ``(n, *event_shape)``); return ``self``."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"Standardizer.fit: expected a floating-point torch.Tensor, got {_describe(x)}")
        if x.dim() < 2 or x.shape[0] < 2:
            raise ValueError(
                f"Standardizer.fit: expected at least 2 samples of shape (n, *event_shape), got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError("Standardizer.fit: the data contains NaN or Inf")
        x64 = x.double()
        mean, std = x64.mean(0), x64.std(0, correction=0)
        if self.min_std is not None:
            std = std.clamp_min(self.min_std)
        elif bool((std == 0).any()):
            raise ValueError(
                f"Standardizer.fit: {int((std == 0).sum())} feature(s) are constant (std 0); dequantize the data "
                "first or pass min_std"
            )
        self.mean, self.std = mean.to(x.dtype), std.to(x.dtype)
        self._logabsdet = -float(std.log().sum())
        return self

    def _fitted(self, x: Tensor, owner: str) -> tuple[Tensor, Tensor]:
        if self.mean is None or self.std is None:
            raise RuntimeError(f"Standardizer.{owner}: call fit(train) first")
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"Standardizer.{owner}: expected a floating-point torch.Tensor, got {_describe(x)}")
        if x.dim() != self.mean.dim() + 1 or x.shape[1:] != self.mean.shape:
            shape = "(batch, " + ", ".join(str(s) for s in self.mean.shape) + ")"
            raise ValueError(f"Standardizer.{owner}: expected shape {shape} as in fit, got {tuple(x.shape)}")
        return self.mean.to(x), self.std.to(x)

    def transform(self, x: Tensor) -> Tensor:
        r""":math:`(x - \mu) / \sigma`."""
        mean, std = self._fitted(x, "transform")
        return (x - mean) / std

    def inverse_transform(self, v: Tensor) -> Tensor:
        r""":math:`v \sigma + \mu`."""
        mean, std = self._fitted(v, "inverse_transform")
        return v * std + mean

    def fit_transform(self, x: Tensor) -> Tensor:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    @property
    def logabsdet(self) -> float:
        r""":math:`\log|\det \partial v/\partial x| = -\sum_i \log\sigma_i` (per sample), computed in float64."""
        if self.std is None:
            raise RuntimeError("Standardizer.logabsdet: call fit(train) first")
        return self._logabsdet

    def __repr__(self) -> str:
        shape = None if self.mean is None else tuple(self.mean.shape)
        return f"Standardizer(event_shape={shape})"


def _describe(x: Any) -> str:
    return f"tensor of dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
