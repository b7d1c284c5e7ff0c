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

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["density_on_grid", "plot_density", "plot_samples", "plot_warped_grid"]


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


__all__ += ["plot_learning_curve", "plot_fit_2d"]


def plot_learning_curve(
    ax,
    values: Sequence[float] | np.ndarray | Tensor,
    reference: float | None = None,
    reference_label: str | None = None,
    label: str | None = None,
    xlabel: str = "training step",
    ylabel: str = "negative log-likelihood (nats)",
    title: str | None = None,
    color: str = "C0",
):
    """Plot one training-curve value per step, with an optional horizontal reference line.

    The reference is the value the curve should reach, when it is known: the
    closed-form optimum of a maximum-likelihood fit, or :math:`\\log Z` for an
    ELBO. A legend is drawn when a label or a reference label is given.

    Args:
        ax: the matplotlib ``Axes`` to draw on.
        values: the curve, one number per step (list, array or 1-D tensor).
        reference: y-value of a dashed horizontal line (``None``: no line).
        reference_label: legend text of the reference line.
        label: legend text of the curve.
        xlabel, ylabel, title: axis labels and title.
        color: colour of the curve.

    Returns:
        The ``Line2D`` of the curve.
    """
    if isinstance(values, Tensor):
        curve = values.detach().cpu().numpy()
    else:
        curve = np.asarray(values, dtype=float)
    if curve.ndim != 1 or curve.size == 0:
        raise ValueError(f"plot_learning_curve expects a non-empty 1-D sequence, got shape {curve.shape}")
    (line,) = ax.plot(np.arange(curve.size), curve, color=color, lw=1.5, label=label)
    if reference is not None:
        ax.axhline(float(reference), color="k", ls="--", lw=1.0, label=reference_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if label is not None or reference_label is not None:
        ax.legend()
    ax.grid(alpha=0.3)
    return line


def plot_fit_2d(
    axes,
    log_prob: Callable[[Tensor], Tensor],
    data: Tensor | np.ndarray,
    samples: Tensor | np.ndarray,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n: int = 200,
    titles: tuple[str, str, str] = ("training data", "model density", "model samples"),
    colorbar: bool = True,
    dtype: torch.dtype = torch.float32,
):
    """Compare a fitted 2-D model with its data on three axes: data, density, samples.

    The first panel scatters the data; the second draws ``exp(log_prob)`` as a
    heat map (see :func:`plot_density`) with the data on top as white dots; the third
    scatters samples drawn from the model, in the same window, so that the
    panels can be compared by eye.

    Args:
        axes: three matplotlib ``Axes``.
        log_prob: maps an ``(m, 2)`` tensor to ``(m,)`` log-densities.
        data: the training points, shape ``(n_data, 2)``.
        samples: points drawn from the model, shape ``(n_samples, 2)``.
        xlim, ylim: the common plotting window.
        n: grid resolution of the density panel.
        titles: the three panel titles.
        colorbar: add a colour bar (density units) next to the density panel.
        dtype: dtype of the grid handed to ``log_prob``.

    Returns:
        The density image (a ``QuadMesh``) of the middle panel.
    """
    if len(axes) != 3:
        raise ValueError(f"plot_fit_2d needs three axes, got {len(axes)}")
    plot_samples(axes[0], data, xlim, ylim, title=titles[0], color="C0")
    image = plot_density(axes[1], log_prob, xlim, ylim, n=n, title=titles[1], dtype=dtype)
    plot_samples(axes[1], data, xlim, ylim, color="white", size=1.0, alpha=0.4)
    if colorbar:
        axes[1].figure.colorbar(image, ax=axes[1], shrink=0.8, label="density")
    plot_samples(axes[2], samples, xlim, ylim, title=titles[2], color="C1")
    for ax in axes:
        ax.set_xlabel("$x_1$")
    axes[0].set_ylabel("$x_2$")
    return image


def _map_points(fn: Callable[[Tensor], Tensor | tuple[Tensor, Tensor]], points: Tensor) -> Tensor:
    """Apply ``fn`` to an ``(N, 2)`` batch; accept a bijection's ``(output, logabsdet)`` pair too."""
    out = fn(points)
    if isinstance(out, tuple):
        out = out[0]
    if not isinstance(out, Tensor) or out.shape != points.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"plot_warped_grid: fn must map an (N, 2) tensor to an (N, 2) tensor, got {shape}")
    return out


