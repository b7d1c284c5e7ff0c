r"""Element-wise bijections: the same scalar map applied to every coordinate.

If :math:`z_i = h(x_i)` for every :math:`i`, the Jacobian is diagonal and

.. math::

    \log\left|\det \frac{\partial z}{\partial x}\right| = \sum_i \log |h'(x_i)| .

Element-wise maps cannot create dependence between coordinates; chapter 3
says why and chapters 4-6 build the layers that can.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_float
from ..core import Bijection, as_event_shape, as_float_tensor, full_precision, input_checks_enabled
from .scalar import RationalQuadraticSpline

__all__ = [
    "ElementwiseAffine",
    "Scaling",
    "Sigmoid",
    "Logit",
    "HigherOrderPerturbation",
    "MonotoneMLP",
    "ElementwiseSpline",
    "bisect_increasing",
    "invert_increasing",
]


class ElementwiseAffine(Bijection):
    r"""The affine scalar bijection :math:`z = a \odot x + b`, with :math:`a \neq 0`.

    .. math::

        z = a \odot x + b, \qquad x = (z - b) \oslash a, \qquad
        \log\left|\det \frac{\partial z}{\partial x}\right| = \sum_i \log|a_i| .

    ``scale`` (:math:`a`) and ``shift`` (:math:`b`) are either scalars shared by
    every coordinate or tensors broadcastable to the event shape (one value per
    dimension, per channel with shape ``(C, 1, 1)``, ...). Negative scales are
    allowed (the map is still a bijection); zero is not.

    The layer is written in the normalizing direction. The generative map
    :math:`x = a z + b` of a location-scale family is ``Inverse(ElementwiseAffine(a, b))``.

    Args:
        scale: :math:`a`, non-zero.
        shift: :math:`b` (default 0).
        event_shape: shape of one sample; by default the broadcast shape of
            ``scale`` and ``shift`` (``(1,)`` if both are scalars).
        learnable: if ``True`` (default) :math:`a` and :math:`b` are parameters.

    Example:
        >>> import torch
        >>> layer = ElementwiseAffine(torch.tensor([2.0, -0.5]), torch.tensor([1.0, 0.0]))
        >>> z, ladj = layer(torch.tensor([[1.0, 4.0]]))
        >>> z.tolist(), round(ladj.item(), 4)   # log 2 + log 0.5 = 0
        ([[3.0, -2.0]], 0.0)
    """

    def __init__(
        self,
        scale: float | Sequence[float] | Tensor,
        shift: float | Sequence[float] | Tensor = 0.0,
        event_shape: int | Iterable[int] | None = None,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        scale_t = as_float_tensor(scale).detach().clone()
        shift_t = as_float_tensor(shift, scale_t).detach().clone().to(scale_t.dtype)
        if event_shape is None:
            shape = torch.broadcast_shapes(scale_t.shape, shift_t.shape)
            event_shape = shape if len(shape) > 0 else (1,)
        self.event_shape = as_event_shape(event_shape)
        for name, value in (("scale", scale_t), ("shift", shift_t)):
            try:
                torch.broadcast_shapes(value.shape, self.event_shape)
            except RuntimeError as error:
                raise ValueError(
                    f"ElementwiseAffine: {name} of shape {tuple(value.shape)} does not broadcast to the "
                    f"event shape {tuple(self.event_shape)}"
                ) from error
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"ElementwiseAffine: {name} must be finite, got {value.tolist()}")
        _check_nonzero(scale_t)
        if learnable:
            self.scale = nn.Parameter(scale_t)
            self.shift = nn.Parameter(shift_t)
        else:
            self.register_buffer("scale", scale_t)
            self.register_buffer("shift", shift_t)

    def _logabsdet(self, batch: int) -> Tensor:
        if input_checks_enabled():
            _check_nonzero(self.scale)
        return torch.log(self.scale.abs()).expand(self.event_shape).sum().expand(batch)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return x * self.scale + self.shift, self._logabsdet(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return (z - self.shift) / self.scale, -self._logabsdet(z.shape[0])


def _check_nonzero(scale: Tensor) -> None:
    zero = scale == 0
    if bool(zero.any()):
        raise ValueError(
            "ElementwiseAffine: the scale a must be non-zero everywhere (z = a x + b is not invertible "
            f"where a = 0); got a = 0 at {int(zero.sum())} of {scale.numel()} positions"
        )


def _sum_event(values: Tensor) -> Tensor:
    return values.reshape(values.shape[0], -1).sum(dim=1)


class Scaling(Bijection):
    r"""NICE's diagonal scaling layer :math:`z = x \odot e^{s}` with a learnable log-scale :math:`s`.

    .. math::

        \log\left|\det \frac{\partial z}{\partial x}\right| = \sum_i s_i .

    Additive couplings preserve volume; this layer is what lets a NICE flow
    stretch or shrink each direction. The scale is stored as its logarithm so
    it can never reach zero.

    Args:
        event_shape: shape of one sample.
        log_scale: initial :math:`s` (default zeros: the identity).
    """

    def __init__(self, event_shape: int | Iterable[int], log_scale: Tensor | None = None) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        initial = torch.zeros(self.event_shape) if log_scale is None else as_float_tensor(log_scale).detach().clone()
        if initial.shape != self.event_shape:
            raise ValueError(f"Scaling: log_scale must have shape {tuple(self.event_shape)}, got {tuple(initial.shape)}")
        self.log_scale = nn.Parameter(initial)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return x * self.log_scale.exp(), self.log_scale.sum().expand(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return z * torch.exp(-self.log_scale), -self.log_scale.sum().expand(z.shape[0])


def _check_open_unit_interval(owner: str, value: Tensor) -> None:
    if input_checks_enabled() and not bool(((value > 0) & (value < 1)).all()):
        bad = int((~((value > 0) & (value < 1))).sum())
        raise ValueError(f"{owner}: expected values strictly inside (0, 1), got {bad} outside")


class Sigmoid(Bijection):
    r"""The logistic sigmoid :math:`z = \sigma(x) = 1/(1+e^{-x})`, from :math:`\mathbb{R}` to :math:`(0, 1)`.

    .. math::

        \log \sigma'(x) = \log\sigma(x) + \log\sigma(-x) = -\operatorname{softplus}(-x) - \operatorname{softplus}(x).

    The inverse (the logit) is defined on the open interval only; values at or
    outside 0 and 1 raise an error.
    """

    def __init__(self, event_shape: int | Iterable[int]) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return torch.sigmoid(x), _sum_event(-F.softplus(-x) - F.softplus(x))

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        _check_open_unit_interval("Sigmoid.inverse", z)
        x = torch.log(z) - torch.log1p(-z)
        return x, _sum_event(-torch.log(z) - torch.log1p(-z))


class Logit(Bijection):
    r"""Logit preprocessing of data in :math:`(0, 1)`: :math:`z = \operatorname{logit}(\alpha + (1 - 2\alpha) x)`.

    Image flows model dequantized pixels in :math:`[0, 1)` after this map to
    :math:`\mathbb{R}`; the small :math:`\alpha` keeps pixels at 0 away from
    :math:`-\infty`. The map is a bijection from the interval
    :math:`\big(-\tfrac{\alpha}{1-2\alpha}, \tfrac{1-\alpha}{1-2\alpha}\big) \supset [0, 1]`
    onto :math:`\mathbb{R}`, so every noise value has an inverse (samples can
    land slightly outside :math:`[0, 1]`; clamp them for display). With
    :math:`p = \alpha + (1-2\alpha) x`,

    .. math::

        \log\left|\frac{dz}{dx}\right| = \log(1 - 2\alpha) - \log p - \log(1 - p).

    Its log-det must be counted when reporting bits per dimension of the
    original data.

    This is the logit preprocessing of dequantized images; inside a flow (as in
    :func:`~flowlib.models.multiscale_realnvp`) its log-det is part of the
    model's NLL. Used on its own, pass its log-det (the mean over the data) as
    ``extra_logdet`` of :func:`~flowlib.data.bits_per_dim`.

    Args:
        event_shape: shape of one sample.
        alpha: the squeeze towards the centre, ``0 <= alpha < 0.5``.

    Example:
        >>> import torch
        >>> z, ladj = Logit(2, alpha=0.0)(torch.tensor([[0.5, 0.5]]))
        >>> z.tolist(), round(ladj.item(), 4)   # dz/dx = 4 at 1/2: 2 log 4
        ([[0.0, 0.0]], 2.7726)
    """

    def __init__(self, event_shape: int | Iterable[int], alpha: float = 0.05) -> None:
        super().__init__()
        self.alpha = check_float("Logit: alpha", alpha, minimum=0.0, below=0.5)
        self.event_shape = as_event_shape(event_shape)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * x
        if input_checks_enabled() and not bool(((p > 0) & (p < 1)).all()):
            low, high = -self.alpha / (1 - 2 * self.alpha), (1 - self.alpha) / (1 - 2 * self.alpha)
            raise ValueError(f"Logit: expected values strictly inside ({low:.4g}, {high:.4g}) (alpha={self.alpha})")
        z = torch.log(p) - torch.log1p(-p)
        return z, _sum_event(math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p))

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        x = (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)
        return x, _sum_event(-math.log(1 - 2 * self.alpha) - F.softplus(-z) - F.softplus(z))

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, alpha={self.alpha}"


def _newton_attach(function: Callable[[Tensor], Tensor], derivative: Tensor, root: Tensor, target: Tensor) -> Tensor:
    r"""Reattach autograd to a root found without it: one Newton step from the root.

    At the root :math:`h(x^*) = y` the step changes nothing numerically, but its
    derivatives are those of the implicit function theorem,
    :math:`\partial x / \partial y = 1 / h'(x^*)` and
    :math:`\partial x / \partial \theta = -(\partial h / \partial \theta) / h'(x^*)`,
    so the inverse is differentiable like any other layer.
    """
    return root - (function(root) - target) / derivative


def bisect_increasing(
    function: Callable[[Tensor], Tensor],
    target: Tensor,
    low: Tensor,
    high: Tensor,
    atol: float | None = None,
    max_iter: int = 200,
) -> Tensor:
    r"""Solve :math:`f(x) = y` element-wise for a strictly increasing :math:`f` by bisection.

    ``low`` and ``high`` must bracket the solution (:math:`f(\text{low}) \le y \le f(\text{high})`).
    Bisection halves the bracket each step and always converges; it stops when
    every bracket is narrower than ``atol`` (default: a few ulps of the inputs'
    dtype, relative to their size). If ``max_iter`` steps are not enough,
    it raises ``RuntimeError`` instead of returning an inaccurate inverse.

    Example:
        >>> import torch
        >>> root = bisect_increasing(lambda x: x**3, torch.tensor([8.0]), torch.tensor([0.0]), torch.tensor([5.0]))
        >>> round(root.item(), 5)
        2.0
    """
    eps = torch.finfo(target.dtype).eps
    with torch.no_grad():
        f_low, f_high = function(low), function(high)
        if bool((f_low > target).any()) or bool((f_high < target).any()):
            raise ValueError("bisect_increasing: the bracket [low, high] does not contain the solution")
        for _ in range(max_iter):
            middle = 0.5 * (low + high)
            above = function(middle) > target
            high = torch.where(above, middle, high)
            low = torch.where(above, low, middle)
            tolerance = atol if atol is not None else 4 * eps * (1.0 + torch.maximum(low.abs(), high.abs()))
            if bool(((high - low) <= tolerance).all()):
                return 0.5 * (low + high)
    worst = (high - low).max().item()
    raise RuntimeError(
        f"bisect_increasing: no convergence in {max_iter} steps (widest bracket {worst:.3g}); "
        "raise max_iter or loosen atol"
    )


def invert_increasing(
    function: Callable[[Tensor], Tensor],
    log_derivative: Callable[[Tensor], Tensor],
    target: Tensor,
    low: Tensor,
    high: Tensor,
) -> tuple[Tensor, Tensor]:
    r"""The inverse of a strictly increasing element-wise map: :math:`x = h^{-1}(y)` and :math:`\log h'(x)`.

    The root of :math:`h(x) = y` is found by :func:`bisect_increasing` on the
    bracket ``[low, high]`` (without autograd); one Newton step from the root
    then reattaches the derivatives of the implicit function theorem, so the
    inverse is differentiable like any other layer. The layers whose inverse
    has no closed form (:class:`HigherOrderPerturbation`, :class:`MonotoneMLP`)
    return ``(x, -sum(log h'(x)))`` from their ``_inverse``.

    Example:
        >>> import torch
        >>> cube = lambda x: x**3 + x
        >>> log_slope = lambda x: torch.log(3 * x**2 + 1)
        >>> low, high = torch.full((2,), -10.0), torch.full((2,), 10.0)
        >>> x, log_d = invert_increasing(cube, log_slope, torch.tensor([2.0, 10.0]), low, high)
        >>> [round(v, 5) for v in x.tolist()], [round(v, 4) for v in log_d.tolist()]   # h(1) = 2, h(2) = 10
        ([1.0, 2.0], [1.3863, 2.5649])
    """
    root = bisect_increasing(function, target, low, high)
    log_d = log_derivative(root)
    return _newton_attach(function, log_d.exp(), root, target), log_d


class HigherOrderPerturbation(Bijection):
    r"""The scalar bijection :math:`h(x) = a x + b + \dfrac{c}{1 + (d x + e)^2}`, made invertible by construction.

    With :math:`u = d x + e`, :math:`h'(x) = a - c\,d\,\dfrac{2u}{(1+u^2)^2}`. The
    fraction :math:`2u/(1+u^2)^2` takes values in :math:`[-m, m]` with
    :math:`m = \frac{9}{8\sqrt{3}}` (at :math:`u = \pm 1/\sqrt{3}`), so :math:`h` is
    strictly increasing exactly when :math:`d > 0` and :math:`a > m\,|c|\,d`.
    The parametrization enforces it:

    .. math::

        d = \operatorname{softplus}(\tilde d), \qquad
        a = m\,|c|\,d + \operatorname{softplus}(\tilde a),

    so any real :math:`(\tilde a, b, c, \tilde d, e)` gives a bijection of
    :math:`\mathbb{R}` (one set per coordinate). The forward map and its
    derivative are explicit; the inverse has no closed form and is found by
    bisection on the bracket :math:`[(y - b - |c|)/a,\ (y - b + |c|)/a]`.

    Args:
        event_shape: shape of one sample.
        params: optional initial ``(a_raw, b, c, d_raw, e)``, each of the event
            shape (default: a near-identity start with small random ``c``).
        generator: for the default initialization.
    """

    BOUND = 9.0 / (8.0 * math.sqrt(3.0))

    def __init__(
        self,
        event_shape: int | Iterable[int],
        params: Sequence[Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        if params is None:
            shape = self.event_shape
            one = math.log(math.expm1(1.0))
            params = (
                torch.full(shape, one),
                torch.zeros(shape),
                0.1 * torch.randn(shape, generator=generator),
                torch.full(shape, one),
                torch.zeros(shape),
            )
        if len(params) != 5:
            raise ValueError("HigherOrderPerturbation: params must be (a_raw, b, c, d_raw, e)")
        names = ("a_raw", "b", "c", "d_raw", "e")
        for name, value in zip(names, params):
            value = as_float_tensor(value).detach().clone()
            if value.shape != self.event_shape:
                raise ValueError(
                    f"HigherOrderPerturbation: {name} must have shape {tuple(self.event_shape)}, got {tuple(value.shape)}"
                )
            self.register_parameter(name, nn.Parameter(value))

    def coefficients(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The constrained :math:`(a, b, c, d, e)`; :math:`a > m|c|d` and :math:`d > 0` always hold."""
        d = F.softplus(self.d_raw)
        a = self.BOUND * self.c.abs() * d + F.softplus(self.a_raw)
        return a, self.b, self.c, d, self.e

    def _h(self, x: Tensor) -> Tensor:
        a, b, c, d, e = self.coefficients()
        return a * x + b + c / (1 + (d * x + e).pow(2))

    def _log_derivative(self, x: Tensor) -> Tensor:
        a, _, c, d, e = self.coefficients()
        u = d * x + e
        return torch.log(a - c * d * 2 * u / (1 + u.pow(2)).pow(2))

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._h(x), _sum_event(self._log_derivative(x))

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        a, b, c, _, _ = self.coefficients()
        with torch.no_grad():
            low = ((z - b - c.abs()) / a).expand_as(z).clone()
            high = ((z - b + c.abs()) / a).expand_as(z).clone()
        x, log_derivative = invert_increasing(self._h, self._log_derivative, z, low, high)
        return x, -_sum_event(log_derivative)


class MonotoneMLP(Bijection):
    r"""A strictly increasing one-hidden-layer network with positive weights, applied per coordinate.

    .. math::

        h(x) = \alpha x + \sum_{k=1}^{K} u_k \tanh(w_k x + b_k),
        \qquad \alpha, u_k, w_k > 0 ,

    a conical combination of increasing functions (plus a linear term that
    makes :math:`h` onto :math:`\mathbb{R}`). Positivity comes from a softplus
    of free parameters. :math:`h'(x) = \alpha + \sum_k u_k w_k (1 - \tanh^2(w_k x + b_k)) > 0`
    gives the exact log-det; the inverse is computed by bisection on
    :math:`[(y - U)/\alpha, (y + U)/\alpha]`, :math:`U = \sum_k u_k`, and raises if it
    does not converge. Inverting costs tens of forward evaluations, which is
    why such layers suit density estimation (forward) better than sampling.

    Args:
        event_shape: shape of one sample.
        hidden: number of hidden units :math:`K` per coordinate.
        generator: for the random initialization.
    """

    def __init__(self, event_shape: int | Iterable[int], hidden: int = 8, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        if hidden < 1:
            raise ValueError(f"MonotoneMLP: hidden must be >= 1, got {hidden}")
        shape = (*self.event_shape, hidden)
        self.alpha_raw = nn.Parameter(torch.zeros(self.event_shape))
        self.u_raw = nn.Parameter(torch.randn(shape, generator=generator) - 2.0)
        self.w_raw = nn.Parameter(torch.randn(shape, generator=generator))
        self.bias = nn.Parameter(torch.randn(shape, generator=generator))

    def _positive(self) -> tuple[Tensor, Tensor, Tensor]:
        return F.softplus(self.alpha_raw) + 1e-3, F.softplus(self.u_raw), F.softplus(self.w_raw)

    def _h(self, x: Tensor) -> Tensor:
        alpha, u, w = self._positive()
        return alpha * x + (u * torch.tanh(w * x.unsqueeze(-1) + self.bias)).sum(-1)

    def _log_derivative(self, x: Tensor) -> Tensor:
        alpha, u, w = self._positive()
        t = torch.tanh(w * x.unsqueeze(-1) + self.bias)
        return torch.log(alpha + (u * w * (1 - t.pow(2))).sum(-1))

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._h(x), _sum_event(self._log_derivative(x))

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        alpha, u, _ = self._positive()
        with torch.no_grad():
            spread = u.sum(-1)
            low = ((z - spread) / alpha).clone()
            high = ((z + spread) / alpha).clone()
        x, log_derivative = invert_increasing(self._h, self._log_derivative, z, low, high)
        return x, -_sum_event(log_derivative)


class ElementwiseSpline(Bijection):
    r"""A learnable rational-quadratic spline per coordinate (no conditioner), identity outside :math:`[-B, B]`.

    See :class:`~flowlib.bijections.scalar.RationalQuadraticSpline` for the
    formula. With zero parameters (the default) it is the identity.

    Args:
        event_shape: shape of one sample.
        bins: number of bins.
        bound: :math:`R`: the spline acts on :math:`[-R, R]`.
        params: optional initial unnormalized parameters, shape
            ``(*event_shape, 3 * bins - 1)``.
    """

    def __init__(
        self,
        event_shape: int | Iterable[int],
        bins: int = 8,
        bound: float = 5.0,
        params: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        self.spline = RationalQuadraticSpline(bins, bound)
        shape = (*self.event_shape, self.spline.num_params)
        initial = torch.zeros(shape) if params is None else as_float_tensor(params).detach().clone()
        if initial.shape != shape:
            raise ValueError(f"ElementwiseSpline: params must have shape {shape}, got {tuple(initial.shape)}")
        self.params = nn.Parameter(initial)

    def _run(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        params = self.params.expand(x.shape[0], *self.params.shape)
        with full_precision(x):
            step = self.spline.inverse if inverse else self.spline.forward
            y, log_d = step(x, params)
        return y, _sum_event(log_d)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._run(x, inverse=False)

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._run(z, inverse=True)
