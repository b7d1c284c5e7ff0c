r"""Plain conditioner networks: the fully connected and convolutional networks inside coupling layers.

A conditioner can be any network: invertibility never asks anything of it. Two
details matter for flows:

* its **last layer starts at zero**, so every coupling layer starts as the
  identity map and a deep flow starts as a well-behaved identity instead of a
  random composition of many maps (the hidden layers keep PyTorch's default
  initialization);
* it may take a **context** (conditional flows): the context is concatenated
  to the input of an MLP, or broadcast over the pixels and concatenated as
  channels for a convolutional network.

Example:
    >>> import torch
    >>> net = MLP(1, 2, hidden=(128, 128))
    >>> net(torch.randn(5, 1)).abs().max().item()   # zero last layer: output 0 at init
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["MLP", "ConvNet", "zero_init"]


def zero_init(layer: nn.Module) -> nn.Module:
    """Set a layer's weight and bias to zero (in place) and return it."""
    for name in ("weight", "bias"):
        tensor = getattr(layer, name, None)
        if tensor is not None:
            nn.init.zeros_(tensor)
    return layer


class MLP(nn.Module):
    r"""A fully connected network :math:`\mathbb{R}^{n} \to \mathbb{R}^{m}` with ReLU hidden layers.

    Args:
        in_features: size of the input.
        out_features: size of the output.
        hidden: sizes of the hidden layers.
        context_features: size of an optional context vector concatenated to the input.
        activation: the hidden non-linearity (a module class).
        zero_last: start the output layer at zero (default ``True``).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (128, 128),
        context_features: int = 0,
        activation: type[nn.Module] = nn.ReLU,
        zero_last: bool = True,
    ) -> None:
        super().__init__()
        sizes = [in_features + context_features, *hidden, out_features]
        if any(int(s) < 1 for s in sizes):
            raise ValueError(f"MLP: every layer size must be >= 1, got {sizes}")
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(activation())
        if zero_last:
            zero_init(layers[-1])
        self.network = nn.Sequential(*layers)
        self.context_features = context_features

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features:
            if context is None:
                raise ValueError(f"MLP: this network expects a context of {self.context_features} features")
            x = torch.cat([x, context.reshape(context.shape[0], -1).to(x.dtype)], dim=-1)
        return self.network(x)


class ConvNet(nn.Module):
    r"""A small convolutional network for image couplings: 3x3 conv, ReLU, 1x1 conv, ReLU, 3x3 conv (zero).

    Maps ``(batch, in_channels, H, W)`` to ``(batch, out_channels, H, W)``
    (padding keeps the size).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        hidden_channels: width of the hidden layers.
        context_features: size of an optional context vector, broadcast over
            the pixels and appended as channels.
    """

    def __init__(
        self, in_channels: int, out_channels: int, hidden_channels: int = 64, context_features: int = 0
    ) -> None:
        super().__init__()
        self.context_features = context_features
        self.network = nn.Sequential(
            nn.Conv2d(in_channels + context_features, hidden_channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden_channels, hidden_channels, 1),
            nn.ReLU(),
            zero_init(nn.Conv2d(hidden_channels, out_channels, 3, padding=1)),
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_features:
            if context is None:
                raise ValueError(f"ConvNet: this network expects a context of {self.context_features} features")
            maps = context.reshape(context.shape[0], -1, 1, 1).to(x.dtype).expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, maps], dim=1)
        return self.network(x)