def plot_warped_grid(
    ax,
    fn: Callable[[Tensor], Tensor | tuple[Tensor, Tensor]],
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    n: int = 12,
    resolution: int = 10,
    color_by: str | None = "jacobian",
    cmap: str = "RdBu_r",
    vmax: float | None = None,
    linewidth: float = 0.6,
    linecolor: str = "0.2",
    title: str | None = None,
    dtype: torch.dtype = torch.float64,
):
    r"""Draw the image under a 2-D map ``fn`` of a square grid, each cell coloured by its area change.

    The rectangle ``xlim x ylim`` is cut into ``n x n`` cells. Every cell edge is
    sampled at ``resolution`` points and pushed through ``fn``, so the image of a
    cell is drawn as the curved patch it really is. The fill colour of a cell is
    its local area change, on a logarithmic scale centred on 1 (with the default
    diverging colormap: white keeps its area, red grows, blue shrinks):

    * ``color_by="jacobian"``: :math:`|\det J_{fn}|` at the centre of the cell,
      from autograd (``fn`` must be differentiable and treat rows independently);
    * ``color_by="area"``: area of the mapped patch divided by the area of the
      cell (no gradients needed; tends to the Jacobian value as ``n`` grows);
    * ``color_by=None``: grid lines only.

    Args:
        ax: the matplotlib ``Axes`` to draw on.
        fn: maps an ``(N, 2)`` tensor to an ``(N, 2)`` tensor. A flowlib
            bijection's ``forward`` or ``inverse`` also works: of the
            ``(output, logabsdet)`` pair it returns, the output is used.
        xlim, ylim: the rectangle of the *input* space whose grid is mapped.
        n: number of cells along each side.
        resolution: points per cell edge (1 draws straight-edged quadrilaterals).
        color_by: ``"jacobian"``, ``"area"`` or ``None`` (see above).
        cmap: matplotlib colormap name for the fill.
        vmax: the colour scale spans ``[1 / vmax, vmax]``; by default the
            largest area change (or its reciprocal), at least 2.
        linewidth, linecolor: style of the mapped grid lines.
        title: optional axes title.
        dtype: dtype of the points given to ``fn`` (match ``fn``'s parameters).

    Returns:
        The ``PolyCollection`` of coloured cells (pass it to ``fig.colorbar``;
        ``.get_array()`` holds the area changes, cell ``(i, j)`` at index
        ``j * n + i``), or the ``LineCollection`` of grid lines if ``color_by`` is ``None``.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt, torch
        >>> fig, ax = plt.subplots()
        >>> cells = plot_warped_grid(ax, lambda z: 2 * z, (0, 1), (0, 1), n=4)
        >>> round(float(cells.get_array().max()), 6)   # x = 2z multiplies every area by 4
        4.0
    """
    from matplotlib import colors
    from matplotlib.collections import LineCollection, PolyCollection

    if color_by not in ("jacobian", "area", None):
        raise ValueError(f"plot_warped_grid: color_by must be 'jacobian', 'area' or None, got {color_by!r}")
    if int(n) < 1 or int(resolution) < 1:
        raise ValueError(f"plot_warped_grid: n and resolution must be >= 1, got n={n}, resolution={resolution}")
    n, r = int(n), int(resolution)
    m = n * r + 1
    xs = torch.linspace(xlim[0], xlim[1], m, dtype=dtype)
    ys = torch.linspace(ylim[0], ylim[1], m, dtype=dtype)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")  # [row j, column i] = (xs[i], ys[j])
    with torch.no_grad():
        fine = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
        mapped = _map_points(fn, fine).detach().cpu().double().numpy().reshape(m, m, 2)

    # boundary of cell (0, 0) as (row, column) offsets, counter-clockwise; shifted for every cell
    steps = np.arange(r)
    rows = np.concatenate([np.zeros(r), steps, np.full(r, r), r - steps]).astype(int)
    cols = np.concatenate([steps, np.full(r, r), r - steps, np.zeros(r)]).astype(int)
    cell_j, cell_i = np.divmod(np.arange(n * n), n)
    polygons = mapped[cell_j[:, None] * r + rows[None, :], cell_i[:, None] * r + cols[None, :]]  # (n*n, 4r, 2)

    lines = [mapped[j * r, :, :] for j in range(n + 1)] + [mapped[:, i * r, :] for i in range(n + 1)]
    grid_lines = LineCollection(lines, colors=linecolor, linewidths=linewidth)

    cells = None
    if color_by is not None:
        width = (xlim[1] - xlim[0]) / n
        height = (ylim[1] - ylim[0]) / n
        if color_by == "area":
            px, py = polygons[..., 0], polygons[..., 1]
            area = 0.5 * np.abs(np.sum(px * np.roll(py, -1, axis=1) - np.roll(px, -1, axis=1) * py, axis=1))
            values = area / abs(width * height)
        else:
            centres = torch.stack(
                [
                    torch.as_tensor(xlim[0] + (cell_i + 0.5) * width, dtype=dtype),
                    torch.as_tensor(ylim[0] + (cell_j + 0.5) * height, dtype=dtype),
                ],
                dim=1,
            )
            with torch.enable_grad():
                centres.requires_grad_(True)
                out = _map_points(fn, centres)
                row0 = torch.autograd.grad(out[:, 0].sum(), centres, retain_graph=True)[0]
                row1 = torch.autograd.grad(out[:, 1].sum(), centres)[0]
            values = (row0[:, 0] * row1[:, 1] - row0[:, 1] * row1[:, 0]).abs().detach().cpu().double().numpy()
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError("plot_warped_grid: the map collapses or blows up a cell (area change 0 or not finite)")
        top = vmax if vmax is not None else max(2.0, float(values.max()), float(1.0 / values.min()))
        cells = PolyCollection(
            polygons, array=values, cmap=cmap, norm=colors.LogNorm(vmin=1.0 / top, vmax=top), edgecolors="none"
        )
        ax.add_collection(cells)
    ax.add_collection(grid_lines)

    low, high = mapped.reshape(-1, 2).min(axis=0), mapped.reshape(-1, 2).max(axis=0)
    pad = 0.03 * np.maximum(high - low, 1e-12)
    ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
    ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return cells if cells is not None else grid_lines


