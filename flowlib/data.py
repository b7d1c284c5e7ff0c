r"""Data for the course: 2-D toy sets with their true densities, sklearn's 8x8 digits, and the
preprocessing that turns a model's NLL into bits per dimension.

Everything is generated or ships with scikit-learn: nothing is downloaded.

**Toy sets.** Each ``name(n, seed=0, **options)`` returns a float32 tensor of
shape ``(n, 2)``; the same ``seed`` gives the same points. Where the density of
the process that generates the points is known, ``name_log_prob(x, **options)``
evaluates it (same options), so a chapter can compare a model's NLL with the
best possible one, the entropy of the data:

=================  =====================================  ==========================
name               process                                 true log-density
=================  =====================================  ==========================
moons              ``sklearn.datasets.make_moons``        yes (1-D quadrature)
circles            two noisy rings, uniform angles        yes (closed form, Bessel)
eight_gaussians    8 isotropic Gaussians on a circle      yes (closed form)
checkerboard       uniform on the black squares           yes (closed form)
pinwheel           5 curved Gaussian arms                 no
two_spirals        two interleaved noisy spirals          no
=================  =====================================  ==========================

**Digits.** :func:`digits` gives sklearn's 1,797 8x8 digit images (pixel values
0..16) split once and for all into 1,257 / 270 / 270 images.

**From a density on preprocessed data to bits/dim.** Integer pixels are
dequantized to :math:`v = (x + u)/17 \in [0, 1)^D` (:func:`dequantize`), then
possibly standardized (:class:`Standardizer`) or logit-transformed
(:func:`logit_transform`); each step returns its log-determinant so that
:func:`bits_per_dim` can convert the model's NLL back to the discrete data.

Example:
    >>> x = toy_dataset("moons", 1000, seed=0)
    >>> x.shape, x.dtype
    (torch.Size([1000, 2]), torch.float32)
    >>> scaler = Standardizer().fit(x)
    >>> v = scaler.transform(x)   # log p_x(x) = log p_v(v) + scaler.logabsdet
    >>> round(bits_per_dim(0.0, num_dims=64, levels=17), 4)   # uniform on [0,1)^64: log2(17)
    4.0875
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "moons",
    "circles",
    "eight_gaussians",
    "checkerboard",
    "pinwheel",
    "two_spirals",
    "moons_log_prob",
    "circles_log_prob",
    "eight_gaussians_log_prob",
    "checkerboard_log_prob",
    "TOY_DATASETS",
    "TOY_LOG_PROBS",
    "toy_dataset",
    "toy_log_prob",
    "Standardizer",
    "DIGITS_SPLIT_SIZES",
    "digits",
    "dequantize",
    "logit_transform",
    "inverse_logit_transform",
    "bits_per_dim",
]

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- input checks


def _check_n(n: Any) -> int:
    if isinstance(n, bool):
        raise TypeError(f"n must be a positive int, got {n!r}")
    try:
        value = operator.index(n)
    except TypeError as error:
        raise TypeError(f"n must be a positive int (the number of points), got {type(n).__name__} {n!r}") from error
    if value < 1:
        raise ValueError(f"n must be a positive int (the number of points), got {value}")
    return value


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    try:
        value = operator.index(seed)
    except TypeError as error:
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}") from error
    if not 0 <= value < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {value}")
    return value


def _check_nonnegative(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _check_points(x: Any, owner: str) -> Tensor:
    """A float tensor of 2-D points, shape ``(batch, 2)``, returned as float64."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: expected a torch.Tensor of shape (batch, 2), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: expected a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"{owner}: expected points of shape (batch, 2), got {tuple(x.shape)}")
    return x.double()


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _to_float32(points: Tensor | np.ndarray) -> Tensor:
    return torch.as_tensor(points).to(torch.float32).contiguous()


# --------------------------------------------------------------------------- toy sets


def moons(n: int, seed: int = 0, noise: float = 0.05) -> Tensor:
    r"""Two interleaving half circles: ``sklearn.datasets.make_moons(n, noise=noise, random_state=seed)``.

    The upper moon is :math:`(\cos\theta, \sin\theta)`, the lower one
    :math:`(1 - \cos\theta, \tfrac12 - \sin\theta)`, :math:`\theta \in [0, \pi]`,
    each point plus :math:`\mathcal{N}(0, \mathrm{noise}^2 I)`. sklearn puts
    ``n // 2`` points on the upper moon at evenly spaced angles and shuffles.
    This is the data of the benchmark protocol's tasks A and C.

    Example:
        >>> moons(4, seed=1).shape
        torch.Size([4, 2])
    """
    n, seed = _check_n(n), _check_seed(seed)
    noise = _check_nonnegative("moons: noise", noise)
    from sklearn.datasets import make_moons

    points, _ = make_moons(n_samples=n, noise=noise, random_state=seed)
    return _to_float32(points)


