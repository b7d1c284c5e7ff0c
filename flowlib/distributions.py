r"""Base distributions of the noise space.

They are ``nn.Module`` s, not ``torch.distributions`` objects, so that their
state (and learnable mean and scale) moves with ``.to(device)``, is saved in
``state_dict`` and works under DDP. Both work for vector events ``(D,)`` and
image events ``(C, H, W)``; ``log_prob`` sums over the event dimensions and
returns one value per sample.

Example:
    >>> import torch
    >>> base = StandardNormal((1, 8, 8))
    >>> base.rsample((5,)).shape
    torch.Size([5, 1, 8, 8])
    >>> base.log_prob(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2])
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .constants import LOG_2PI
from .core import as_event_shape, check_input

__all__ = ["StandardNormal", "DiagonalGaussian", "check_temperature"]


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float if it is a positive finite number; raise a clear error otherwise.

    Sampling at temperature :math:`T` scales the base distribution's standard
    deviation by :math:`T` (Glow's "temperature"): :math:`T < 1` trades
    diversity for typical-looking samples.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a positive number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be positive and finite, got {temperature}")
    return float(temperature)


class StandardNormal(nn.Module):
    r"""The standard normal :math:`\mathcal{N}(0, I)` over events of shape ``event_shape``.

    .. math::

        \log p(z) = -\tfrac12 \lVert z \rVert^2 - \tfrac{D}{2}\log 2\pi,
        \qquad D = \textstyle\prod_i \mathrm{event\_shape}_i .

    The distribution has no parameters; a zero-sized buffer remembers the
    device and dtype it was moved to, so samples are created there.

    Example:
        >>> import torch
        >>> round(StandardNormal(2).log_prob(torch.zeros(1, 2)).item(), 4)   # -log 2 pi
        -1.8379
    """

    def __init__(self, event_shape: int | Iterable[int]) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        self.register_buffer("_anchor", torch.zeros(0))

    @property
    def dim(self) -> int:
        """Number of scalar dimensions of one event."""
        return math.prod(self.event_shape)

    def log_prob(self, z: Tensor) -> Tensor:
        check_input(self, z, self.event_shape)
        return -0.5 * z.pow(2).flatten(1).sum(1) - 0.5 * self.dim * LOG_2PI

    def rsample(self, sample_shape: tuple[int, ...] = (), temperature: float = 1.0) -> Tensor:
        r"""Draw from :math:`\mathcal{N}(0, T^2 I)` (the standard normal at temperature :math:`T = 1`)."""
        shape = torch.Size(sample_shape) + self.event_shape
        eps = torch.randn(shape, device=self._anchor.device, dtype=self._anchor.dtype)
        temperature = check_temperature(temperature)
        return eps if temperature == 1.0 else eps * temperature

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = (), temperature: float = 1.0) -> Tensor:
        return self.rsample(sample_shape, temperature)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"


class DiagonalGaussian(nn.Module):
    r"""A Gaussian with a mean and a per-dimension scale, learnable by default.

    .. math::

        \log p(z) = \sum_i \Big[-\log\sigma_i - \tfrac12\Big(\frac{z_i-\mu_i}{\sigma_i}\Big)^2\Big]
        - \tfrac{D}{2}\log 2\pi .

    The scale is stored as its logarithm, so it stays positive during training.

    Args:
        event_shape: shape of one event.
        loc: initial mean (default 0), broadcastable to ``event_shape``.
        scale: initial standard deviation (default 1), positive.
        learnable: if ``False`` the mean and scale are fixed buffers.

    Example:
        >>> import torch
        >>> base = DiagonalGaussian(1, loc=1.0, scale=0.5)
        >>> round(base.log_prob(torch.ones(1, 1)).item(), 4)   # log N(1; 1, 0.5^2) = log 2 - 0.5 log 2 pi
        -0.2258
    """

    def __init__(
        self,
        event_shape: int | Iterable[int],
        loc: float | Tensor = 0.0,
        scale: float | Tensor = 1.0,
        learnable: bool = True,
    ) -> None:
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        loc_t = torch.as_tensor(loc, dtype=torch.get_default_dtype()).expand(self.event_shape).clone()
        scale_t = torch.as_tensor(scale, dtype=torch.get_default_dtype()).expand(self.event_shape).clone()
        if not bool((scale_t > 0).all()) or not bool(torch.isfinite(scale_t).all()):
            raise ValueError(f"DiagonalGaussian: scale must be positive and finite, got {scale}")
        if learnable:
            self.loc = nn.Parameter(loc_t)
            self.log_scale = nn.Parameter(scale_t.log())
        else:
            self.register_buffer("loc", loc_t)
            self.register_buffer("log_scale", scale_t.log())

    @property
    def scale(self) -> Tensor:
        return self.log_scale.exp()

    def log_prob(self, z: Tensor) -> Tensor:
        check_input(self, z, self.event_shape)
        u = (z - self.loc) * torch.exp(-self.log_scale)
        return (-0.5 * u.pow(2) - self.log_scale).flatten(1).sum(1) - 0.5 * math.prod(self.event_shape) * LOG_2PI

    def rsample(self, sample_shape: tuple[int, ...] = (), temperature: float = 1.0) -> Tensor:
        r"""Draw from :math:`\mathcal{N}(\mu, T^2 \operatorname{diag}\sigma^2)`; :math:`T = 1` is the distribution itself."""
        shape = torch.Size(sample_shape) + self.event_shape
        eps = torch.randn(shape, device=self.loc.device, dtype=self.loc.dtype)
        temperature = check_temperature(temperature)
        if temperature != 1.0:
            eps = eps * temperature
        return self.loc + self.scale * eps

    @torch.no_grad()
    def sample(self, sample_shape: tuple[int, ...] = (), temperature: float = 1.0) -> Tensor:
        return self.rsample(sample_shape, temperature)

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"
