r"""Monotone scalar maps whose parameters come from outside: the "transformers" of coupling layers.

A coupling or autoregressive layer applies a scalar bijection :math:`h(x; \theta)`
to each transformed coordinate, with :math:`\theta` produced by a conditioner
network. The classes here are those scalar maps. Each takes an input ``x`` of
shape ``(..., n)`` and parameters of shape ``(..., n, num_params)`` and returns
the output and the *element-wise* :math:`\log|h'(x)|` (same shape as ``x``);
the layer sums what it needs.

All of them are strictly increasing, and at zero parameters (what a
zero-initialized conditioner outputs) all of them are the identity, so a freshly
built flow starts as the identity map.

Example:
    >>> import torch
    >>> spline = RationalQuadraticSpline(bins=8, bound=5.0)
    >>> x = torch.linspace(-6, 6, 7).reshape(1, 7)
    >>> y, log_d = spline.forward(x, torch.zeros(1, 7, spline.num_params))
    >>> torch.allclose(y, x), torch.allclose(log_d, torch.zeros_like(x), atol=1e-6)
    (True, True)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ScalarTransform", "AdditiveTransform", "AffineTransform", "RationalQuadraticSpline"]


class ScalarTransform(ABC):
    r"""The interface of a scalar transform :math:`y = h(x; \theta)`, strictly increasing in :math:`x`.

    A subclass states how many parameters :math:`\theta` each coordinate takes
    and implements both directions. It holds no learnable state: the parameters
    come from the conditioner of a :class:`~flowlib.bijections.Coupling`, which
    accepts any ``ScalarTransform``.

    * ``num_params``: parameters per coordinate (a class attribute or a property);
    * ``forward(x, params) -> (y, log_derivative)``: ``x`` of shape ``(..., n)``,
      ``params`` of shape ``(..., n, num_params)``; ``log_derivative`` is the
      element-wise :math:`\log h'(x)`, shaped like ``x``;
    * ``inverse(y, params) -> (x, log_derivative)``: :math:`x = h^{-1}(y)` and
      the element-wise :math:`\log |\partial x / \partial y| = -\log h'(x)`.

    Zero parameters should give the identity, so that a coupling with a
    zero-initialized conditioner starts as the identity map.
    """

    num_params: int

    @abstractmethod
    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        r"""Return :math:`h(x; \theta)` and the element-wise :math:`\log h'(x)`."""

    @abstractmethod
    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        r"""Return :math:`h^{-1}(y; \theta)` and the element-wise :math:`-\log h'(h^{-1}(y))`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class AdditiveTransform(ScalarTransform):
    r"""NICE's additive coupling: :math:`h(x; t) = x + t`, with :math:`h' = 1`."""

    num_params = 1

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return x + params[..., 0], torch.zeros_like(x)

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        return y - params[..., 0], torch.zeros_like(y)


class AffineTransform(ScalarTransform):
    r"""RealNVP's affine coupling: :math:`h(x; t, s) = x \, e^{s} + t`, with a bounded log-scale.

    The network's raw output :math:`\hat s` is squashed softly into
    :math:`(-s_{\max}, s_{\max})` to give the log-scale

    .. math::

        s = \frac{\hat s}{1 + |\hat s| / s_{\max}},

    so the scale :math:`e^{s}` can neither overflow to ``inf`` nor underflow to 0
    (which would make the layer non-invertible and the loss NaN), while near
    :math:`\hat s = 0` the map is unchanged (:math:`s \approx \hat s`). Parameters
    are ``(shift, raw_log_scale)``; ``log|h'| = s``.

    Args:
        bound: :math:`s_{\max}`, the largest |log-scale| (default 5: scales in
            :math:`(e^{-5}, e^{5})`).
    """

    num_params = 2

    def __init__(self, bound: float = 5.0) -> None:
        if not bound > 0:
            raise ValueError(f"AffineTransform: bound must be positive, got {bound}")
        self.bound = float(bound)

    def log_scale(self, raw: Tensor) -> Tensor:
        return raw / (1.0 + raw.abs() / self.bound)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self.log_scale(params[..., 1])
        return x * torch.exp(log_scale) + params[..., 0], log_scale

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        log_scale = self.log_scale(params[..., 1])
        return (y - params[..., 0]) * torch.exp(-log_scale), -log_scale

    def __repr__(self) -> str:
        return f"AffineTransform(bound={self.bound})"