def circles(n: int, seed: int = 0, noise: float = 0.05, factor: float = 0.5) -> Tensor:
    r"""Two concentric noisy rings of radii 1 and ``factor``, half of the points on each.

    Each point picks a ring with probability 1/2, an angle uniform on
    :math:`[0, 2\pi)`, and adds :math:`\mathcal{N}(0, \mathrm{noise}^2 I)`.
    The picture is that of ``sklearn.datasets.make_circles``, but the angles
    are random rather than evenly spaced, so the points are independent draws
    from the density of :func:`circles_log_prob`.

    Example:
        >>> circles(3, seed=0).shape
        torch.Size([3, 2])
    """
    n, seed = _check_n(n), _check_seed(seed)
    noise = _check_nonnegative("circles: noise", noise)
    factor = _check_positive("circles: factor", factor)
    g = _generator(seed)
    radius = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.5, 1.0, factor)
    angle = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    points = radius[:, None] * torch.stack([angle.cos(), angle.sin()], 1)
    points = points + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return _to_float32(points)


def _eight_centers(radius: float) -> Tensor:
    angles = torch.arange(8, dtype=torch.float64) * (math.pi / 4)
    return radius * torch.stack([angles.cos(), angles.sin()], 1)


def eight_gaussians(n: int, seed: int = 0, radius: float = 2.0, std: float = 0.25) -> Tensor:
    r"""An equal mixture of 8 isotropic Gaussians, centred at angles :math:`k\pi/4` on a circle.

    .. math::

        p(x) = \frac18 \sum_{k=0}^{7} \mathcal{N}\big(x;\; r(\cos\tfrac{k\pi}{4}, \sin\tfrac{k\pi}{4}),\; s^2 I\big),

    with :math:`r` = ``radius`` and :math:`s` = ``std``. See :func:`eight_gaussians_log_prob`.

    Example:
        >>> eight_gaussians(5, seed=3).shape
        torch.Size([5, 2])
    """
    n, seed = _check_n(n), _check_seed(seed)
    radius = _check_positive("eight_gaussians: radius", radius)
    std = _check_nonnegative("eight_gaussians: std", std)
    g = _generator(seed)
    component = torch.randint(0, 8, (n,), generator=g)
    points = _eight_centers(radius)[component] + std * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return _to_float32(points)


def _checker_geometry(bound: float, num_squares: int) -> tuple[float, float, int]:
    bound = _check_positive("checkerboard: bound", bound)
    if isinstance(num_squares, bool) or not isinstance(num_squares, int) or num_squares < 1:
        raise ValueError(f"checkerboard: num_squares must be a positive int, got {num_squares!r}")
    side = 2 * bound / num_squares
    num_black = (num_squares * num_squares + 1) // 2
    return bound, side, num_black


def _checker_cells(x: Tensor, bound: float, side: float) -> Tensor:
    """Integer cell indices ``(i, j)`` of each point (float64 arithmetic, the one definition of a cell)."""
    return torch.floor((x.double() + bound) / side).long()


def checkerboard(n: int, seed: int = 0, bound: float = 4.0, num_squares: int = 4) -> Tensor:
    r"""Uniform on the black squares of a ``num_squares`` x ``num_squares`` board covering :math:`[-b, b]^2`.

    The cell :math:`(i, j)` (counted from the lower left corner, :math:`b` =
    ``bound``) is black when :math:`i + j` is even; all black squares have the
    same probability. See :func:`checkerboard_log_prob`.

    Example:
        >>> x = checkerboard(1000, seed=0)
        >>> bool(((x >= -4) & (x < 4)).all())
        True
    """
    n, seed = _check_n(n), _check_seed(seed)
    bound, side, _ = _checker_geometry(bound, num_squares)
    black = [(i, j) for i in range(num_squares) for j in range(num_squares) if (i + j) % 2 == 0]
    black_t = torch.tensor(black, dtype=torch.float64)
    g = _generator(seed)
    cell = black_t[torch.randint(0, len(black), (n,), generator=g)]
    points64 = -bound + (cell + torch.rand(n, 2, generator=g, dtype=torch.float64)) * side
    points = points64.to(torch.float32)
    # Rounding to float32 can move a point onto the edge of its square; step it back inside, so that
    # every sample has a finite log-density under checkerboard_log_prob (which uses the same cell rule).
    for _ in range(8):
        wrong = _checker_cells(points, bound, side) != cell.long()
        if not bool(wrong.any()):
            break
        centre = (-bound + (cell + 0.5) * side).to(torch.float32)
        points = torch.where(wrong, torch.nextafter(points, centre), points)
    return points.contiguous()


