r"""Ready-made flows: the models the chapters train, built from flowlib's layers.

One module per family; this package re-exports every builder, so
``from flowlib.models import realnvp`` works whatever the module.

* :mod:`~flowlib.models.coupling`: :func:`nice`, :func:`realnvp`,
  :func:`spline_flow` and :func:`multiscale_realnvp`.

Later chapters add ``glow.py`` (Glow), ``autoregressive.py`` (MAF, IAF) and
``residual.py`` (residual flows) here.

Example:
    >>> import torch
    >>> flow = nice(features=2, layers=4, hidden=(32,))
    >>> flow.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])
"""

from .coupling import multiscale_realnvp, nice, realnvp, spline_flow

__all__ = ["nice", "realnvp", "spline_flow", "multiscale_realnvp"]
