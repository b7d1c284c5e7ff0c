r"""Autoregressive layers: masked autoregressive flows (MAF) and inverse autoregressive flows (IAF).

An autoregressive layer transforms each coordinate with a scalar bijection
:math:`h` (the *transformer*: affine, or a rational-quadratic spline) whose
parameters :math:`\theta_i` depend only on the coordinates that come *before*
:math:`i` in an order. One :class:`~flowlib.nets.MADE` computes every
:math:`\theta_i` at once. Written in flowlib's normalizing direction (data
:math:`x` to noise :math:`z`), with the natural order:

* **MAF** reads the parameters from the data:
  :math:`z_i = h\big(x_i;\ \theta_i(x_{<i})\big)`. Density evaluation is one
  MADE pass (parallel); sampling must find :math:`x_1, x_2, \dots` in turn
  (sequential).
* **IAF** reads them from the noise: :math:`x_i = h\big(z_i;\ \theta_i(z_{<i})\big)`
  in the generative direction. Sampling is one MADE pass; density evaluation,
  :math:`z_i = h^{-1}\big(x_i;\ \theta_i(z_{<i})\big)`, is sequential.

In both, :math:`\partial z_i / \partial x_j = 0` for :math:`j` after :math:`i`:
the Jacobian is triangular, and :math:`\log|\det| = \sum_i \log|\partial z_i/\partial x_i|`
costs :math:`O(D)`.

**The sequential direction** uses :class:`~flowlib.nets.IncrementalMADE`: every
hidden unit is computed once, as soon as the coordinates it reads are known,
so a whole inverse costs about one MADE pass of arithmetic in :math:`D` steps,
instead of the :math:`D` full passes of the textbook loop (still available as
``inverse_method="naive"``, for comparison).

Example:
    >>> import torch
    >>> layer = MaskedAutoregressive(3, hidden=(16,))
    >>> z, ladj = layer(torch.randn(5, 3))
    >>> z.shape, ladj.shape
    (torch.Size([5, 3]), torch.Size([5]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..core import Bijection, full_precision
from ..nets import MADE, IncrementalMADE
from .scalar import AffineTransform, ScalarTransform

__all__ = ["MaskedAutoregressive", "InverseAutoregressive", "INVERSE_METHODS"]

INVERSE_METHODS = ("incremental", "naive")
"""How the sequential direction is computed: ``"incremental"`` (each hidden unit once) or ``"naive"`` (D passes)."""


class _AffineFromFlat(torch.autograd.Function):
    r"""``z = x e^{s} + t`` and ``sum(s)``, ``s`` the bounded log-scale, from a MADE's flat output ``[t | raw]``.

    The same arithmetic as :class:`~flowlib.bijections.scalar.AffineTransform`,
    written as one autograd node: the backward pass is four element-wise
    operations and one concatenation instead of a dozen nodes with their
    temporaries and the copies that a strided view of the MADE's output needs
    (training MAF, sampling IAF). With :math:`d = 1 + |r|/B`,
    :math:`\partial s/\partial r = 1/d^2`.
    """

    @staticmethod
    def forward(ctx, x: Tensor, flat: Tensor, bound: float) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        features = x.shape[1]
        shift, raw = flat[:, :features], flat[:, features:]
        denominator = raw.abs().div_(bound).add_(1.0)
        log_scale = raw / denominator
        scale = log_scale.exp()
        ctx.save_for_backward(x, scale, denominator)
        return torch.addcmul(shift, x, scale), log_scale.sum(dim=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_z: Tensor, grad_logdet: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        x, scale, denominator = ctx.saved_tensors
        grad_x = grad_z * scale
        grad_raw = torch.addcmul(grad_logdet[:, None], grad_x, x).div_(denominator.square())
        return grad_x, torch.cat([grad_z, grad_raw], dim=1), None


class MaskedAutoregressive(Bijection):
    r"""A MAF layer: :math:`z_i = h\big(x_i;\ \theta_i(x_{<i})\big)`, with :math:`\theta` from a MADE on :math:`x`.

    With the default affine transformer (flowlib's
    :class:`~flowlib.bijections.scalar.AffineTransform`, log-scale softly bounded to
    :math:`(-B, B)`), the normalizing direction is

    .. math::

        z_i = x_i\, e^{s_i(x_{<i})} + t_i(x_{<i}), \qquad
        \log\left|\det \frac{\partial z}{\partial x}\right| = \sum_i s_i ,

    and the generative direction, :math:`x_i = (z_i - t_i)\, e^{-s_i}`, is
    MAF's :math:`x_i = z_i e^{\alpha_i} + \mu_i` with :math:`\alpha_i = -s_i`,
    :math:`\mu_i = -t_i e^{-s_i}`. Any
    :class:`~flowlib.bijections.scalar.ScalarTransform` can replace it: with a
    :class:`~flowlib.bijections.scalar.RationalQuadraticSpline` this is an
    autoregressive neural spline flow.

    **Costs.** ``forward`` (density evaluation) is one MADE pass. ``inverse``
    (sampling) is sequential: with ``inverse_method="incremental"`` (default) it
    runs :class:`~flowlib.nets.IncrementalMADE`, about one MADE pass of
    multiply-adds in :math:`D` steps of :math:`L + 1` small matrix products;
    ``"naive"`` runs the whole MADE :math:`D` times (after pass :math:`p` the
    first :math:`p` coordinates in the order are exact). Both give the same
    result up to rounding.

    Args:
        features: :math:`D`.
        transform: the scalar transformer (default ``AffineTransform(bound=5)``).
        hidden: hidden widths of the default MADE.
        order: the autoregressive order (``"natural"``, ``"reversed"``,
            ``"random"`` or a permutation; see :class:`~flowlib.nets.MADE`).
        context_features: size of a context vector (a conditional layer).
        residual: residual connections in the MADE.
        made: a ready MADE instead of the default one (its last layer should
            start at zero so that the layer starts as the identity).
        inverse_method: ``"incremental"`` or ``"naive"`` (can be changed later).
        generator: for ``order="random"``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = MaskedAutoregressive(4, hidden=(16, 16))
        >>> x = torch.randn(3, 4)
        >>> z, ladj = layer(x)
        >>> torch.equal(z, x), ladj.tolist()        # zero last layer: starts as the identity
        (True, [0.0, 0.0, 0.0])
    """

    def __init__(
        self,
        features: int,
        transform: ScalarTransform | None = None,
        hidden: Sequence[int] = (128, 128),
        order: str | Sequence[int] | Tensor = "natural",
        context_features: int = 0,
        residual: bool = False,
        made: MADE | None = None,
        inverse_method: str = "incremental",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        transform = AffineTransform() if transform is None else transform
        if not isinstance(transform, ScalarTransform):
            raise TypeError(f"{name}: transform must be a ScalarTransform, got {type(transform).__name__}")
        if made is None:
            made = MADE(features, transform.num_params, hidden, order, context_features, residual, generator=generator)
        elif not isinstance(made, MADE):
            raise TypeError(f"{name}: made must be a flowlib.nets.MADE, got {type(made).__name__}")
        if made.features != features or made.outputs_per_feature != transform.num_params:
            raise ValueError(
                f"{name}: the MADE maps {made.features} features to {made.outputs_per_feature} parameters each, "
                f"but the layer has {features} features and its transform takes {transform.num_params}"
            )
        self.event_shape = torch.Size([features])
        self.transform = transform
        self.made = made
        self.inverse_method = inverse_method
        self._affine = type(transform) is AffineTransform

    @property
    def inverse_method(self) -> str:
        """``"incremental"`` or ``"naive"``: how the sequential direction is computed."""
        return self._inverse_method

    @inverse_method.setter
    def inverse_method(self, value: str) -> None:
        if value not in INVERSE_METHODS:
            raise ValueError(f"{type(self).__name__}: inverse_method must be one of {INVERSE_METHODS}, got {value!r}")
        self._inverse_method = value

    @property
    def order(self) -> Tensor:
        """The autoregressive order: ``order[p]`` is the coordinate at position ``p``."""
        return self.made.order

    def _h(self, u: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """The transformer on every coordinate at once: ``h(u; params)`` and the element-wise ``log h'``."""
        if self._affine:  # AffineTransform.forward, with one unbind instead of two selects
            shift, raw = params.unbind(-1)
            log_scale = self.transform.log_scale(raw)
            return torch.addcmul(shift, u, log_scale.exp()), log_scale
        return self.transform.forward(u, params.contiguous())  # softmax over a strided last dim is slow

    def _h_inverse(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``h^{-1}(y; params)`` on every coordinate and the element-wise ``log |d h^{-1} / dy|``."""
        if self._affine:
            shift, raw = params.unbind(-1)
            log_scale = self.transform.log_scale(raw)
            return (y - shift) * torch.exp(-log_scale), -log_scale
        return self.transform.inverse(y, params.contiguous())

    def _parallel(self, u: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """``y = h(u; theta(u))``: one MADE pass. MAF's forward, IAF's inverse."""
        if self._affine:  # the same arithmetic as _h, in one autograd node (see _AffineFromFlat)
            flat = self.made.flat_forward(u, context)
            with full_precision(u):
                return _AffineFromFlat.apply(u, flat.to(u.dtype), self.transform.bound)
        params = self.made(u, context)
        with full_precision(u):
            y, log_d = self._h(u, params.to(u.dtype))
            return y, log_d.sum(dim=1)

    def _sequential(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        """``u`` with ``u_i = h^{-1}(y_i; theta_i(u_<i))``, in order. MAF's inverse, IAF's forward."""
        with full_precision(y):
            if self._inverse_method == "naive":
                return self._sequential_naive(y, context)
            return self._sequential_incremental(y, context)

    def _sequential_naive(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        u = torch.zeros_like(y)
        for _ in range(self.made.features):  # after pass p, the first p positions are exact
            u, log_d = self._h_inverse(y, self.made(u, context).to(y.dtype))
        return u, log_d.sum(dim=1)

    def _sequential_incremental(self, y: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        runner = IncrementalMADE(self.made, reference=y, context=context)
        columns = y.index_select(1, self.made.order).t()  # (D, batch), by position
        values, log_ds = [], []
        for p in range(self.made.features):
            params = runner.next_params()  # (batch, k): theta of the coordinate at position p
            u, log_d = self._h_inverse_column(columns[p], params)
            runner.feed(u)
            values.append(u)
            log_ds.append(log_d)
        by_position = torch.stack(values, dim=1)
        u = by_position.index_select(1, self.made.input_degrees - 1)  # back to the coordinates' own places
        return u, torch.stack(log_ds, dim=1).sum(dim=1)

    def _h_inverse_column(self, y: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """``h^{-1}`` on one coordinate: ``y`` of shape ``(batch,)``, ``params`` of shape ``(batch, k)``."""
        if self._affine:
            return self._h_inverse(y, params)
        u, log_d = self.transform.inverse(y[:, None], params[:, None, :].contiguous())
        return u[:, 0], log_d[:, 0]

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._parallel(x, context)

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._sequential(z, context)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, transform={self.transform!r}, inverse={self._inverse_method}"


class InverseAutoregressive(MaskedAutoregressive):
    r"""An IAF layer: :math:`x_i = h\big(z_i;\ \theta_i(z_{<i})\big)` in the generative direction.

    The same machinery as :class:`MaskedAutoregressive` with the two directions
    swapped: the MADE reads the noise. Sampling (``inverse``) is one MADE pass;
    density evaluation (``forward``), :math:`z_i = h^{-1}\big(x_i;\ \theta_i(z_{<i})\big)`,
    is sequential, computed with :class:`~flowlib.nets.IncrementalMADE` (or
    :math:`D` MADE passes with ``inverse_method="naive"``; the name refers to the
    sequential direction, which here is ``forward``). With the affine transformer,
    :math:`x_i = z_i e^{s_i(z_{<i})} + t_i(z_{<i})`, Kingma et al.'s
    :math:`x_i = z_i \sigma_i + \mu_i`, and

    .. math::

        \log\left|\det \frac{\partial z}{\partial x}\right| = -\sum_i s_i .

    IAF is the MAF layer used backwards: ``InverseAutoregressive(...)`` computes
    what ``Inverse(MaskedAutoregressive(...))`` computes with the same MADE.
    Arguments as for :class:`MaskedAutoregressive`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> layer = InverseAutoregressive(4, hidden=(16,))
        >>> x, ladj = layer.inverse(torch.randn(3, 4))     # sampling: one pass
        >>> x.shape, ladj.shape
        (torch.Size([3, 4]), torch.Size([3]))
    """

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._sequential(x, context)

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._parallel(z, context)
