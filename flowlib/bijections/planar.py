r"""Planar and radial flows (Rezende and Mohamed, 2015): residual maps with a one-dimensional bottleneck.

Both were designed in the **generative direction**, noise :math:`z` to data
:math:`x`, where they are explicit and their log-determinants are cheap:

.. math::

    \text{planar:}\quad x = z + \hat u\, \tanh(w^\top z + b), \qquad
    \det\frac{\partial x}{\partial z} = 1 + w^\top \hat u\, \tanh'(w^\top z + b) ;

    \text{radial:}\quad x = z + \frac{\beta}{\alpha + r}(z - z_0), \quad r = \lVert z - z_0\rVert, \qquad
    \det\frac{\partial x}{\partial z} = \Big(1 + \frac{\beta}{\alpha + r}\Big)^{D-1}
    \Big(1 + \frac{\alpha\beta}{(\alpha + r)^2}\Big).

flowlib writes every layer in the normalizing direction, data to noise, so
these maps are the layers' :meth:`~flowlib.Bijection.inverse`, and their
``forward`` computes the inverse maps: for the planar flow a one-dimensional
root find along :math:`w` (to a tolerance), for the radial flow a
quadratic equation. Variational inference (chapter 8) samples and evaluates
densities with the cheap direction only (``Flow.rsample_and_log_prob``).

Example:
    >>> import torch
    >>> layer = Planar(2, w=[1.0, 2.0], u_hat=[1.0, 0.0], b=0.0).double()
    >>> x, ladj = layer.inverse(torch.tensor([[0.5, -0.5]], dtype=torch.float64))   # generative
    >>> round(ladj.exp().item(), 4), round(ladj.item(), 3)
    (1.7864, 0.58)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_float, check_int
from ..core import Bijection, as_event_shape, as_float_tensor, full_precision

__all__ = ["Planar", "Radial", "inverse_softplus", "solve_planar_projection"]


def inverse_softplus(y: Tensor) -> Tensor:
    r"""The :math:`x` with :math:`\operatorname{softplus}(x) = \log(1 + e^x) = y`, for :math:`y > 0`.

    Used to turn a constrained value given to a constructor into the free
    parameter that produces it.

    Example:
        >>> import torch
        >>> round(torch.nn.functional.softplus(inverse_softplus(torch.tensor(0.3))).item(), 6)
        0.3
    """
    return y + torch.log(-torch.expm1(-y))


def solve_planar_projection(c: Tensor, target: Tensor, atol: float | None = None, max_iter: int = 100) -> Tensor:
    r"""Solve :math:`a + c\tanh(a) = t` element-wise for :math:`c > -1`: safeguarded Newton steps in a bracket.

    The left side is strictly increasing (its slope :math:`1 + c\tanh'(a)` lies
    between :math:`1 + \min(c, 0) > 0` and :math:`1 + \max(c, 0)`), and it differs
    from :math:`a` by at most :math:`|c|`, so the root lies in
    :math:`[t - |c| - 1, t + |c| + 1]`. Each step takes Newton's step from the
    current point if it stays inside the bracket, and the bracket's midpoint
    otherwise; the bracket shrinks around the root at every step. It stops when
    every step is at most ``atol`` (default: four ulps of the root's size),
    usually after five to ten steps, and raises :class:`RuntimeError` if
    ``max_iter`` steps are not enough.

    Example:
        >>> import torch
        >>> a = solve_planar_projection(torch.tensor(0.7, dtype=torch.float64), torch.tensor([0.0, 2.0], dtype=torch.float64))
        >>> [round(v, 12) for v in (a + 0.7 * torch.tanh(a)).tolist()]
        [0.0, 2.0]
    """
    reach = c.abs() + 1.0
    low, high = target - reach, target + reach
    a = target - c * torch.tanh(target)  # one fixed-point step from t: a good start
    eps = torch.finfo(target.dtype).eps
    for _ in range(max_iter):
        value = a + c * torch.tanh(a) - target
        low = torch.where(value < 0, a, low)
        high = torch.where(value > 0, a, high)
        newton = a - value / (1.0 + c * (1.0 - torch.tanh(a) ** 2))
        inside = (newton > low) & (newton < high)
        following = torch.where(inside, newton, 0.5 * (low + high))
        tolerance = atol if atol is not None else 4 * eps * (1.0 + following.abs())
        done = bool(((following - a).abs() <= tolerance).all())
        a = following
        if done:
            return a
    raise RuntimeError(
        f"solve_planar_projection: no convergence in {max_iter} steps; raise max_iter or loosen atol"
    )


def _vector(owner: str, name: str, value, features: int, reference: Tensor | None = None) -> Tensor:
    tensor = as_float_tensor(value, reference).detach().clone()
    if tensor.shape != (features,):
        raise ValueError(f"{owner}: {name} must have shape ({features},), got {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{owner}: {name} must be finite")
    return tensor


class Planar(Bijection):
    r"""The planar flow, invertible by construction; ``inverse`` is the generative map.

    Generative direction (:meth:`inverse`), noise to data:

    .. math::

        x = z + \hat u\, \tanh(w^\top z + b), \qquad
        \log\left|\det\frac{\partial x}{\partial z}\right| = \log\big(1 + w^\top\hat u\,(1 - \tanh^2(w^\top z + b))\big).

    **Invertibility.** Write :math:`a = w^\top z + b`. Taking :math:`w^\top`
    of the map gives the scalar equation :math:`w^\top x + b = a + w^\top\hat u\,\tanh(a)`,
    strictly increasing in :math:`a` when :math:`w^\top\hat u > -1`, because
    :math:`\tanh' \in (0, 1]`. The layer stores a free vector :math:`u` and uses

    .. math::

        \hat u = u + \big(m(w^\top u) - w^\top u\big)\frac{w}{\lVert w\rVert^2}, \qquad
        m(s) = -1 + \operatorname{softplus}(s),

    so that :math:`w^\top \hat u = m(w^\top u) > -1` for every value of the
    parameters :cite:`rezende2015variational`.

    **Normalizing direction** (:meth:`forward`), data to noise: solve
    :math:`a + w^\top\hat u \tanh(a) = w^\top x + b` for :math:`a` to the
    tolerance ``atol`` (:func:`solve_planar_projection`: Newton steps kept
    inside a shrinking bracket), then :math:`z = x - \hat u \tanh(a)`. One Newton step from the root attaches the
    implicit function theorem's derivatives.

    Args:
        features: :math:`D`.
        w: :math:`w`, shape ``(D,)``, nonzero (default: random).
        u_hat: the vector :math:`\hat u` the layer should use, with
            :math:`w^\top\hat u > -1` (default: a random free :math:`u`).
        b: the offset :math:`b` (default 0).
        atol: the root find's tolerance on :math:`a` (default: a few ulps).
        generator: for the random initialization.

    Example:
        >>> import torch
        >>> layer = Planar(3, generator=torch.Generator().manual_seed(0)).double()
        >>> x = torch.randn(4, 3, dtype=torch.float64)
        >>> z, ladj = layer(x)                       # root find
        >>> x_back, ladj_back = layer.inverse(z)     # explicit
        >>> bool((x_back - x).abs().max() < 1e-12), bool((ladj + ladj_back).abs().max() < 1e-12)
        (True, True)
    """

    def __init__(
        self,
        features: int,
        w: Sequence[float] | Tensor | None = None,
        u_hat: Sequence[float] | Tensor | None = None,
        b: float | Tensor | None = None,
        atol: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        owner = "Planar"
        features = check_int(f"{owner}: features", features, minimum=1)
        self.atol = None if atol is None else check_float(f"{owner}: atol", atol, above=0.0)
        if w is None:
            w_t = torch.empty(features).uniform_(-1.0, 1.0, generator=generator) * math.sqrt(2.0 / features)
        else:
            w_t = _vector(owner, "w", w, features)
        if not bool((w_t != 0).any()):
            raise ValueError(f"{owner}: w must be nonzero (it is the normal of the plane)")
        if u_hat is None:
            u_t = torch.empty(features, dtype=w_t.dtype).uniform_(-1.0, 1.0, generator=generator)
        else:
            target = _vector(owner, "u_hat", u_hat, features, w_t).to(w_t.dtype)
            slope = float(w_t @ target)
            if not slope > -1.0:
                raise ValueError(
                    f"{owner}: w^T u_hat must be > -1 for the layer to be invertible, got {slope:.6g}; "
                    "with w^T u_hat <= -1 the map x = z + u_hat tanh(w^T z + b) folds the plane"
                )
            # the free u whose constrained u_hat is the target: m(w^T u) = w^T u_hat
            free_slope = inverse_softplus(torch.tensor(slope + 1.0, dtype=torch.float64)).item()
            u_t = target + (free_slope - slope) * w_t / (w_t @ w_t)
        b_t = torch.zeros((), dtype=w_t.dtype) if b is None else as_float_tensor(b, w_t).detach().clone().to(w_t.dtype)
        if b_t.numel() != 1 or not bool(torch.isfinite(b_t).all()):
            raise ValueError(f"{owner}: b must be one finite number, got {b!r}")
        self.w = nn.Parameter(w_t)
        self.u = nn.Parameter(u_t)
        self.b = nn.Parameter(b_t.reshape(()))
        self.event_shape = as_event_shape(features)

    def u_hat(self) -> Tensor:
        r"""The constrained vector :math:`\hat u`, with :math:`w^\top\hat u = -1 + \operatorname{softplus}(w^\top u) > -1`."""
        w_u = self.w @ self.u
        norm2 = (self.w @ self.w).clamp_min(torch.finfo(self.w.dtype).tiny)
        return self.u + (F.softplus(w_u) - 1.0 - w_u) * self.w / norm2

    def _log_slope(self, a: Tensor, w_u: Tensor) -> Tensor:
        """log(1 + w^T u_hat tanh'(a)), the log-det of the generative map."""
        return torch.log1p(w_u * (1.0 - torch.tanh(a) ** 2))

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(z):
            u_hat = self.u_hat()
            a = z @ self.w + self.b
            x = z + torch.tanh(a)[:, None] * u_hat
            return x, self._log_slope(a, self.w @ u_hat)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(x):
            u_hat = self.u_hat()
            w_u = self.w @ u_hat
            target = x @ self.w + self.b  # = a + w_u tanh(a)
            with torch.no_grad():
                root = solve_planar_projection(w_u.detach(), target.detach(), atol=self.atol)
            # one Newton step from the root: no change in value, the derivatives of the implicit function theorem
            slope = 1.0 + w_u * (1.0 - torch.tanh(root) ** 2)
            a = root - (root + w_u * torch.tanh(root) - target) / slope
            z = x - torch.tanh(a)[:, None] * u_hat
            return z, -self._log_slope(a, w_u)


class Radial(Bijection):
    r"""The radial flow; ``inverse`` is the generative map, ``forward`` its closed-form inverse.

    Generative direction (:meth:`inverse`), noise to data, around a centre :math:`z_0`:

    .. math::

        x = z + \beta h(r)(z - z_0), \qquad h(r) = \frac{1}{\alpha + r}, \quad r = \lVert z - z_0\rVert,

    with :math:`\alpha > 0`. Points move along rays from :math:`z_0`: the
    radius :math:`r` becomes :math:`R = r + \beta r/(\alpha + r)`, which is
    strictly increasing in :math:`r` exactly when :math:`\beta > -\alpha`
    (its derivative is :math:`1 + \alpha\beta/(\alpha + r)^2`, smallest at
    :math:`r = 0`). The layer keeps both constraints for every parameter value:
    :math:`\alpha = \operatorname{softplus}(\tilde\alpha)`,
    :math:`\beta = -\alpha + \operatorname{softplus}(\tilde\beta)`. The Jacobian
    scales the :math:`D - 1` directions across the ray by :math:`1 + \beta h(r)`
    and the ray itself by :math:`dR/dr`:

    .. math::

        \log\left|\det\frac{\partial x}{\partial z}\right| =
        (D - 1)\log\big(1 + \beta h(r)\big) + \log\Big(1 + \frac{\alpha\beta}{(\alpha + r)^2}\Big).

    **Normalizing direction** (:meth:`forward`): given :math:`R = \lVert x - z_0\rVert`,
    the radius :math:`r` solves :math:`r^2 + (\alpha + \beta - R) r - \alpha R = 0`
    (the positive root), and :math:`z = z_0 + (x - z_0)/(1 + \beta h(r))`.

    Args:
        features: :math:`D`.
        z0: the centre (default: random).
        alpha: :math:`\alpha > 0` (default: random).
        beta: :math:`\beta > -\alpha` (default: random).
        generator: for the random initialization.

    Example:
        >>> import torch
        >>> layer = Radial(2, z0=torch.zeros(2, dtype=torch.float64), alpha=1.0, beta=2.0)
        >>> x, ladj = layer.inverse(torch.tensor([[1.0, 0.0]], dtype=torch.float64))  # r = 1: x = z (1 + 2/2)
        >>> x.tolist(), round(ladj.item(), 4)   # log(2) + log(1 + 2/4)
        ([[2.0, 0.0]], 1.0986)
    """

    def __init__(
        self,
        features: int,
        z0: Sequence[float] | Tensor | None = None,
        alpha: float | None = None,
        beta: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        owner = "Radial"
        features = check_int(f"{owner}: features", features, minimum=1)
        z0_t = torch.randn(features, generator=generator) if z0 is None else _vector(owner, "z0", z0, features)
        dtype = z0_t.dtype
        if alpha is None:
            alpha_free = torch.randn((), generator=generator, dtype=dtype)
        else:
            alpha = check_float(f"{owner}: alpha", alpha, above=0.0)
            alpha_free = inverse_softplus(torch.tensor(alpha, dtype=torch.float64)).to(dtype)
        alpha_value = F.softplus(alpha_free).item()
        if beta is None:
            beta_free = torch.randn((), generator=generator, dtype=dtype)
        else:
            beta = check_float(f"{owner}: beta", beta)
            if not beta > -alpha_value:
                raise ValueError(
                    f"{owner}: beta must be > -alpha = {-alpha_value:.6g} for the layer to be invertible, got {beta:.6g}"
                )
            beta_free = inverse_softplus(torch.tensor(beta + alpha_value, dtype=torch.float64)).to(dtype)
        self.z0 = nn.Parameter(z0_t)
        self.alpha_free = nn.Parameter(alpha_free.reshape(()))
        self.beta_free = nn.Parameter(beta_free.reshape(()))
        self.event_shape = as_event_shape(features)

    def alpha(self) -> Tensor:
        r""":math:`\alpha = \operatorname{softplus}(\tilde\alpha) > 0`."""
        return F.softplus(self.alpha_free)

    def beta(self) -> Tensor:
        r""":math:`\beta = -\alpha + \operatorname{softplus}(\tilde\beta) > -\alpha`."""
        return -self.alpha() + F.softplus(self.beta_free)

    def _radius(self, offset: Tensor) -> Tensor:
        # the norm's gradient is 0/0 at the centre; tiny keeps it finite (and changes no value that matters)
        return torch.sqrt((offset**2).sum(dim=1) + torch.finfo(offset.dtype).tiny)

    def _log_det(self, r: Tensor, alpha: Tensor, beta: Tensor) -> Tensor:
        """log|det dx/dz| of the generative map at radius r."""
        features = self.event_shape[0]
        return (features - 1) * torch.log1p(beta / (alpha + r)) + torch.log1p(alpha * beta / (alpha + r) ** 2)

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(z):
            alpha, beta = self.alpha(), self.beta()
            offset = z - self.z0
            r = self._radius(offset)
            x = z + (beta / (alpha + r))[:, None] * offset
            return x, self._log_det(r, alpha, beta)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(x):
            alpha, beta = self.alpha(), self.beta()
            offset = x - self.z0
            big_r = self._radius(offset)
            # r^2 + q r - alpha R = 0 with q = alpha + beta - R; both forms of the positive root avoid cancellation
            q = alpha + beta - big_r
            root = torch.sqrt(q**2 + 4.0 * alpha * big_r)
            r = torch.where(q >= 0, 2.0 * alpha * big_r / (q + root), (root - q) / 2.0)
            z = self.z0 + offset / (1.0 + beta / (alpha + r))[:, None]
            return z, -self._log_det(r, alpha, beta)