def pinwheel(
    n: int,
    seed: int = 0,
    num_arms: int = 5,
    radial_std: float = 0.3,
    tangential_std: float = 0.1,
    rate: float = 0.25,
) -> Tensor:
    r"""``num_arms`` curved Gaussian arms (the pinwheel of Johnson et al., 2016).

    A point of arm :math:`k` is :math:`2 R(\phi_k + \mathrm{rate}\, e^{f_1}) f` with
    :math:`f \sim \mathcal{N}((1, 0), \mathrm{diag}(\sigma_r^2, \sigma_t^2))`,
    :math:`\phi_k = 2\pi k / \mathrm{num\_arms}` and :math:`R(\alpha)` the rotation by
    :math:`-\alpha`: the farther out, the more the arm bends.

    Example:
        >>> pinwheel(6, seed=0).shape
        torch.Size([6, 2])
    """
    n, seed = _check_n(n), _check_seed(seed)
    if isinstance(num_arms, bool) or not isinstance(num_arms, int) or num_arms < 1:
        raise ValueError(f"pinwheel: num_arms must be a positive int, got {num_arms!r}")
    radial_std = _check_nonnegative("pinwheel: radial_std", radial_std)
    tangential_std = _check_nonnegative("pinwheel: tangential_std", tangential_std)
    rate = float(rate)
    g = _generator(seed)
    arm = torch.randint(0, num_arms, (n,), generator=g)
    f = torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.tensor([radial_std, tangential_std])
    f[:, 0] += 1.0
    angle = 2 * math.pi * arm.double() / num_arms + rate * torch.exp(f[:, 0])
    cos, sin = angle.cos(), angle.sin()
    points = 2 * torch.stack([f[:, 0] * cos + f[:, 1] * sin, -f[:, 0] * sin + f[:, 1] * cos], 1)
    return _to_float32(points)


def two_spirals(n: int, seed: int = 0, noise: float = 0.1, turns: float = 1.5) -> Tensor:
    r"""Two interleaved spirals, each the other turned by 180 degrees.

    With :math:`u \sim U[0, 1)` and :math:`t = 2\pi\,\mathrm{turns}\sqrt{u}` (so the
    points spread evenly along the curve), a point is
    :math:`\pm\tfrac{1}{3}(-t\cos t,\; t\sin t) + \mathcal{N}(0, \mathrm{noise}^2 I)`,
    the sign picked with probability 1/2.

    Example:
        >>> two_spirals(6, seed=0).shape
        torch.Size([6, 2])
    """
    n, seed = _check_n(n), _check_seed(seed)
    noise = _check_nonnegative("two_spirals: noise", noise)
    turns = _check_positive("two_spirals: turns", turns)
    g = _generator(seed)
    t = 2 * math.pi * turns * torch.rand(n, generator=g, dtype=torch.float64).sqrt()
    sign = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    points = sign[:, None] * torch.stack([-t * t.cos(), t * t.sin()], 1) / 3
    points = points + noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return _to_float32(points)


# --------------------------------------------------------------------------- true log-densities


def _log_normal2(x: Tensor, centres: Tensor, std: float) -> Tensor:
    """``log N(x_b; centres_k, std^2 I)`` in 2-D, shape ``(batch, K)``."""
    sq = (x.pow(2).sum(1, keepdim=True) + centres.pow(2).sum(1) - 2 * x @ centres.T).clamp_min(0)
    return -0.5 * sq / std**2 - 2 * math.log(std) - _LOG_2PI


def eight_gaussians_log_prob(x: Tensor, radius: float = 2.0, std: float = 0.25) -> Tensor:
    r"""The exact log-density of :func:`eight_gaussians` (same options), shape ``(batch,)``.

    .. math::

        \log p(x) = \operatorname{logsumexp}_k \Big[-\frac{\lVert x - c_k\rVert^2}{2s^2}\Big]
        - \log 8 - 2\log s - \log 2\pi .

    Example:
        >>> import torch
        >>> x = torch.tensor([[2.0, 0.0]])   # a centre: log(1/8) - log(2 pi 0.25^2)
        >>> round(eight_gaussians_log_prob(x).item(), 4)
        -1.1447
    """
    x64 = _check_points(x, "eight_gaussians_log_prob")
    radius = _check_positive("eight_gaussians_log_prob: radius", radius)
    std = _check_positive("eight_gaussians_log_prob: std", std)
    log_p = torch.logsumexp(_log_normal2(x64, _eight_centers(radius), std), 1) - math.log(8)
    return log_p.to(x.dtype)


def checkerboard_log_prob(x: Tensor, bound: float = 4.0, num_squares: int = 4) -> Tensor:
    r"""The exact log-density of :func:`checkerboard` (same options), shape ``(batch,)``.

    :math:`-\log(\text{area of the black squares})` on a black square (8 squares
    of area 4, :math:`-\log 32`, by default) and
    :math:`-\infty` elsewhere. A square holds its lower and left edges (cells
    are :math:`[a, a + \text{side})`), so points on a boundary get one answer.

    Example:
        >>> import torch
        >>> checkerboard_log_prob(torch.tensor([[-3.0, -3.0], [-1.0, -3.0]], dtype=torch.float64)).tolist()
        [-3.4657359027997265, -inf]
    """
    x64 = _check_points(x, "checkerboard_log_prob")
    bound, side, num_black = _checker_geometry(bound, num_squares)
    cells = _checker_cells(x64, bound, side)
    inside = ((cells >= 0) & (cells < num_squares)).all(1)
    black = inside & (cells.sum(1) % 2 == 0)
    log_p = torch.full_like(x64[:, 0], -math.inf)
    log_p[black] = -math.log(num_black * side * side)
    return log_p.to(x.dtype)


