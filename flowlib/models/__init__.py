r"""Ready-made flows: the models the chapters train, built from flowlib's layers.

One module per family; this package re-exports every builder, so
``from flowlib.models import realnvp`` works whatever the module.

* :mod:`~flowlib.models.coupling`: :func:`nice`, :func:`realnvp`,
  :func:`spline_flow` and :func:`multiscale_realnvp`;
* :mod:`~flowlib.models.glow`: :func:`glow`, with :func:`encode` and
  :func:`decode` for the full multi-scale latent;
* :mod:`~flowlib.models.residual`: :func:`iresnet`, :func:`planar_flow`
  and :func:`radial_flow`;
* :mod:`~flowlib.models.autoregressive`: :func:`maf` and :func:`iaf`.

Example:
    >>> import torch
    >>> flow = nice(features=2, layers=4, hidden=(32,))
    >>> flow.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])
"""

from .autoregressive import iaf, maf
from .coupling import multiscale_realnvp, nice, realnvp, spline_flow
from .glow import decode, encode, glow
from .residual import iresnet, planar_flow, radial_flow

__all__ = ["nice", "realnvp", "spline_flow", "multiscale_realnvp", "glow", "encode", "decode", "iresnet", "planar_flow", "radial_flow", "maf", "iaf"]