__all__ += ["plot_scalar_bijection"]


def plot_scalar_bijection(
    axes,
    fn: Callable[[Tensor], tuple[Tensor, Tensor]],
    xlim: tuple[float, float],
    n: int = 401,
    label: str | None = None,
    color: str = "C0",
    linestyle: str = "-",
    title: str | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Draw a scalar bijection :math:`h` (upper axes) and its derivative :math:`|h'|` (lower axes).

    ``fn`` maps an ``(n, 1)`` tensor of inputs to ``(h(x), log|h'(x)|)`` with
    shapes ``(n, 1)`` and ``(n,)``: the ``forward`` of any flowlib bijection with
    event shape ``(1,)`` fits, and so does its ``inverse``. The derivative is
    drawn from the log-determinant the map *reports*, so the lower panel shows
    exactly what enters the likelihood; a dotted line marks 0 on it.

    Args:
        axes: two matplotlib ``Axes``: the map and its derivative.
        fn: the map, as described above.
        xlim: the input interval drawn.
        n: number of grid points.
        label: legend text of both curves.
        color, linestyle: style of both curves.
        title: title of the upper axes.
        dtype: dtype of the grid handed to ``fn`` (match its parameters).

    Returns:
        ``(x, h(x), |h'(x)|)`` as 1-D numpy arrays.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt, torch
        >>> from flowlib.bijections import ElementwiseAffine
        >>> fig, axes = plt.subplots(2, 1)
        >>> layer = ElementwiseAffine(torch.tensor([2.0], dtype=torch.float64))
        >>> x, h, slope = plot_scalar_bijection(axes, layer.forward, (-1, 1), n=5)
        >>> h.tolist(), slope.tolist()
        ([-2.0, -1.0, 0.0, 1.0, 2.0], [2.0, 2.0, 2.0, 2.0, 2.0])
    """
    if len(axes) != 2:
        raise ValueError(f"plot_scalar_bijection needs two axes (map, derivative), got {len(axes)}")
    grid = torch.linspace(xlim[0], xlim[1], int(n), dtype=dtype).unsqueeze(1)
    with torch.no_grad():
        values, log_slope = fn(grid)
    if values.shape != grid.shape or log_slope.shape != (grid.shape[0],):
        raise ValueError(
            "plot_scalar_bijection: fn must return (h(x), log|h'(x)|) of shapes (n, 1) and (n,), got "
            f"{tuple(values.shape)} and {tuple(log_slope.shape)}"
        )
    x = grid[:, 0].cpu().double().numpy()
    h = values[:, 0].cpu().double().numpy()
    slope = log_slope.exp().cpu().double().numpy()
    axes[0].plot(x, h, color=color, ls=linestyle, lw=1.6, label=label)
    axes[1].plot(x, slope, color=color, ls=linestyle, lw=1.6, label=label)
    axes[1].axhline(0.0, color="0.5", lw=0.8, ls=":")
    for ax in axes:
        ax.set_xlim(*xlim)
        ax.grid(alpha=0.3)
    axes[1].set_xlabel("$x$")
    if title:
        axes[0].set_title(title)
    return x, h, slope


__all__ += ["image_grid"]


def image_grid(images: Tensor, columns: int = 8, pad: int = 1, pad_value: float = 0.0) -> np.ndarray:
    """Tile a batch of single-channel images ``(n, 1, H, W)`` or ``(n, H, W)`` into one array for ``imshow``.

    Images are laid out row by row, ``columns`` per row, with ``pad`` pixels of
    ``pad_value`` between them.

    Example:
        >>> import torch
        >>> image_grid(torch.zeros(10, 1, 8, 8), columns=5).shape
        (17, 44)
    """
    images = images.detach().cpu()
    if images.dim() == 4:
        if images.shape[1] != 1:
            raise ValueError(f"image_grid expects single-channel images, got shape {tuple(images.shape)}")
        images = images[:, 0]
    if images.dim() != 3 or images.shape[0] == 0:
        raise ValueError(f"image_grid expects (n, 1, H, W) or (n, H, W) images, got shape {tuple(images.shape)}")
    n, height, width = images.shape
    rows = -(-n // columns)
    grid = torch.full((rows * (height + pad) - pad, columns * (width + pad) - pad), float(pad_value))
    for index in range(n):
        top, left = (index // columns) * (height + pad), (index % columns) * (width + pad)
        grid[top : top + height, left : left + width] = images[index]
    return grid.numpy()


__all__ += ["plot_cells", "plot_trajectory", "plot_block_diagram"]


def plot_cells(
    ax,
    values: Tensor | np.ndarray,
    labels: Sequence[Sequence[object]] | np.ndarray | Tensor | None = None,
    cmap: str = "Greys",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    fontsize: float = 9.0,
    edgecolor: str = "0.6",
):
    """Draw a small 2-D array as a grid of square cells, optionally with a text label in every cell.

    Row 0 is drawn at the top, like an image. Made for the pictures of
    coupling flows: masks (booleans), sparsity patterns of Jacobians, pixels
    numbered to show where a squeeze moves them. Labels are written in black on
    light cells and in white on dark ones. A 1-D input is drawn as one row.

    Args:
        ax: the matplotlib ``Axes`` to draw on.
        values: the array, shape ``(rows, columns)`` or ``(columns,)``; booleans become 0/1.
        labels: optional array of the same shape whose entries are written in the cells.
        cmap, vmin, vmax: colour map and its range (default: the data's range).
        title: optional axes title.
        fontsize: size of the labels.
        edgecolor: colour of the lines between cells.

    Returns:
        The ``AxesImage`` (pass it to ``fig.colorbar`` if the colours carry values).

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt, torch
        >>> fig, ax = plt.subplots()
        >>> image = plot_cells(ax, torch.tensor([[True, False], [False, True]]), labels=[[0, 1], [2, 3]])
        >>> image.get_array().shape, len(ax.texts)
        ((2, 2), 4)
    """
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=float)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"plot_cells expects a non-empty 1-D or 2-D array, got shape {array.shape}")
    rows, columns = array.shape
    image = ax.imshow(array, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.hlines(np.arange(rows + 1) - 0.5, -0.5, columns - 0.5, colors=edgecolor, linewidths=0.8)
    ax.vlines(np.arange(columns + 1) - 0.5, -0.5, rows - 0.5, colors=edgecolor, linewidths=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    if labels is not None:
        if isinstance(labels, Tensor):
            labels = labels.detach().cpu().numpy()
        text = np.asarray(labels, dtype=object)
        if text.ndim == 1:
            text = text[None, :]
        if text.shape != array.shape:
            raise ValueError(f"plot_cells: labels must have the shape of values {array.shape}, got {text.shape}")
        for (i, j), label in np.ndenumerate(text):
            red, green, blue, _ = image.cmap(image.norm(array[i, j]))
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
            ax.text(j, i, str(label), ha="center", va="center", fontsize=fontsize, color="black" if light else "white")
    if title:
        ax.set_title(title)
    return image


def plot_trajectory(
    axes,
    states: Sequence[Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    color_values: Tensor | np.ndarray | None = None,
    cmap: str = "viridis",
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    size: float = 2.0,
    alpha: float = 0.7,
):
    """Scatter the states of 2-D points as they pass through a flow, one panel per state.

    ``states`` is what :meth:`flowlib.Compose.forward_trajectory` returns:
    ``[x, f_1(x), f_2(f_1(x)), ...]``, each of shape ``(n, 2)``. Every point
    keeps its colour in all panels (``color_values``, one number per point,
    e.g. a coordinate of the data), so the eye can follow it through the layers.

    Args:
        axes: one matplotlib ``Axes`` per state.
        states: the ``(n, 2)`` tensors or arrays, all with the same ``n``.
        titles: optional panel titles.
        color_values: ``(n,)`` values mapped through ``cmap``; by default the
            first coordinate of the first state.
        cmap: the colour map.
        xlim, ylim: a common window for all panels (default: each panel's own).
        size, alpha: marker size and opacity.

    Returns:
        The list of scatter artists, one per panel.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt, torch
        >>> fig, axes = plt.subplots(1, 2)
        >>> x = torch.randn(50, 2)
        >>> len(plot_trajectory(axes, [x, 2 * x], titles=["x", "2x"]))
        2
    """
    if len(axes) != len(states):
        raise ValueError(f"plot_trajectory: got {len(states)} states but {len(axes)} axes")
    arrays = [s.detach().cpu().numpy() if isinstance(s, Tensor) else np.asarray(s) for s in states]
    if not arrays or any(a.ndim != 2 or a.shape[1] != 2 or a.shape[0] != arrays[0].shape[0] for a in arrays):
        raise ValueError("plot_trajectory: every state must be an (n, 2) array with the same n")
    if color_values is None:
        colors = arrays[0][:, 0]
    else:
        colors = color_values.detach().cpu().numpy() if isinstance(color_values, Tensor) else np.asarray(color_values)
        if colors.shape != (arrays[0].shape[0],):
            raise ValueError(f"plot_trajectory: color_values must have shape ({arrays[0].shape[0]},), got {colors.shape}")
    low, high = float(np.min(colors)), float(np.max(colors))
    artists = []
    for index, (ax, points) in enumerate(zip(axes, arrays)):
        artists.append(
            ax.scatter(points[:, 0], points[:, 1], c=colors, cmap=cmap, vmin=low, vmax=high, s=size, alpha=alpha,
                       linewidths=0)
        )
        if xlim is not None:
            ax.set_xlim(*xlim)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_aspect("equal")
        if titles is not None:
            ax.set_title(titles[index])
    return artists


def _box_exit(centre: np.ndarray, toward: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Where the ray from a box's centre towards ``toward`` leaves the box (half sizes ``half``)."""
    direction = toward - centre
    scales = [half[k] / abs(direction[k]) for k in range(2) if direction[k] != 0]
    return centre + (min(scales) if scales else 0.0) * direction


def plot_block_diagram(
    ax,
    boxes: dict[str, tuple[float, float, str]],
    arrows: Sequence[tuple[str, str]],
    box_size: tuple[float, float] = (2.0, 0.8),
    colors: dict[str, str] | None = None,
    fontsize: float = 9.0,
    arrow_labels: dict[tuple[str, str], str] | None = None,
):
    """Draw a diagram of labelled boxes joined by arrows, e.g. the stages of a flow architecture.

    Args:
        ax: the matplotlib ``Axes`` (its axis lines are turned off).
        boxes: ``name -> (x, y, text)``: the centre of each box in data
            coordinates and its (possibly multi-line) text.
        arrows: ``(from_name, to_name)`` pairs; each arrow runs from the edge
            of one box to the edge of the other.
        box_size: ``(width, height)`` of every box, in data coordinates.
        colors: optional ``name -> face colour`` (default a light grey).
        fontsize: size of the box texts.
        arrow_labels: optional ``(from_name, to_name) -> text`` written next
            to the middle of an arrow.

    Returns:
        A dict ``name -> FancyBboxPatch``.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> patches = plot_block_diagram(ax, {"x": (0, 0, "data"), "z": (3, 0, "noise")}, [("x", "z")])
        >>> sorted(patches)
        ['x', 'z']
    """
    from matplotlib.patches import FancyBboxPatch

    unknown = {name for pair in arrows for name in pair} - set(boxes)
    if unknown:
        raise ValueError(f"plot_block_diagram: arrows name unknown boxes {sorted(unknown)}")
    width, height = box_size
    half = np.array([width / 2, height / 2])
    patches = {}
    for name, (x, y, text) in boxes.items():
        face = (colors or {}).get(name, "0.92")
        patch = FancyBboxPatch(
            (x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.02,rounding_size=0.1",
            facecolor=face, edgecolor="0.3", linewidth=1.0,
        )
        ax.add_patch(patch)
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)
        patches[name] = patch
    for start, end in arrows:
        a = np.array(boxes[start][:2], dtype=float)
        b = np.array(boxes[end][:2], dtype=float)
        tail, head = _box_exit(a, b, half), _box_exit(b, a, half)
        ax.annotate("", xy=tuple(head), xytext=tuple(tail), arrowprops=dict(arrowstyle="-|>", color="0.2", lw=1.2))
        label = (arrow_labels or {}).get((start, end))
        if label:
            middle = (tail + head) / 2
            ax.text(middle[0], middle[1], " " + label, ha="left", va="center", fontsize=fontsize - 1, color="0.25")
    centres = np.array([box[:2] for box in boxes.values()], dtype=float)
    ax.set_xlim(centres[:, 0].min() - width, centres[:, 0].max() + width)
    ax.set_ylim(centres[:, 1].min() - height, centres[:, 1].max() + height)
    ax.set_axis_off()
    return patches


__all__ += ["plot_made"]


def plot_made(ax, made, title: str | None = None, fontsize: float = 9.0, cmap: str = "viridis") -> dict[str, int]:
    r"""Draw a MADE as its connectivity graph: the inputs at the bottom, each hidden layer, the outputs on top.

    Every node shows its degree :math:`m` (inputs: their position in the order;
    outputs: the degree of their coordinate, whose parameters :math:`\theta_i`
    they hold) and is coloured by it; a line joins two nodes when the mask keeps
    the weight between them. The ``k`` outputs of a coordinate are drawn as
    one node. Works on any object with ``degrees()``, ``layers[l].mask``,
    ``features`` and ``outputs_per_feature``, such as :class:`flowlib.nets.MADE`.

    Returns:
        ``{"edges": kept connections drawn, "possible": connections of a dense network}``.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from flowlib.nets import MADE
        >>> fig, ax = plt.subplots()
        >>> plot_made(ax, MADE(3, outputs_per_feature=1, hidden=(4,)))
        {'edges': 12, 'possible': 24}
    """
    from matplotlib import colormaps

    features, k = made.features, made.outputs_per_feature
    degrees = [d.detach().cpu() for d in made.degrees()] + [made.degrees()[0].detach().cpu()]
    masks = [layer.mask.detach().cpu() > 0 for layer in made.layers]
    masks[-1] = masks[-1].view(k, features, -1).any(dim=0)  # one node per coordinate
    widest = max(len(d) for d in degrees)
    colour = colormaps[cmap]
    positions = []
    for level, values in enumerate(degrees):
        n = len(values)
        xs = np.arange(n) - (n - 1) / 2 if n > 1 else np.zeros(1)
        positions.append(np.stack([xs * (widest / max(n, 1)) ** 0.35, np.full(n, float(level))], axis=1))
    edges = 0
    possible = 0
    for level, mask in enumerate(masks):
        lower, upper = positions[level], positions[level + 1]
        possible += mask.numel()
        for i, j in torch.nonzero(mask).tolist():
            ax.plot([lower[j, 0], upper[i, 0]], [lower[j, 1], upper[i, 1]], color="0.55", lw=0.7, zorder=1)
            edges += 1
    top = len(degrees) - 1
    for level, (values, xy) in enumerate(zip(degrees, positions)):
        for (x, y), degree in zip(xy, values.tolist()):
            face = colour(degree / max(features, 1))
            ax.scatter([x], [y], s=260, color=face, edgecolors="0.2", linewidths=0.8, zorder=2)
            light = 0.299 * face[0] + 0.587 * face[1] + 0.114 * face[2] > 0.5
            ax.text(x, y, str(degree), ha="center", va="center", fontsize=fontsize - 1,
                    color="black" if light else "white", zorder=3)
        if level == 0:
            for i, (x, y) in enumerate(xy):
                ax.text(x, y - 0.32, f"$x_{{{i}}}$", ha="center", va="top", fontsize=fontsize)
        elif level == top:
            for i, (x, y) in enumerate(xy):
                ax.text(x, y + 0.32, rf"$\theta_{{{i}}}$", ha="center", va="bottom", fontsize=fontsize)
    names = ["inputs"] + [f"hidden {level}" for level in range(1, top)] + ["outputs"]
    left = min(xy[:, 0].min() for xy in positions) - 0.9
    for level, name in enumerate(names):
        ax.text(left, level, name, ha="right", va="center", fontsize=fontsize, color="0.3")
    ax.set_xlim(left - 1.6, max(xy[:, 0].max() for xy in positions) + 0.6)
    ax.set_ylim(-0.8, top + 0.8)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return {"edges": edges, "possible": possible}