def _ring_log_prob(rho: Tensor, radius: float, noise: float) -> Tensor:
    # (1/2pi) \int N(x; R(cos t, sin t), s^2 I) dt = exp(-(rho^2 + R^2)/(2 s^2)) I0(rho R / s^2) / (2 pi s^2);
    # with i0e(z) = exp(-z) I0(z):  -(rho - R)^2 / (2 s^2) + log i0e(rho R / s^2) - log(2 pi s^2).
    z = rho * radius / noise**2
    return -0.5 * (rho - radius).pow(2) / noise**2 + torch.log(torch.special.i0e(z)) - math.log(2 * math.pi * noise**2)


def circles_log_prob(x: Tensor, noise: float = 0.05, factor: float = 0.5) -> Tensor:
    r"""The exact log-density of :func:`circles` (same options), shape ``(batch,)``.

    A ring of radius :math:`R` blurred by :math:`\mathcal{N}(0, s^2 I)` has, at
    distance :math:`\rho` from the origin,

    .. math::

        p_R(x) = \frac{1}{2\pi}\int_0^{2\pi} \mathcal{N}\big(x; R(\cos t, \sin t), s^2 I\big)\,dt
        = \frac{1}{2\pi s^2} \exp\Big(-\frac{\rho^2 + R^2}{2 s^2}\Big)\, I_0\Big(\frac{\rho R}{s^2}\Big),

    with :math:`I_0` the modified Bessel function; the data density is
    :math:`\tfrac12 p_1 + \tfrac12 p_{\mathrm{factor}}`. Needs ``noise > 0``.

    Example:
        >>> import torch
        >>> circles_log_prob(torch.zeros(1, 2)).item() < -40   # almost nothing at the centre
        True
    """
    x64 = _check_points(x, "circles_log_prob")
    noise = _check_positive("circles_log_prob: noise (the density exists only for noise > 0)", noise)
    factor = _check_positive("circles_log_prob: factor", factor)
    rho = x64.norm(dim=1)
    both = torch.stack([_ring_log_prob(rho, 1.0, noise), _ring_log_prob(rho, factor, noise)], 1)
    return (torch.logsumexp(both, 1) - math.log(2)).to(x.dtype)