class RationalQuadraticSpline(ScalarTransform):
    r"""A monotone rational-quadratic spline on :math:`[-B, B]` with linear (identity) tails.

    The interval is cut into ``bins`` bins with knots :math:`(x_k, y_k)` and
    positive derivatives :math:`\delta_k` at the knots (:math:`\delta_0 =
    \delta_K = 1`, so the spline joins the identity tails smoothly). In bin
    :math:`k`, with :math:`\xi = (x - x_k)/w_k`, :math:`s_k = h_k / w_k`:

    .. math::

        g(x) = y_k + \frac{h_k\,[s_k \xi^2 + \delta_k \xi (1-\xi)]}
                          {s_k + (\delta_{k+1} + \delta_k - 2 s_k)\,\xi(1-\xi)} .

    The inverse solves a quadratic :math:`a\xi^2 + b\xi + c = 0`. The usual
    form :math:`\xi = 2c / (-b - \sqrt{b^2 - 4ac})` cancels catastrophically when
    :math:`b < 0` (near the top of a flat bin it loses most digits in float32),
    so that case uses the equal form :math:`(-b + \sqrt{b^2-4ac}) / 2a`; the
    discriminant is clamped at 0 (rounding can make it slightly negative, the
    classic source of NaNs in spline inverses), and inputs at or beyond
    :math:`\pm B` go through the identity tails in both directions.

    Parameters per coordinate: ``bins`` unnormalized widths, ``bins``
    unnormalized heights, ``bins - 1`` unnormalized interior derivatives
    (``3 * bins - 1`` in all); zeros give the identity.

    Args:
        bins: number of bins :math:`K`.
        bound: :math:`R`; the spline acts on :math:`[-R, R]` and is the identity outside.
        min_width, min_height, min_derivative: floors that keep the spline
            strictly monotone and well conditioned.
    """

    def __init__(
        self,
        bins: int = 8,
        bound: float = 5.0,
        min_width: float = 1e-3,
        min_height: float = 1e-3,
        min_derivative: float = 1e-3,
    ) -> None:
        if int(bins) < 1:
            raise ValueError(f"RationalQuadraticSpline: bins must be >= 1, got {bins}")
        if not bound > 0:
            raise ValueError(f"RationalQuadraticSpline: bound must be positive, got {bound}")
        if min_width * bins >= 1 or min_height * bins >= 1:
            raise ValueError("RationalQuadraticSpline: min_width * bins and min_height * bins must be < 1")
        if not 0 < min_derivative < 1:
            raise ValueError("RationalQuadraticSpline: min_derivative must be in (0, 1)")
        self.bins = int(bins)
        self.bound = float(bound)
        self.min_width = float(min_width)
        self.min_height = float(min_height)
        self.min_derivative = float(min_derivative)
        # softplus(0 + offset) + min_derivative == 1: zero parameters give unit derivatives
        self._derivative_offset = math.log(math.expm1(1.0 - self.min_derivative))

    @property
    def num_params(self) -> int:  # type: ignore[override]
        return 3 * self.bins - 1

    def knots(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The spline defined by ``params`` (``(..., 3 * bins - 1)``): knot positions and slopes.

        Returns ``(knots_x, knots_y, derivatives)``, each of shape ``(..., bins + 1)``,
        with ``knots_x[..., 0] = knots_y[..., 0] = -B``, the last knots at ``+B``
        and derivatives 1 at both ends.
        """
        if params.shape[-1] != self.num_params:
            raise ValueError(
                f"RationalQuadraticSpline: expected {self.num_params} parameters per coordinate "
                f"(3 * bins - 1), got {params.shape[-1]}"
            )
        k = self.bins
        widths = self.min_width + (1 - self.min_width * k) * torch.softmax(params[..., :k], dim=-1)
        heights = self.min_height + (1 - self.min_height * k) * torch.softmax(params[..., k : 2 * k], dim=-1)
        inner = self.min_derivative + F.softplus(params[..., 2 * k :] + self._derivative_offset)
        ones = params.new_ones(*params.shape[:-1], 1)
        derivatives = torch.cat([ones, inner, ones], dim=-1)
        knots_x = self._cumulative(widths)
        knots_y = self._cumulative(heights)
        return knots_x, knots_y, derivatives

    def _cumulative(self, sizes: Tensor) -> Tensor:
        edges = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
        edges = 2 * self.bound * edges - self.bound
        # pin the end knots exactly on the bounds (the cumulative sum rounds)
        edges = torch.cat([torch.full_like(edges[..., :1], -self.bound), edges[..., 1:-1],
                           torch.full_like(edges[..., :1], self.bound)], dim=-1)
        return edges

    @staticmethod
    def _bin_of(knots: Tensor, values: Tensor) -> Tensor:
        return (values.unsqueeze(-1) >= knots[..., 1:-1]).sum(dim=-1, keepdim=True)

    @staticmethod
    def _gather(tensor: Tensor, index: Tensor) -> Tensor:
        return tensor.gather(-1, index).squeeze(-1)

    def _bin_quantities(self, knots_x, knots_y, derivatives, index):
        x_k = self._gather(knots_x, index)
        w_k = self._gather(knots_x, index + 1) - x_k
        y_k = self._gather(knots_y, index)
        h_k = self._gather(knots_y, index + 1) - y_k
        d_k = self._gather(derivatives, index)
        d_k1 = self._gather(derivatives, index + 1)
        return x_k, w_k, y_k, h_k, d_k, d_k1

    @staticmethod
    def _log_derivative(xi: Tensor, xi_1m: Tensor, slope: Tensor, d_k: Tensor, d_k1: Tensor, denominator: Tensor) -> Tensor:
        r"""log g'(x) in a bin: log of s^2 [d_{k+1} xi^2 + 2 s xi(1-xi) + d_k (1-xi)^2] / denominator^2."""
        numerator = slope.pow(2) * (d_k1 * xi.pow(2) + 2 * slope * xi_1m + d_k * (1 - xi).pow(2))
        return torch.log(numerator) - 2 * torch.log(denominator)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        inside = (x > -self.bound) & (x < self.bound)
        x_in = x.clamp(-self.bound, self.bound)
        knots_x, knots_y, derivatives = self.knots(params)
        index = self._bin_of(knots_x, x_in)
        x_k, w_k, y_k, h_k, d_k, d_k1 = self._bin_quantities(knots_x, knots_y, derivatives, index)
        slope = h_k / w_k
        xi = ((x_in - x_k) / w_k).clamp(0, 1)
        xi_1m = xi * (1 - xi)
        denominator = slope + (d_k1 + d_k - 2 * slope) * xi_1m
        y = y_k + h_k * (slope * xi.pow(2) + d_k * xi_1m) / denominator
        log_d = self._log_derivative(xi, xi_1m, slope, d_k, d_k1, denominator)
        return torch.where(inside, y, x), torch.where(inside, log_d, torch.zeros_like(log_d))

    def inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        inside = (y > -self.bound) & (y < self.bound)
        y_in = y.clamp(-self.bound, self.bound)
        knots_x, knots_y, derivatives = self.knots(params)
        index = self._bin_of(knots_y, y_in)
        x_k, w_k, y_k, h_k, d_k, d_k1 = self._bin_quantities(knots_x, knots_y, derivatives, index)
        slope = h_k / w_k
        dy = y_in - y_k
        curvature = d_k1 + d_k - 2 * slope
        a = h_k * (slope - d_k) + dy * curvature
        b = h_k * d_k - dy * curvature
        c = -slope * dy
        root = torch.sqrt((b.pow(2) - 4 * a * c).clamp_min(0))
        # Two algebraically equal forms of the root in [0, 1]; each is free of cancellation for one
        # sign of b (a + b = h_k s_k > 0, so a > |b| > 0 whenever b < 0). The unused branch gets a
        # harmless denominator so that no NaN leaks into the gradients through torch.where.
        positive = b >= 0
        from_c = (2 * c) / torch.where(positive, -b - root, -torch.ones_like(b))
        from_a = (-b + root) / torch.where(positive, torch.ones_like(a), 2 * a)
        xi = torch.where(positive, from_c, from_a).clamp(0, 1)
        x = x_k + xi * w_k
        xi_1m = xi * (1 - xi)
        denominator = slope + curvature * xi_1m
        log_d = self._log_derivative(xi, xi_1m, slope, d_k, d_k1, denominator)
        return torch.where(inside, x, y), torch.where(inside, -log_d, torch.zeros_like(log_d))

    def __repr__(self) -> str:
        return f"RationalQuadraticSpline(bins={self.bins}, bound={self.bound})"
