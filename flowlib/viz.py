r"""Plotting helpers shared by the chapters (figures only; no modelling code here).

Every function draws on a matplotlib ``Axes`` it is given, so the chapters
control the figure layout.

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, torch
    >>> from flowlib import Flow, StandardNormal
    >>> from flowlib.bijections import ElementwiseAffine
    >>> flow = Flow(StandardNormal(2), ElementwiseAffine(torch.tensor([1.0, 2.0])))
    >>> fig, ax = plt.subplots()
    >>> _ = plot_density(ax, flow.log_prob, (-3, 3), (-3, 3))
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["density_on_grid", "plot_density", "plot_samples"]


@torch.no_grad()
def density_on_grid(
    log_prob: Callable[[Tensor], Tensor],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n: int = 200,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``exp(log_prob)`` on an ``n x n`` grid; return ``(X, Y, density)`` as numpy arrays.

    The grid points are cell centres, so ``density.sum() * cell_area`` is a
    midpoint-rule estimate of the integral over the window.
    """
    xs = torch.linspace(xlim[0], xlim[1], n + 1, dtype=dtype)
    ys = torch.linspace(ylim[0], ylim[1], n + 1, dtype=dtype)
    xs = 0.5 * (xs[1:] + xs[:-1])
    ys = 0.5 * (ys[1:] + ys[:-1])
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1).to(device)
    density = log_prob(points).exp().reshape(n, n).cpu()
    return grid_x.numpy(), grid_y.numpy(), density.numpy()


def plot_density(
    ax,
    log_prob: Callable[[Tensor], Tensor],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n: int = 200,
    cmap: str = "viridis",
    title: str | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
):
    """Draw the density ``exp(log_prob)`` of a 2-D model as a heat map; return the image."""
    grid_x, grid_y, density = density_on_grid(log_prob, xlim, ylim, n, dtype, device)
    image = ax.pcolormesh(grid_x, grid_y, density, cmap=cmap, shading="auto")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return image


def plot_samples(
    ax,
    samples: Tensor | np.ndarray,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    title: str | None = None,
    size: float = 2.0,
    color: str = "C0",
    alpha: float = 0.5,
):
    """Scatter 2-D samples (a ``(n, 2)`` tensor or array)."""
    points = samples.detach().cpu().numpy() if isinstance(samples, Tensor) else np.asarray(samples)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"plot_samples expects an (n, 2) array, got shape {points.shape}")
    artist = ax.scatter(points[:, 0], points[:, 1], s=size, c=color, alpha=alpha, linewidths=0)
    if xlim is not None:
        ax.set_xlim(*xlim)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return artist