def moons_log_prob(x: Tensor, noise: float = 0.05, num_nodes: int | None = None) -> Tensor:
    r"""The log-density of the process :func:`moons` samples (same ``noise``), shape ``(batch,)``.

    With the angle uniform on :math:`[0, \pi]` and each moon chosen with probability 1/2,

    .. math::

        p(x) = \frac12 \sum_{m=1}^{2} \frac{1}{\pi} \int_0^\pi \mathcal{N}\big(x; c_m(\theta), s^2 I\big)\, d\theta,
        \quad c_1(\theta) = (\cos\theta, \sin\theta),\; c_2(\theta) = (1 - \cos\theta, \tfrac12 - \sin\theta).

    The integral has no closed form; it is computed with Gauss-Legendre
    quadrature on ``num_nodes`` angles per moon (default ``max(64, ceil(8 / noise))``,
    160 for the default noise: the error in :math:`\log p` is then about 1e-11).
    sklearn's ``make_moons`` puts its points at evenly spaced angles rather than
    random ones; for thousands of points the two differ by far less than the
    noise. Needs ``noise > 0``.

    Example:
        >>> import torch
        >>> bool(moons_log_prob(torch.tensor([[0.0, 1.0]])) > moons_log_prob(torch.tensor([[0.0, 0.0]])))
        True
    """
    x64 = _check_points(x, "moons_log_prob")
    noise = _check_positive("moons_log_prob: noise (the density exists only for noise > 0)", noise)
    if num_nodes is None:
        num_nodes = max(64, math.ceil(8.0 / noise))
    elif isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 2:
        raise ValueError(f"moons_log_prob: num_nodes must be an int >= 2, got {num_nodes!r}")
    nodes, weights = np.polynomial.legendre.leggauss(num_nodes)
    theta = torch.as_tensor((nodes + 1) * (math.pi / 2))  # [-1, 1] -> [0, pi]; weights scale by pi/2
    log_w = torch.as_tensor(np.log(weights * 0.5))  # (pi/2) w_k / pi: the weights of the mean over theta
    upper = torch.stack([theta.cos(), theta.sin()], 1)
    lower = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], 1)
    centres = torch.cat([upper, lower])  # (2K, 2)
    log_w = torch.cat([log_w, log_w]) - math.log(2)
    out = []
    for chunk in x64.split(max(1, 2**22 // (2 * num_nodes))):
        out.append(torch.logsumexp(_log_normal2(chunk, centres, noise) + log_w, 1))
    return torch.cat(out).to(x.dtype)


ToyDataset = Callable[..., Tensor]

TOY_DATASETS: dict[str, ToyDataset] = {
    "moons": moons,
    "circles": circles,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "pinwheel": pinwheel,
    "two_spirals": two_spirals,
}
"""Every toy set by name: ``TOY_DATASETS[name](n, seed=0, **options) -> Tensor (n, 2)``."""

TOY_LOG_PROBS: dict[str, Callable[..., Tensor]] = {
    "moons": moons_log_prob,
    "circles": circles_log_prob,
    "eight_gaussians": eight_gaussians_log_prob,
    "checkerboard": checkerboard_log_prob,
}
"""The toy sets whose true density is known: ``TOY_LOG_PROBS[name](x, **options) -> Tensor (batch,)``."""


def toy_dataset(name: str, n: int, seed: int = 0, **options: Any) -> Tensor:
    """Draw ``n`` points of the toy set ``name`` (a key of :data:`TOY_DATASETS`).

    Example:
        >>> toy_dataset("checkerboard", 10, seed=2).shape
        torch.Size([10, 2])
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; valid names: {', '.join(sorted(TOY_DATASETS))}")
    return TOY_DATASETS[name](n, seed=seed, **options)


def toy_log_prob(name: str, x: Tensor, **options: Any) -> Tensor:
    """The true log-density of the toy set ``name`` at ``x`` (a key of :data:`TOY_LOG_PROBS`)."""
    if name not in TOY_LOG_PROBS:
        known = ", ".join(sorted(TOY_LOG_PROBS))
        extra = " (it has no closed-form density)" if name in TOY_DATASETS else ""
        raise ValueError(f"no true log-density for toy dataset {name!r}{extra}; available for: {known}")
    return TOY_LOG_PROBS[name](x, **options)


# --------------------------------------------------------------------------- standardization


class Standardizer:
    r"""Per-feature standardization :math:`v = (x - \mu) / \sigma`, fitted on the training set.

    ``fit`` computes the mean and the (population, ``ddof=0``) standard deviation
    of every feature over the batch dimension: for images of shape ``(n, C, H, W)``
    one value per pixel. The map is affine with a diagonal Jacobian, so

    .. math::

        \log p_x(x) = \log p_v(v) + \log\left|\det\frac{\partial v}{\partial x}\right|
        = \log p_v(v) - \sum_i \log \sigma_i ,

    and :attr:`logabsdet` is :math:`-\sum_i \log\sigma_i`: add it to a
    log-likelihood measured on standardized data (subtract it from an NLL) to
    get the log-likelihood of the original data.

    Args:
        min_std: features whose standard deviation is below this are given
            ``min_std`` instead; without it (default) a constant feature is an
            error, since dividing by zero would be meaningless.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 10.0], [3.0, 30.0]])
        >>> s = Standardizer().fit(x)
        >>> s.transform(x).tolist(), round(s.logabsdet, 4)   # sigma = (1, 10): -log 10
        ([[-1.0, -1.0], [1.0, 1.0]], -2.3026)
        >>> torch.equal(s.inverse_transform(s.transform(x)), x)
        True
    """

    def __init__(self, min_std: float | None = None) -> None:
        if min_std is not None:
            min_std = _check_positive("Standardizer: min_std", min_std)
        self.min_std = min_std
        self.mean: Tensor | None = None
        self.std: Tensor | None = None

    def fit(self, x: Tensor) -> Standardizer:
        """Compute the mean and standard deviation of ``x`` (shape ``(n, *event_shape)``); return ``self``."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"Standardizer.fit: expected a floating-point torch.Tensor, got {_describe(x)}")
        if x.dim() < 2 or x.shape[0] < 2:
            raise ValueError(
                f"Standardizer.fit: expected at least 2 samples of shape (n, *event_shape), got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError("Standardizer.fit: the data contains NaN or Inf")
        x64 = x.double()
        mean, std = x64.mean(0), x64.std(0, correction=0)
        if self.min_std is not None:
            std = std.clamp_min(self.min_std)
        elif bool((std == 0).any()):
            raise ValueError(
                f"Standardizer.fit: {int((std == 0).sum())} feature(s) are constant (std 0); dequantize the data "
                "first or pass min_std"
            )
        self.mean, self.std = mean.to(x.dtype), std.to(x.dtype)
        self._logabsdet = -float(std.log().sum())
        return self

    def _fitted(self, x: Tensor, owner: str) -> tuple[Tensor, Tensor]:
        if self.mean is None or self.std is None:
            raise RuntimeError(f"Standardizer.{owner}: call fit(train) first")
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"Standardizer.{owner}: expected a floating-point torch.Tensor, got {_describe(x)}")
        if x.dim() != self.mean.dim() + 1 or x.shape[1:] != self.mean.shape:
            shape = "(batch, " + ", ".join(str(s) for s in self.mean.shape) + ")"
            raise ValueError(f"Standardizer.{owner}: expected shape {shape} as in fit, got {tuple(x.shape)}")
        return self.mean.to(x), self.std.to(x)

    def transform(self, x: Tensor) -> Tensor:
        r""":math:`(x - \mu) / \sigma`."""
        mean, std = self._fitted(x, "transform")
        return (x - mean) / std

    def inverse_transform(self, v: Tensor) -> Tensor:
        r""":math:`v \sigma + \mu`."""
        mean, std = self._fitted(v, "inverse_transform")
        return v * std + mean

    def fit_transform(self, x: Tensor) -> Tensor:
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    @property
    def logabsdet(self) -> float:
        r""":math:`\log|\det \partial v/\partial x| = -\sum_i \log\sigma_i` (per sample), computed in float64."""
        if self.std is None:
            raise RuntimeError("Standardizer.logabsdet: call fit(train) first")
        return self._logabsdet

    def __repr__(self) -> str:
        shape = None if self.mean is None else tuple(self.mean.shape)
        return f"Standardizer(event_shape={shape})"


