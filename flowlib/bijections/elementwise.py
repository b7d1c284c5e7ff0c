r"""Element-wise bijections: the same scalar map applied to every coordinate.

If :math:`z_i = h(x_i)` for every :math:`i`, the Jacobian is diagonal and

.. math::

    \log\left|\det \frac{\partial z}{\partial x}\right| = \sum_i \log |h'(x_i)| .

Element-wise maps cannot create dependence between coordinates; chapter 3
says why and chapters 4-6 build the layers that can.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from ..core import Bijection, _as_float_tensor, as_event_shape, input_checks_enabled

__all__ = ["ElementwiseAffine"]


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
        scale_t = _as_float_tensor(scale).detach().clone()
        shift_t = _as_float_tensor(shift, scale_t).detach().clone().to(scale_t.dtype)
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
