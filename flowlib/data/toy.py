r"""2-D toy data sets and, where the process that draws them has one, their true log-density.

Each ``name(n, seed=0, **options)`` returns a float32 tensor of shape
``(n, 2)``; the same ``seed`` gives the same points. Where the density of the
process is known, ``name_log_prob(x, **options)`` evaluates it (same options),
so a chapter can compare a model's NLL with the best possible one, the entropy
of the data:

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

Example:
    >>> x = toy_dataset("eight_gaussians", 500, seed=0)
    >>> x.shape, toy_log_prob("eight_gaussians", x).shape
    (torch.Size([500, 2]), torch.Size([500]))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..checks import check_float, check_int, check_seed
from ..constants import LOG_2PI

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
    "ToyDataset",
    "TOY_DATASETS",
    "TOY_LOG_PROBS",
    "toy_dataset",
    "toy_log_prob",
]


def _check_n_and_seed(owner: str, n: Any, seed: Any) -> tuple[int, int]:
    """The number of points (an int >= 1) and the seed (an int in [0, 2**32)) of a sampler."""
    return check_int(f"{owner}: n", n, minimum=1), check_seed(f"{owner}: seed", seed)


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


# --------------------------------------------------------------------------- samplers


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
    n, seed = _check_n_and_seed("moons", n, seed)
    noise = check_float("moons: noise", noise, minimum=0.0)
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
    n, seed = _check_n_and_seed("circles", n, seed)
    noise = check_float("circles: noise", noise, minimum=0.0)
    factor = check_float("circles: factor", factor, above=0.0)
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
    n, seed = _check_n_and_seed("eight_gaussians", n, seed)
    radius = check_float("eight_gaussians: radius", radius, above=0.0)
    std = check_float("eight_gaussians: std", std, minimum=0.0)
    g = _generator(seed)
    component = torch.randint(0, 8, (n,), generator=g)
    points = _eight_centers(radius)[component] + std * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return _to_float32(points)


def _checker_geometry(bound: float, num_squares: int) -> tuple[float, float, int]:
    bound = check_float("checkerboard: bound", bound, above=0.0)
    num_squares = check_int("checkerboard: num_squares", num_squares, minimum=1)
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
    n, seed = _check_n_and_seed("checkerboard", n, seed)
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
    n, seed = _check_n_and_seed("pinwheel", n, seed)
    num_arms = check_int("pinwheel: num_arms", num_arms, minimum=1)
    radial_std = check_float("pinwheel: radial_std", radial_std, minimum=0.0)
    tangential_std = check_float("pinwheel: tangential_std", tangential_std, minimum=0.0)
    rate = check_float("pinwheel: rate", rate)
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
    n, seed = _check_n_and_seed("two_spirals", n, seed)
    noise = check_float("two_spirals: noise", noise, minimum=0.0)
    turns = check_float("two_spirals: turns", turns, above=0.0)
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
    return -0.5 * sq / std**2 - 2 * math.log(std) - LOG_2PI


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
    radius = check_float("eight_gaussians_log_prob: radius", radius, above=0.0)
    std = check_float("eight_gaussians_log_prob: std", std, above=0.0)
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
    noise = check_float("circles_log_prob: noise", noise, above=0.0, hint="the density exists only for noise > 0")
    factor = check_float("circles_log_prob: factor", factor, above=0.0)
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
    noise = check_float("moons_log_prob: noise", noise, above=0.0, hint="the density exists only for noise > 0")
    if num_nodes is None:
        num_nodes = max(64, math.ceil(8.0 / noise))
    else:
        num_nodes = check_int("moons_log_prob: num_nodes", num_nodes, minimum=2)
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