def _describe(x: Any) -> str:
    return f"tensor of dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__


# --------------------------------------------------------------------------- digits

DIGITS_SPLIT_SIZES: tuple[int, int, int] = (1257, 270, 270)
"""Default ``(train, val, test)`` sizes of :func:`digits`: 70 / 15 / 15 % of the 1,797 images."""


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


def digits(
    split: str = "train",
    seed: int = 0,
    *,
    sizes: tuple[int, int, int] = DIGITS_SPLIT_SIZES,
) -> tuple[Tensor, Tensor]:
    r"""sklearn's 8x8 handwritten digits: ``(images, labels)`` of one split.

    ``images`` has shape ``(n, 1, 8, 8)``, dtype float32, integer pixel values
    0..16 (17 levels: dequantize with ``levels=17``); ``labels`` is int64 in 0..9.
    The 1,797 images are permuted once with ``numpy.random.RandomState(seed)``
    (a generator whose stream numpy keeps fixed across versions) and cut into
    ``train`` / ``val`` / ``test`` of ``sizes`` images, by default
    **1,257 / 270 / 270**. The same ``seed`` and ``sizes`` always give the same,
    disjoint splits. ``sizes=(1500, 0, 297)`` gives the split sizes of the
    benchmark protocol's task B (not the peers' exact permutation).

    Example:
        >>> x, y = digits("val")
        >>> x.shape, y.shape, x.max().item()
        (torch.Size([270, 1, 8, 8]), torch.Size([270]), 16.0)
    """
    splits = ("train", "val", "test")
    if split not in splits:
        raise ValueError(f"digits: split must be one of {splits}, got {split!r}")
    seed = _check_seed(seed)
    images, labels = _load_digits()
    try:
        sizes = tuple(operator.index(s) for s in sizes)
    except TypeError as error:
        raise TypeError(f"digits: sizes must be three ints (train, val, test), got {sizes!r}") from error
    if len(sizes) != 3 or any(s < 0 for s in sizes) or sum(sizes) > len(images):
        raise ValueError(
            f"digits: sizes must be three ints >= 0 (train, val, test) adding up to at most {len(images)}, got {sizes}"
        )
    order = np.random.RandomState(seed).permutation(len(images))
    start = sum(sizes[: splits.index(split)])
    index = order[start : start + sizes[splits.index(split)]]
    if len(index) == 0:
        raise ValueError(f"digits: the {split!r} split is empty with sizes={sizes}")
    x = torch.from_numpy(images[index].copy()).unsqueeze(1)
    return x, torch.from_numpy(labels[index].copy())


# --------------------------------------------------------------------------- dequantization and logit


