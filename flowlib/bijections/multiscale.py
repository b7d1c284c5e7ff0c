r"""Shape-changing bijections for image flows: squeeze, reshape and multi-scale factor-out.

None of them changes volume (:math:`\log|\det| = 0` for the reshapes), they
only reorganize coordinates so that couplings can work at several scales.

Example:
    >>> import torch
    >>> squeeze = Squeeze((1, 4, 4))
    >>> squeeze.output_event_shape
    torch.Size([4, 2, 2])
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from ..core import Bijection, as_event_shape

__all__ = ["Squeeze", "Reshape", "FactorOut"]


class Squeeze(Bijection):
    r"""Space-to-depth: every 2x2 block of pixels becomes 4 channels, ``(C, H, W) -> (4C, H/2, W/2)``.

    After a squeeze, a channel-wise mask splits each 2x2 neighbourhood between
    the kept and the transformed halves, and the conditioner sees a wider
    spatial context per pixel. A permutation of coordinates: log-det 0.
    """

    def __init__(self, event_shape: Iterable[int]) -> None:
        super().__init__()
        shape = as_event_shape(event_shape)
        if len(shape) != 3 or shape[1] % 2 or shape[2] % 2:
            raise ValueError(f"Squeeze expects a (C, H, W) event with even H and W, got {tuple(shape)}")
        self.event_shape = shape

    @property
    def output_event_shape(self) -> torch.Size:
        c, h, w = self.event_shape
        return torch.Size((4 * c, h // 2, w // 2))

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        b, (c, h, w) = x.shape[0], self.event_shape
        z = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return z, x.new_zeros(b)

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        b, (c, h, w) = z.shape[0], self.event_shape
        x = z.reshape(b, c, 2, 2, h // 2, w // 2).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h, w)
        return x, z.new_zeros(b)


class Reshape(Bijection):
    """Reshape events, e.g. ``(1, 8, 8) -> (64,)`` to put an image into a vector flow. Log-det 0."""

    def __init__(self, event_shape: Iterable[int], output_shape: Iterable[int]) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        self._output_shape = as_event_shape(output_shape)
        if math.prod(self.event_shape) != math.prod(self._output_shape):
            raise ValueError(
                f"Reshape: {tuple(self.event_shape)} and {tuple(self._output_shape)} have different sizes"
            )

    @property
    def output_event_shape(self) -> torch.Size:
        return self._output_shape

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], *self._output_shape), x.new_zeros(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return z.reshape(z.shape[0], *self.event_shape), z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        return f"{tuple(self.event_shape)} -> {tuple(self._output_shape)}"


class FactorOut(Bijection):
    r"""RealNVP's multi-scale step: transform, send part of the result to the output, keep working on the rest.

    .. math::

        h = \text{head}(x), \quad (h_{\text{out}}, h_{\text{rest}}) = \text{split}(h), \quad
        z = \big(h_{\text{out}},\ \text{tail}(h_{\text{rest}})\big),

    with :math:`\log|\det| = \log|\det J_{\text{head}}| + \log|\det J_{\text{tail}}|`
    (the split is a coordinate selection). The first ``split`` channels of the
    head's ``(C, H, W)`` output leave the flow: they are modelled directly by the
    base distribution, while the tail, often itself a ``FactorOut`` after a
    squeeze, spends its computation on the remaining channels. The output is
    flat: ``(D,)`` with ``D`` the number of input coordinates, factored
    coordinates first.

    Args:
        head: a bijection whose output events are ``(C, H, W)``.
        split: number of channels factored out, ``0 < split < C``.
        tail: a bijection on the remaining ``(C - split, H, W)`` events; its
            output may have any shape (it is flattened).
    """

    def __init__(self, head: Bijection, split: int, tail: Bijection) -> None:
        super().__init__()
        shape = head.output_event_shape
        if len(shape) != 3 or not 0 < split < shape[0]:
            raise ValueError(
                f"FactorOut: the head must output (C, H, W) events and 0 < split < C; got {tuple(shape)}, split={split}"
            )
        rest = torch.Size((shape[0] - split, shape[1], shape[2]))
        if tail.event_shape != rest:
            raise ValueError(f"FactorOut: the tail must take events of shape {tuple(rest)}, got {tuple(tail.event_shape)}")
        self.head, self.tail, self.split = head, tail, int(split)
        self.event_shape = head.event_shape
        self._factored_shape = torch.Size((split, shape[1], shape[2]))
        self._num_factored = math.prod(self._factored_shape)

    @property
    def output_event_shape(self) -> torch.Size:
        return torch.Size((math.prod(self.event_shape),))

    @property
    def logdet_is_exact(self) -> bool:  # type: ignore[override]
        """Exact only if both the head's and the tail's log-determinants are."""
        return self.head.logdet_is_exact and self.tail.logdet_is_exact

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        h, ladj_head = self.head._forward(x, context)
        out, rest = h[:, : self.split], h[:, self.split :]
        z_rest, ladj_tail = self.tail._forward(rest, context)
        z = torch.cat([out.reshape(x.shape[0], -1), z_rest.reshape(x.shape[0], -1)], dim=1)
        return z, ladj_head + ladj_tail

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        b = z.shape[0]
        out = z[:, : self._num_factored].reshape(b, *self._factored_shape)
        z_rest = z[:, self._num_factored :].reshape(b, *self.tail.output_event_shape)
        rest, ladj_tail = self.tail._inverse(z_rest, context)
        x, ladj_head = self.head._inverse(torch.cat([out, rest], dim=1), context)
        return x, ladj_head + ladj_tail

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, split={self.split}"
