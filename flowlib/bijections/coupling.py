r"""Coupling layers (NICE, RealNVP, neural spline flows) and their masks.

A coupling layer splits the coordinates with a binary mask into a part
:math:`x_A` that passes through unchanged and a part :math:`x_B` that is
transformed element-wise by a scalar bijection :math:`h` whose parameters are
computed from :math:`x_A` by an arbitrary network, the *conditioner* :math:`\Theta`:

.. math::

    z_A = x_A, \qquad z_B = h\big(x_B;\, \Theta(x_A)\big), \qquad
    \frac{\partial z}{\partial x} =
    \begin{pmatrix} I & 0 \\ \frac{\partial z_B}{\partial x_A} & \operatorname{diag} h'(x_B) \end{pmatrix} .

The Jacobian is block triangular, so :math:`\log|\det| = \sum_{i \in B} \log|h'(x_i)|`,
and the inverse only needs :math:`h^{-1}`, because :math:`x_A = z_A` gives the
conditioner's input back: :math:`x_B = h^{-1}(z_B; \Theta(z_A))`. The conditioner
is never inverted, so it can be any network.

Masks are boolean tensors of the event shape: ``True`` marks the coordinates
that are kept (and fed to the conditioner), ``False`` those transformed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from ..core import Bijection, as_event_shape, full_precision
from ..nets import MLP, ConvNet
from .scalar import AdditiveTransform, AffineTransform, RationalQuadraticSpline, ScalarTransform

__all__ = [
    "half_mask",
    "alternating_mask",
    "checkerboard_mask",
    "channel_mask",
    "Coupling",
    "AdditiveCoupling",
    "AffineCoupling",
    "SplineCoupling",
]


def half_mask(features: int, first: bool = True) -> Tensor:
    """Keep the first half of ``features`` coordinates (or the second, with ``first=False``).

    With an odd count the kept half is the smaller one: ``half_mask(3)`` keeps ``[0]``.
    """
    if features < 2:
        raise ValueError(f"a coupling needs at least 2 features, got {features}")
    mask = torch.zeros(features, dtype=torch.bool)
    mask[: features // 2] = True
    return mask if first else ~mask


def alternating_mask(features: int, even: bool = True) -> Tensor:
    """Keep the even-indexed coordinates (or the odd ones, with ``even=False``)."""
    if features < 2:
        raise ValueError(f"a coupling needs at least 2 features, got {features}")
    mask = torch.arange(features) % 2 == 0
    return mask if even else ~mask


def checkerboard_mask(event_shape: Iterable[int], parity: int = 0) -> Tensor:
    """A checkerboard over the pixels of a ``(C, H, W)`` event: keep pixels with ``(i + j) % 2 == parity``."""
    shape = as_event_shape(event_shape)
    if len(shape) != 3 or shape[1] * shape[2] < 2:
        raise ValueError(f"checkerboard_mask expects a (C, H, W) event with at least 2 pixels, got {tuple(shape)}")
    rows = torch.arange(shape[1]).reshape(-1, 1)
    cols = torch.arange(shape[2]).reshape(1, -1)
    board = (rows + cols) % 2 == parity
    return board.expand(shape).clone()


def channel_mask(event_shape: Iterable[int], first: bool = True) -> Tensor:
    """Keep the first half of the channels of a ``(C, H, W)`` event (or the second half)."""
    shape = as_event_shape(event_shape)
    if len(shape) != 3 or shape[0] < 2:
        raise ValueError(f"channel_mask expects a (C, H, W) event with C >= 2, got {tuple(shape)}")
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[: shape[0] // 2] = True
    return mask if first else ~mask


class Coupling(Bijection):
    r"""The generic coupling layer: any scalar transform, any conditioner.

    Args:
        mask: boolean tensor of the event shape; ``True`` = kept and fed to the
            conditioner, ``False`` = transformed. Both parts must be non-empty.
        conditioner: a network computing the transform's parameters.
        transform: the scalar bijection :math:`h` (a
            :class:`~flowlib.bijections.scalar.ScalarTransform`).
        conditioner_input: ``"gather"`` (default for vectors): the network gets
            the kept coordinates as a flat vector ``(batch, n_kept)`` and returns
            ``(batch, n_transformed * num_params)``. ``"masked"`` (for
            convolutional networks on images): it gets the whole input with the
            transformed coordinates set to zero, ``(batch, C, H, W)``, and
            returns ``(batch, num_params * C, H, W)``.

    The conditioner may run in bfloat16 under autocast; its output is cast to the
    input's dtype and the transform and log-det are computed in full precision.

    Example:
        >>> import torch
        >>> from flowlib.nets import MLP
        >>> from flowlib.bijections.scalar import AffineTransform
        >>> layer = Coupling(half_mask(4), MLP(2, 2 * 2), AffineTransform())
        >>> z, ladj = layer(torch.randn(3, 4))
        >>> z.shape, ladj.shape
        (torch.Size([3, 4]), torch.Size([3]))
    """

    def __init__(
        self,
        mask: Tensor,
        conditioner: nn.Module,
        transform: ScalarTransform,
        conditioner_input: str = "gather",
    ) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.all() or not mask.any():
            raise ValueError("Coupling: the mask must keep some coordinates and transform the others")
        if conditioner_input not in ("gather", "masked"):
            raise ValueError(f"Coupling: conditioner_input must be 'gather' or 'masked', got {conditioner_input!r}")
        if conditioner_input == "masked" and mask.dim() != 3:
            raise ValueError("Coupling: conditioner_input='masked' is for (C, H, W) image events")
        if not isinstance(transform, ScalarTransform):
            raise TypeError(f"Coupling: transform must be a ScalarTransform, got {type(transform).__name__}")
        self.event_shape = as_event_shape(mask.shape)
        self.conditioner = conditioner
        self.transform = transform
        self.conditioner_input = conditioner_input
        flat = mask.reshape(-1)
        self.register_buffer("mask", mask.clone(), persistent=False)
        self.register_buffer("kept_index", torch.nonzero(flat).reshape(-1), persistent=False)
        self.register_buffer("changed_index", torch.nonzero(~flat).reshape(-1), persistent=False)

    @property
    def num_kept(self) -> int:
        return int(self.kept_index.numel())

    @property
    def num_changed(self) -> int:
        return int(self.changed_index.numel())

    def _params(self, x: Tensor, flat: Tensor, context: Tensor | None) -> Tensor:
        batch, p = x.shape[0], self.transform.num_params
        if self.conditioner_input == "gather":
            inputs = flat.index_select(1, self.kept_index)
        else:
            inputs = x * self.mask.to(x.dtype)
        out = self.conditioner(inputs) if context is None else self.conditioner(inputs, context)
        if self.conditioner_input == "gather":
            expected = (batch, self.num_changed * p)
            if tuple(out.shape) != expected:
                raise ValueError(f"Coupling: the conditioner returned shape {tuple(out.shape)}, expected {expected}")
            params = out.reshape(batch, self.num_changed, p)
        else:
            channels, height, width = self.event_shape
            expected = (batch, p * channels, height, width)
            if tuple(out.shape) != expected:
                raise ValueError(f"Coupling: the conditioner returned shape {tuple(out.shape)}, expected {expected}")
            params = out.reshape(batch, p, -1).transpose(1, 2).index_select(1, self.changed_index)
        return params.to(x.dtype)

    def _couple(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        flat = x.reshape(x.shape[0], -1)
        params = self._params(x, flat, context)
        with full_precision(x):
            changed = flat.index_select(1, self.changed_index)
            step = self.transform.inverse if inverse else self.transform.forward
            out, log_d = step(changed, params)
            result = flat.index_copy(1, self.changed_index, out).reshape(x.shape)
            return result, log_d.sum(dim=1)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._couple(x, context, inverse=False)

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._couple(z, context, inverse=True)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, kept={self.num_kept}, transform={self.transform!r}"


def _default_conditioner(
    mask: Tensor, num_params: int, hidden: Sequence[int], context_features: int
) -> tuple[nn.Module, str]:
    if mask.dim() == 3:
        channels = mask.shape[0]
        return ConvNet(channels, num_params * channels, hidden[0], context_features), "masked"
    kept = int(mask.sum())
    return MLP(kept, (mask.numel() - kept) * num_params, hidden, context_features), "gather"


class _BuiltCoupling(Coupling):
    """A coupling that builds its default conditioner when none is given."""

    def __init__(
        self,
        mask: Tensor,
        transform: ScalarTransform,
        conditioner: nn.Module | None,
        hidden: Sequence[int],
        context_features: int,
        conditioner_input: str | None,
    ) -> None:
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if conditioner is None:
            conditioner, default_input = _default_conditioner(mask, transform.num_params, hidden, context_features)
            conditioner_input = conditioner_input or default_input
        super().__init__(mask, conditioner, transform, conditioner_input or "gather")


class AdditiveCoupling(_BuiltCoupling):
    r"""NICE's additive coupling :math:`z_B = x_B + t(x_A)`: volume preserving, :math:`\log|\det| = 0`.

    Stack several with alternating masks and end with a
    :class:`~flowlib.bijections.elementwise.Scaling` layer: without one, the
    whole flow preserves volume and cannot change how spread out the data is.

    Args:
        mask: which coordinates are kept (see :func:`half_mask`, ...).
        conditioner: optional network; by default an :class:`~flowlib.nets.MLP`
            (vectors) or :class:`~flowlib.nets.ConvNet` (images) with a zero last layer.
        hidden: hidden sizes of the default conditioner.
        context_features: size of a context vector, for conditional flows.
    """

    def __init__(
        self,
        mask: Tensor,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (128, 128),
        context_features: int = 0,
        conditioner_input: str | None = None,
    ) -> None:
        super().__init__(mask, AdditiveTransform(), conditioner, hidden, context_features, conditioner_input)


class AffineCoupling(_BuiltCoupling):
    r"""RealNVP's affine coupling :math:`z_B = x_B \odot e^{s(x_A)} + t(x_A)`.

    :math:`\log|\det| = \sum_{i \in B} s_i`, with the log-scale softly bounded to
    :math:`(-s_{\max}, s_{\max})` (see :class:`~flowlib.bijections.scalar.AffineTransform`):
    an unbounded :math:`e^{s}` overflows early in training and turns the loss
    into NaN. The default conditioner's last layer is zero, so the layer starts
    as the identity.

    Args:
        mask: which coordinates are kept.
        conditioner: optional network (default MLP or ConvNet, zero last layer).
        hidden: hidden sizes of the default conditioner.
        bound: the bound :math:`s_{\max}` of the log-scale.
        context_features: size of a context vector, for conditional flows.

    Example:
        >>> import torch
        >>> layer = AffineCoupling(half_mask(2))
        >>> z, ladj = layer(torch.tensor([[1.0, 3.0]]))
        >>> z.tolist(), ladj.tolist()      # zero-initialized: the identity
        ([[1.0, 3.0]], [0.0])
    """

    def __init__(
        self,
        mask: Tensor,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (128, 128),
        bound: float = 5.0,
        context_features: int = 0,
        conditioner_input: str | None = None,
    ) -> None:
        super().__init__(mask, AffineTransform(bound), conditioner, hidden, context_features, conditioner_input)


class SplineCoupling(_BuiltCoupling):
    r"""A neural-spline coupling: :math:`z_B` is a rational-quadratic spline of :math:`x_B` with knots from :math:`x_A`.

    See :class:`~flowlib.bijections.scalar.RationalQuadraticSpline`; outside
    :math:`[-R, R]` the map is the identity.

    Args:
        mask: which coordinates are kept.
        conditioner: optional network (default MLP or ConvNet, zero last layer).
        hidden: hidden sizes of the default conditioner.
        bins: number of spline bins.
        bound: :math:`R`: the spline acts on :math:`[-R, R]`.
        context_features: size of a context vector, for conditional flows.
    """

    def __init__(
        self,
        mask: Tensor,
        conditioner: nn.Module | None = None,
        hidden: Sequence[int] = (128, 128),
        bins: int = 8,
        bound: float = 5.0,
        context_features: int = 0,
        conditioner_input: str | None = None,
    ) -> None:
        transform = RationalQuadraticSpline(bins, bound)
        super().__init__(mask, transform, conditioner, hidden, context_features, conditioner_input)

