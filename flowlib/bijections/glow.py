r"""Glow's layers: actnorm, invertible 1x1 convolutions, and the flow step that combines them.

Glow :cite:`kingma2018glow` builds an image flow from one repeated step,

.. math::

    \text{step} = \text{affine coupling} \circ \text{1x1 convolution} \circ \text{actnorm},

applied (in the normalizing direction) actnorm first. Actnorm is a per-channel
affine map whose parameters are *initialized from data* so that the first
batch leaves it with zero mean and unit variance per channel, and are then
trained like any other parameter. The 1x1 convolution multiplies the channel
vector of every pixel by the same learned :math:`C \times C` matrix :math:`W`:
a learned generalization of the fixed channel permutation between couplings.
Because :math:`W` acts on each of the :math:`H \cdot W` pixels,

.. math::

    \log\left|\det \frac{\partial z}{\partial x}\right| = H \cdot W \cdot \log|\det W| .

Example:
    >>> import torch
    >>> step = GlowStep((4, 2, 2), hidden_channels=8, generator=torch.Generator().manual_seed(0))
    >>> z, ladj = step(torch.randn(5, 4, 2, 2))
    >>> z.shape, ladj.shape
    (torch.Size([5, 4, 2, 2]), torch.Size([5]))
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..core import Bijection, Compose, as_event_shape, full_precision
from .coupling import AffineCoupling, channel_mask
from .linear import LULinear

__all__ = ["ActNorm", "InvertibleConv1x1", "LUInvertibleConv1x1", "GlowStep", "random_rotation"]


def _spatial_size(event_shape: torch.Size) -> int:
    """``H * W`` for ``(C, H, W)`` events, 1 for vectors ``(C,)``."""
    return math.prod(event_shape[1:])


def _channel_view(parameter: Tensor, event_shape: torch.Size) -> Tensor:
    """A per-channel ``(C,)`` tensor shaped to broadcast over ``(batch, C, *spatial)``."""
    return parameter.reshape(-1, *([1] * (len(event_shape) - 1)))


class ActNorm(Bijection):
    r"""Per-channel affine normalization with data-dependent initialization (Glow's actnorm).

    .. math::

        z_{c} = (x_{c} - m_c)\, e^{s_c}, \qquad
        \log\left|\det \frac{\partial z}{\partial x}\right| = H \cdot W \sum_{c} s_c ,

    for ``(C, H, W)`` images (``H * W`` is 1 for vectors ``(C,)``). The first
    call of :meth:`forward` sets :math:`m_c` to the batch mean of channel
    :math:`c` and :math:`e^{s_c}` to one over its standard deviation, so that the
    output of that batch has zero mean and unit variance per channel; from then
    on :math:`m` and :math:`s` are ordinary trained parameters. This is batch
    normalization without its train/test mismatch: after the first batch the
    layer is one fixed bijection, for every batch size, including 1.

    * The ``initialized`` flag is a buffer: it is saved in the ``state_dict``,
      so a loaded model is never re-initialized from the next batch. Once the
      flag has been read as true, the layer remembers it on the host, so that
      a forward pass on a GPU does not wait for the device to read it again;
      :meth:`load_state_dict` makes it read the (new) flag once more. To
      initialize a trained layer again, call :meth:`initialize` on a batch.
    * A channel with (near) zero variance is only centred (:math:`s_c = 0`),
      never divided by zero.
    * Under ``torch.distributed`` the statistics are averaged over all
      processes, so every rank starts with the same parameters.
    * :meth:`inverse` before any :meth:`forward` uses the current parameters
      (the identity) and does not initialize.

    Args:
        event_shape: ``(C,)`` or ``(C, H, W)``.
        min_std: channels whose standard deviation is below this are only centred.

    Example:
        >>> import torch
        >>> layer = ActNorm((2,))
        >>> x = torch.tensor([[1.0, 10.0], [3.0, 10.0]])   # channel 1 is constant
        >>> z, ladj = layer(x)
        >>> z.tolist(), round(ladj[0].item(), 4)            # centred; channel 0 scaled by 1/1
        ([[-1.0, 0.0], [1.0, 0.0]], 0.0)
        >>> bool(layer.initialized)
        True
    """

    def __init__(self, event_shape: int | Iterable[int], min_std: float = 1e-6) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        if len(self.event_shape) not in (1, 3):
            raise ValueError(f"ActNorm: event_shape must be (C,) or (C, H, W), got {tuple(self.event_shape)}")
        channels = self.event_shape[0]
        dtype = torch.get_default_dtype()
        self.loc = nn.Parameter(torch.zeros(channels, dtype=dtype))
        self.log_scale = nn.Parameter(torch.zeros(channels, dtype=dtype))
        self.register_buffer("initialized", torch.tensor(False))
        self.min_std = float(min_std)
        # A host copy of ``initialized`` once it is true: reading a CUDA buffer with bool()
        # waits for the device on every forward pass. Loading a state reads the buffer again.
        self._known_initialized = False
        self.register_load_state_dict_post_hook(_forget_known_initialization)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set the parameters from the batch ``x`` and mark the layer initialized.

        ``x`` has shape ``(batch, *event_shape)``. The mean and the variance
        are computed in two passes (the mean first, then the mean squared
        deviation from it), which stays accurate for data far from zero, where
        :math:`E[x^2] - E[x]^2` cancels. Under ``torch.distributed`` both sums
        are all-reduced, so every rank gets the statistics of all ranks'
        batches together; every rank must then call this method (it does,
        when it runs the first forward pass).
        """
        with full_precision(x):
            dims = [0, *range(2, x.dim())]
            distributed = dist.is_available() and dist.is_initialized()
            count = x.new_tensor(float(x.shape[0] * _spatial_size(self.event_shape)))
            total = x.sum(dim=dims)
            if distributed:
                dist.all_reduce(count)
                dist.all_reduce(total)
            mean = total / count
            squares = (x - _channel_view(mean, self.event_shape)).square().sum(dim=dims)
            if distributed:
                dist.all_reduce(squares)
            std = (squares / count).sqrt()
            flat = std < self.min_std
            log_scale = torch.where(flat, torch.zeros_like(std), -std.clamp_min(self.min_std).log())
            self.loc.copy_(mean.to(self.loc.dtype))
            self.log_scale.copy_(log_scale.to(self.log_scale.dtype))
            self.initialized.fill_(True)

    def _logabsdet(self, batch: int) -> Tensor:
        return (self.log_scale.sum() * _spatial_size(self.event_shape)).expand(batch)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if not self._known_initialized:
            if not bool(self.initialized):
                self.initialize(x)
            self._known_initialized = True
        with full_precision(x):
            loc = _channel_view(self.loc, self.event_shape)
            scale = _channel_view(self.log_scale.exp(), self.event_shape)
            return (x - loc) * scale, self._logabsdet(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(z):
            loc = _channel_view(self.loc, self.event_shape)
            inverse_scale = _channel_view(torch.exp(-self.log_scale), self.event_shape)
            return z * inverse_scale + loc, -self._logabsdet(z.shape[0])

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, initialized={bool(self.initialized)}"


def _forget_known_initialization(module: nn.Module, incompatible_keys: object) -> None:
    """After ``load_state_dict``: an :class:`ActNorm` reads its loaded ``initialized`` buffer again."""
    module._known_initialized = False


def random_rotation(channels: int, generator: torch.Generator | None = None) -> Tensor:
    """A random orthogonal ``channels x channels`` matrix with determinant +1 (float64), from a QR decomposition."""
    q, r = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # the Haar-distributed orthogonal matrix
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _check_image_shape(owner: str, event_shape: torch.Size) -> None:
    if len(event_shape) != 3:
        raise ValueError(f"{owner}: expected image events (C, H, W), got {tuple(event_shape)}")


def _mix_channels(weight: Tensor, x: Tensor) -> Tensor:
    """Apply the ``C x C`` matrix to the channel vector of every pixel: a 1x1 convolution without bias."""
    return torch.einsum("ij,bjhw->bihw", weight, x)


class InvertibleConv1x1(Bijection):
    r"""Glow's invertible 1x1 convolution with a full weight matrix: :math:`z_{:,h,w} = W x_{:,h,w}`.

    .. math::

        \log\left|\det \frac{\partial z}{\partial x}\right| = H \cdot W \cdot \log|\det W| ,

    computed with ``slogdet`` in :math:`O(C^3)` per call, and the inverse with
    :math:`W^{-1}` (another :math:`O(C^3)`). :class:`LUInvertibleConv1x1` brings
    both down to :math:`O(C)` and :math:`O(C^2)`. :math:`W` starts as a random
    rotation (``log|det W| = 0``), so the layer starts volume preserving.

    Args:
        event_shape: ``(C, H, W)``.
        generator: for the random initial rotation.

    Example:
        >>> import torch
        >>> layer = InvertibleConv1x1((3, 4, 4), generator=torch.Generator().manual_seed(0))
        >>> x = torch.randn(2, 3, 4, 4)
        >>> z, ladj = layer(x)
        >>> torch.allclose(layer.inverse(z)[0], x, atol=1e-5), ladj.abs().max().item() < 1e-5
        (True, True)
    """

    def __init__(self, event_shape: Iterable[int], generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        _check_image_shape("InvertibleConv1x1", self.event_shape)
        rotation = random_rotation(self.event_shape[0], generator)
        self.weight = nn.Parameter(rotation.to(torch.get_default_dtype()))

    def _log_abs_det_weight(self) -> Tensor:
        sign, logabsdet = torch.linalg.slogdet(self.weight)
        if bool(sign == 0) or not bool(torch.isfinite(logabsdet)):
            raise ValueError("InvertibleConv1x1: the weight matrix W is singular, so the layer is not invertible")
        return logabsdet

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(x):
            ladj = self._log_abs_det_weight() * _spatial_size(self.event_shape)
            return _mix_channels(self.weight, x), ladj.expand(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(z):
            ladj = self._log_abs_det_weight() * _spatial_size(self.event_shape)
            return _mix_channels(torch.linalg.inv(self.weight), z), -ladj.expand(z.shape[0])


class LUInvertibleConv1x1(Bijection):
    r"""The invertible 1x1 convolution with :math:`W = P L U` (Glow's LU form), built on :class:`LULinear`.

    :math:`P` is a fixed permutation, :math:`L` unit lower triangular and
    :math:`U` upper triangular with a fixed sign and a learned magnitude on its
    diagonal, so that

    .. math::

        \log\left|\det \frac{\partial z}{\partial x}\right|
        = H \cdot W \sum_{c} \log|U_{cc}| \quad (O(C)),

    and the inverse takes two triangular solves (:math:`O(C^2)`) instead of a
    matrix inverse. The factors are those of :class:`~flowlib.bijections.LULinear`
    (the same parametrization for vectors), started from a random rotation,
    applied to the channel vector of each pixel.

    Args:
        event_shape: ``(C, H, W)``.
        generator: for the random initial rotation.

    Example:
        >>> import torch
        >>> layer = LUInvertibleConv1x1((3, 4, 4), generator=torch.Generator().manual_seed(0))
        >>> x = torch.randn(2, 3, 4, 4)
        >>> z, ladj = layer(x)
        >>> torch.allclose(layer.inverse(z)[0], x, atol=1e-5)
        True
    """

    def __init__(self, event_shape: Iterable[int], generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        _check_image_shape("LUInvertibleConv1x1", self.event_shape)
        self.lu = LULinear(self.event_shape[0], generator=generator, bias=False, initial=random_rotation)

    def weight(self) -> Tensor:
        """The full ``C x C`` matrix :math:`W = P L U`."""
        return self.lu.weight()

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(x):
            ladj = self.lu.log_abs_det_weight() * _spatial_size(self.event_shape)
            return _mix_channels(self.lu.weight(), x), ladj.expand(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(z):
            b, c, h, w = z.shape
            pixels = z.permute(0, 2, 3, 1).reshape(-1, c)
            x = self.lu.solve(pixels).reshape(b, h, w, c).permute(0, 3, 1, 2)
            ladj = self.lu.log_abs_det_weight() * _spatial_size(self.event_shape)
            return x.contiguous(), -ladj.expand(b)


class GlowStep(Compose):
    r"""One step of Glow: actnorm, then an invertible 1x1 convolution, then an affine coupling.

    .. math::

        z = \text{coupling}\big(\text{conv}_{1\times1}(\text{actnorm}(x))\big),

    with the coupling's kept half the first half of the channels and a
    convolutional conditioner whose last layer starts at zero (so a fresh step
    is actnorm followed by a rotation). Its log-determinant is the sum of the
    three layers'.

    Args:
        event_shape: ``(C, H, W)`` with ``C >= 2``.
        hidden_channels: width of the coupling's conditioner.
        lu: use :class:`LUInvertibleConv1x1` (default) or the plain :class:`InvertibleConv1x1`.
        bound: bound of the coupling's log-scale.
        generator: for the 1x1 convolution's initial rotation.
    """

    def __init__(
        self,
        event_shape: Iterable[int],
        hidden_channels: int = 64,
        lu: bool = True,
        bound: float = 3.0,
        generator: torch.Generator | None = None,
    ) -> None:
        shape = as_event_shape(event_shape)
        _check_image_shape("GlowStep", shape)
        if shape[0] < 2:
            raise ValueError(f"GlowStep: the coupling needs at least 2 channels, got {tuple(shape)}")
        conv = LUInvertibleConv1x1(shape, generator) if lu else InvertibleConv1x1(shape, generator)
        coupling = AffineCoupling(channel_mask(shape, first=True), hidden=(hidden_channels,), bound=bound)
        super().__init__(ActNorm(shape), conv, coupling)
