r"""Conditioner networks: the neural networks that compute a layer's parameters.

A conditioner never has to be inverted, so it can be any network; what a flow
asks of it is only *which inputs it may read*.

* :mod:`~flowlib.nets.mlp`: :class:`MLP` and :class:`ConvNet`, plain networks
  for coupling layers (they see the kept half and nothing else), and
  :func:`zero_init`;
* :mod:`~flowlib.nets.made`: :class:`MaskedLinear` and :class:`MADE`, one
  network whose outputs for coordinate :math:`i` read only the coordinates
  before :math:`i` in a chosen order (autoregressive layers), and
  :class:`IncrementalMADE`, which evaluates a MADE one degree at a time for
  the sequential direction of those layers.

Example:
    >>> import torch
    >>> from flowlib.nets import MLP, MADE
    >>> MLP(1, 2, hidden=(16,))(torch.randn(5, 1)).shape
    torch.Size([5, 2])
    >>> MADE(3, outputs_per_feature=2, hidden=(8,))(torch.randn(5, 3)).shape
    torch.Size([5, 3, 2])
"""

from .made import MADE, IncrementalMADE, MaskedLinear, autoregressive_order, made_degrees, made_masks
from .mlp import MLP, ConvNet, zero_init

__all__ = ["MLP", "ConvNet", "zero_init", "MaskedLinear", "MADE", "IncrementalMADE", "made_degrees", "made_masks",
           "autoregressive_order"]