def dequantize(x_int: Tensor, levels: int = 17, generator: torch.Generator | None = None) -> Tensor:
    r"""Uniform dequantization: :math:`v = (x + u) / L`, :math:`u \sim U[0, 1)^D`, so :math:`v \in [0, 1)^D`.

    ``x_int`` holds integers in :math:`\{0, \dots, L-1\}` (any dtype); the result
    is float (float32 for integer input). Draw fresh noise for every training
    batch and keep one fixed draw for a test set.

    Why it is legitimate: the cell :math:`[x/L, (x+1)/L)^D` of an integer vector
    :math:`x` has volume :math:`L^{-D}`, and a density :math:`p` on
    :math:`[0,1)^D` defines a discrete model :math:`P(x) = \int_{\text{cell}} p`.
    By Jensen's inequality

    .. math::

        \log P(x) = \log \mathbb{E}_u\big[p\big((x+u)/L\big)\big] - D\log L
        \;\ge\; \mathbb{E}_u\big[\log p(v)\big] - D \log L ,

    so the density of the dequantized data, shifted by :math:`-D\log L`,
    lower-bounds the discrete log-likelihood (see :func:`bits_per_dim`). Without
    the noise, a continuous model could put unbounded density on the integer
    points.

    Example:
        >>> import torch
        >>> v = dequantize(torch.tensor([[0, 16]]), levels=17, generator=torch.Generator().manual_seed(0))
        >>> bool(((v >= 0) & (v < 1)).all()), (v * 17).floor().tolist()
        (True, [[0.0, 16.0]])
    """
    if not isinstance(x_int, Tensor):
        raise TypeError(f"dequantize: expected a torch.Tensor of integers, got {type(x_int).__name__}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"dequantize: levels must be an int >= 2, got {levels!r}")
    if x_int.numel() == 0:
        raise ValueError(f"dequantize: the input is empty (shape {tuple(x_int.shape)})")
    x = x_int if x_int.is_floating_point() else x_int.to(torch.float32)
    if not bool(torch.isfinite(x).all()) or not torch.equal(x, x.round()):
        raise ValueError("dequantize: expected integer values (e.g. raw pixel levels), got non-integers")
    low, high = x.min().item(), x.max().item()
    if low < 0 or high > levels - 1:
        raise ValueError(f"dequantize: values must lie in 0..{levels - 1} for levels={levels}, got {low:g}..{high:g}")
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    # (x + u) / L can round up to exactly 1 (or the next level) in float32; keep v inside [x/L, (x+1)/L).
    v = (x + u) / levels
    upper = torch.nextafter((x + 1) / levels, torch.zeros_like(v))
    return torch.minimum(v, upper)


def _check_alpha(alpha: float, owner: str) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha < 0.5:
        raise ValueError(f"{owner}: alpha must be in [0, 0.5), got {alpha}")
    return alpha


def _check_batched(v: Any, owner: str) -> None:
    if not isinstance(v, Tensor) or not v.is_floating_point():
        raise TypeError(f"{owner}: expected a floating-point torch.Tensor, got {_describe(v)}")
    if v.dim() < 2:
        raise ValueError(f"{owner}: expected shape (batch, *event_shape) with at least 2 dims, got {tuple(v.shape)}")


def logit_transform(v: Tensor, alpha: float = 0.05) -> tuple[Tensor, Tensor]:
    r"""Map :math:`v \in [0, 1]^D` to :math:`\mathbb{R}^D`: :math:`y = \operatorname{logit}(\alpha + (1 - 2\alpha) v)`.

    The squeeze into :math:`[\alpha, 1 - \alpha]` keeps :math:`y` finite at
    :math:`v = 0` and :math:`v = 1`. With :math:`p = \alpha + (1-2\alpha)v`,
    :math:`dy/dv = (1-2\alpha) / (p(1-p))`, so the per-sample log-determinant is

    .. math::

        \log\left|\det\frac{\partial y}{\partial v}\right|
        = \sum_i \big[\log(1-2\alpha) - \log p_i - \log(1-p_i)\big],

    and :math:`\log p_v(v) = \log p_y(y) + \text{logabsdet}`: pass it (its mean
    over the data) as ``extra_logdet`` of :func:`bits_per_dim`. This is a plain
    function, not a :class:`~flowlib.core.Bijection`.

    Returns:
        ``(y, logabsdet)`` with ``logabsdet`` of shape ``(batch,)``.

    Example:
        >>> import torch
        >>> y, ladj = logit_transform(torch.tensor([[0.5, 0.5]]), alpha=0.0)
        >>> y.tolist(), round(ladj.item(), 4)   # dy/dv = 4 at 1/2: 2 log 4
        ([[0.0, 0.0]], 2.7726)
    """
    _check_batched(v, "logit_transform")
    alpha = _check_alpha(alpha, "logit_transform")
    if alpha == 0.0:
        if not bool(((v > 0) & (v < 1)).all()):
            raise ValueError("logit_transform: with alpha=0 every value must lie in (0, 1); use alpha > 0")
    elif not bool(((v >= 0) & (v <= 1)).all()):
        raise ValueError(
            f"logit_transform: values must lie in [0, 1], got {v.min().item():g}..{v.max().item():g}; "
            "dequantize and scale the data first"
        )
    p = alpha + (1 - 2 * alpha) * v
    log_p, log_1mp = torch.log(p), torch.log1p(-p)
    y = log_p - log_1mp
    logabsdet = (math.log1p(-2 * alpha) - log_p - log_1mp).flatten(1).sum(1)
    return y, logabsdet


def inverse_logit_transform(y: Tensor, alpha: float = 0.05) -> tuple[Tensor, Tensor]:
    r"""Undo :func:`logit_transform`: :math:`v = (\sigma(y) - \alpha) / (1 - 2\alpha)`.

    Returns ``(v, logabsdet)`` with :math:`\log|\det \partial v/\partial y| =
    \sum_i [\log\sigma(y_i) + \log(1-\sigma(y_i)) - \log(1-2\alpha)]`, the
    negative of the forward log-determinant at the same point.

    Example:
        >>> import torch
        >>> v = torch.tensor([[0.1, 0.9]])
        >>> torch.allclose(inverse_logit_transform(logit_transform(v)[0])[0], v)
        True
    """
    _check_batched(y, "inverse_logit_transform")
    alpha = _check_alpha(alpha, "inverse_logit_transform")
    v = (torch.sigmoid(y) - alpha) / (1 - 2 * alpha)
    # log sigma(y) = -softplus(-y), log(1 - sigma(y)) = -softplus(y): stable for large |y|.
    logabsdet = (
        (-torch.nn.functional.softplus(-y) - torch.nn.functional.softplus(y) - math.log1p(-2 * alpha)).flatten(1).sum(1)
    )
    return v, logabsdet


# --------------------------------------------------------------------------- bits per dimension


def bits_per_dim(
    nll_nats_per_sample: float | Tensor,
    num_dims: int,
    levels: float = 17,
    extra_logdet: float | Tensor = 0.0,
) -> float | Tensor:
    r"""Bits per dimension of discrete data from the NLL (in nats) of a model of the preprocessed data.

    .. math::

        \text{bits/dim} = \frac{\mathrm{NLL} - \text{extra\_logdet} + D \ln L}{D \ln 2} .

    Where each term comes from, for integer data :math:`x \in \{0..L-1\}^D`:

    1. Dequantization (:func:`dequantize`): :math:`v = (x + u)/L`. The discrete
       model is :math:`P(x) = \int_{\text{cell}(x)} p_v`, a cell of volume
       :math:`L^{-D}`; Jensen gives :math:`-\log P(x) \le \mathbb{E}_u[-\log p_v(v)] + D\ln L`.
       The :math:`D \ln L` is the change of variables of the scaling by
       :math:`1/L` (log-determinant :math:`-D\ln L`): a density on
       :math:`[0,1)^D` is :math:`L^D` times the density on :math:`[0, L)^D`.
    2. Preprocessing after dequantization, :math:`y = g(v)` (standardization,
       logit, ...), whose log-determinant is ``extra_logdet`` :math:`=
       \log|\det \partial y/\partial v|`: :math:`\log p_v(v) = \log p_y(y) +
       \text{extra\_logdet}`, so :math:`-\log p_v = \mathrm{NLL} - \text{extra\_logdet}`.
       For a :class:`Standardizer` pass its ``logabsdet`` (:math:`-\sum\log\sigma_i`,
       i.e. the NLL of :math:`v` is the standardized NLL plus :math:`\sum\log\sigma_i`);
       for :func:`logit_transform` its per-sample log-det (or the mean); for
       several steps, the sum.
    3. Division by :math:`D \ln 2` turns nats per sample into bits per dimension.

    This is the formula of the benchmark protocol's task B with ``levels=17``,
    ``num_dims=64`` and the standardization log-det. A model uniform on
    :math:`[0,1)^D` has NLL 0 and gets exactly :math:`\log_2 L` bits/dim, the
    cost of storing each pixel with no model at all. ``levels=1`` drops the
    dequantization term (continuous data).

    Args:
        nll_nats_per_sample: the model's NLL in nats per sample of the data it
            saw (a float, or a tensor of per-sample values).
        num_dims: :math:`D`, the number of scalar dimensions per sample (64 for 8x8 digits).
        levels: :math:`L`, the number of integer levels before dequantization (17 for digits).
        extra_logdet: :math:`\log|\det\partial y/\partial v|` of the preprocessing after
            dequantization (a float, or per-sample values matching the NLL).

    Returns:
        A float, or a tensor when either input is a tensor.

    Example:
        >>> round(bits_per_dim(100.0, num_dims=64, levels=17), 4)   # (100 + 64 ln 17) / (64 ln 2)
        6.3417
    """
    if isinstance(num_dims, bool) or not isinstance(num_dims, int) or num_dims < 1:
        raise ValueError(f"bits_per_dim: num_dims must be a positive int, got {num_dims!r}")
    levels = _check_positive("bits_per_dim: levels", levels)
    if levels < 1:
        raise ValueError(f"bits_per_dim: levels must be >= 1 (1 means continuous data), got {levels}")
    for name, value in (("nll_nats_per_sample", nll_nats_per_sample), ("extra_logdet", extra_logdet)):
        if not isinstance(value, (int, float, Tensor)) or isinstance(value, bool):
            raise TypeError(f"bits_per_dim: {name} must be a float or a tensor, got {type(value).__name__}")
    nll_v = nll_nats_per_sample - extra_logdet
    result = (nll_v + num_dims * math.log(levels)) / (num_dims * math.log(2.0))
    return result if isinstance(result, Tensor) else float(result)
