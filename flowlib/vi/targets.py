r"""Unnormalized 2-D targets for variational inference, and their normalizing constants on a grid.

Variational inference fits a flow :math:`q_\phi` to a density known only up to
its normalizing constant, :math:`p^*(z) = \tilde p(z) / Z` with
:math:`\tilde p(z) = e^{-U(z)}` for an *energy* :math:`U`. In two dimensions
:math:`Z` can be computed by brute force on a grid (:func:`grid_log_normalizer`),
which makes the 2-D targets a strong test: every estimate of :math:`\log Z`
that a flow produces can be checked against the integral.

**The four energies of Rezende and Mohamed (2015)**, with
:math:`w_1(z) = \sin(2\pi z_1 / 4)`, :math:`w_2(z) = 3 e^{-\frac12 ((z_1 - 1)/0.6)^2}`,
:math:`w_3(z) = 3\,\sigma((z_1 - 1)/0.3)` (:math:`\sigma` the logistic function):

.. math::

    U_1(z) &= \tfrac12 \Big(\frac{\lVert z\rVert - 2}{0.4}\Big)^2
             - \log\Big(e^{-\frac12 (\frac{z_1 - 2}{0.6})^2} + e^{-\frac12 (\frac{z_1 + 2}{0.6})^2}\Big) \\
    U_2(z) &= \tfrac12 \Big(\frac{z_2 - w_1(z)}{0.4}\Big)^2 + b(z_1) \\
    U_3(z) &= -\log\Big(e^{-\frac12 (\frac{z_2 - w_1(z)}{0.35})^2}
              + e^{-\frac12 (\frac{z_2 - w_1(z) + w_2(z)}{0.35})^2}\Big) + b(z_1) \\
    U_4(z) &= -\log\Big(e^{-\frac12 (\frac{z_2 - w_1(z)}{0.4})^2}
              + e^{-\frac12 (\frac{z_2 - w_1(z) + w_3(z)}{0.35})^2}\Big) + b(z_1)

**The wall** :math:`b(z_1) = \tfrac12 \big(\max(\lvert z_1\rvert - 4, 0) / 0.2\big)^2`
is flowlib's addition. As printed in the paper, :math:`e^{-U_2}`, :math:`e^{-U_3}` and
:math:`e^{-U_4}` do not decay along :math:`z_1` (the wave goes on for ever), so
their integral over the plane is infinite, there is no :math:`p^*` to
approximate, and the ELBO grows without bound as :math:`q` spreads out along
the wave. The paper draws them on the square :math:`[-4, 4]^2`; the wall is
zero there, so inside the square the energies are exactly the paper's, and
outside it the density falls off like a Gaussian of standard deviation 0.2.
:math:`U_1` confines itself (the ring) and has no wall.

Example:
    >>> import torch
    >>> target = ENERGY_TARGETS["U1"]
    >>> target.log_prob(torch.tensor([[2.0, 0.0]])).shape   # log p~(z) = -U(z), unnormalized
    torch.Size([1])
    >>> round(grid_log_normalizer(target.log_prob, (-5, 5), (-5, 5), n=600), 4)
    1.8775
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import check_float, check_int
from ..constants import LOG_2PI
from ..core import check_tensor

__all__ = [
    "wave",
    "bump",
    "step",
    "wall",
    "u1",
    "u2",
    "u3",
    "u4",
    "EnergyTarget",
    "ENERGY_TARGETS",
    "energy_target",
    "grid_log_normalizer",
    "GaussianMixture",
]

WALL_EDGE = 4.0
"""The wall :func:`wall` is zero for :math:`\\lvert z_1\\rvert \\le` ``WALL_EDGE``."""

WALL_WIDTH = 0.2
"""Beyond the edge the wall rises like the energy of a Gaussian of this standard deviation."""


def _points(z: Tensor, owner: str) -> Tensor:
    return check_tensor(z, owner, "z", torch.Size([2]), batch_name="batch")


def wave(z1: Tensor) -> Tensor:
    r""":math:`w_1(z) = \sin(2\pi z_1 / 4)`, the sine wave that :math:`U_2`, :math:`U_3` and :math:`U_4` follow."""
    return torch.sin(0.5 * math.pi * z1)


def bump(z1: Tensor) -> Tensor:
    r""":math:`w_2(z) = 3\exp\big(-\tfrac12((z_1 - 1)/0.6)^2\big)`, the bump that splits :math:`U_3`."""
    return 3.0 * torch.exp(-0.5 * ((z1 - 1.0) / 0.6) ** 2)


def step(z1: Tensor) -> Tensor:
    r""":math:`w_3(z) = 3\,\sigma\big((z_1 - 1)/0.3\big)`, the soft step that splits :math:`U_4`."""
    return 3.0 * torch.sigmoid((z1 - 1.0) / 0.3)


def wall(z1: Tensor) -> Tensor:
    r""":math:`b(z_1) = \tfrac12\big(\max(\lvert z_1\rvert - 4, 0)/0.2\big)^2`: zero on :math:`[-4, 4]`, a Gaussian fall-off outside.

    Example:
        >>> wall(torch.tensor([0.0, -4.0, 4.5], dtype=torch.float64)).tolist()   # 0.5 (0.5 / 0.2)^2
        [0.0, 0.0, 3.125]
    """
    return 0.5 * (F.relu(z1.abs() - WALL_EDGE) / WALL_WIDTH) ** 2


def _two_wells(first: Tensor, second: Tensor) -> Tensor:
    """``-log(exp(-first) + exp(-second))``, computed without underflow."""
    return -torch.logaddexp(-first, -second)


def u1(z: Tensor) -> Tensor:
    r"""Energy :math:`U_1`: a ring of radius 2, heavier at :math:`z_1 = \pm 2`.

    Two modes, joined by the ring.

    Example:
        >>> import torch
        >>> u1(torch.tensor([[2.0, 0.0], [0.0, 2.0]])).tolist()[0] < u1(torch.tensor([[0.0, 2.0]])).item()
        True
    """
    z = _points(z, "u1")
    z1 = z[:, 0]
    radius = torch.linalg.vector_norm(z, dim=1)
    ring = 0.5 * ((radius - 2.0) / 0.4) ** 2
    return ring + _two_wells(0.5 * ((z1 - 2.0) / 0.6) ** 2, 0.5 * ((z1 + 2.0) / 0.6) ** 2)


def u2(z: Tensor) -> Tensor:
    r"""Energy :math:`U_2`: a band of width 0.4 along the wave :math:`z_2 = w_1(z)`, walled."""
    z = _points(z, "u2")
    z1, z2 = z[:, 0], z[:, 1]
    return 0.5 * ((z2 - wave(z1)) / 0.4) ** 2 + wall(z1)


def u3(z: Tensor) -> Tensor:
    r"""Energy :math:`U_3`: the wave, and a band that splits off below it near :math:`z_1 = 1`."""
    z = _points(z, "u3")
    z1, z2 = z[:, 0], z[:, 1]
    offset = z2 - wave(z1)
    upper = 0.5 * (offset / 0.35) ** 2
    lower = 0.5 * ((offset + bump(z1)) / 0.35) ** 2
    return _two_wells(upper, lower) + wall(z1)


def u4(z: Tensor) -> Tensor:
    r"""Energy :math:`U_4`: the wave, and a band that steps down by 3 for :math:`z_1 > 1`."""
    z = _points(z, "u4")
    z1, z2 = z[:, 0], z[:, 1]
    offset = z2 - wave(z1)
    upper = 0.5 * (offset / 0.4) ** 2
    lower = 0.5 * ((offset + step(z1)) / 0.35) ** 2
    return _two_wells(upper, lower) + wall(z1)


@dataclass(frozen=True)
class EnergyTarget:
    r"""A named unnormalized 2-D density :math:`\tilde p(z) = e^{-U(z)}`.

    Attributes:
        name: ``"U1"`` ... ``"U4"``.
        energy: :math:`U`, a function from ``(batch, 2)`` points to ``(batch,)`` energies.
        window: the square ``(low, high)`` to draw it on (the paper's :math:`[-4, 4]^2`).
        limits: a square ``(low, high)`` that holds all but a negligible part of the mass,
            for :meth:`log_normalizer`.
        description: one line that says what the density looks like.

    Example:
        >>> import torch
        >>> target = energy_target("U2")
        >>> z = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
        >>> torch.equal(target.log_prob(z), -u2(z)), target(z).shape
        (True, torch.Size([2]))
    """

    name: str
    energy: Callable[[Tensor], Tensor]
    window: tuple[float, float]
    limits: tuple[float, float]
    description: str

    def log_prob(self, z: Tensor) -> Tensor:
        r""":math:`\log\tilde p(z) = -U(z)`: the unnormalized log-density, one value per point."""
        return -self.energy(z)

    def __call__(self, z: Tensor) -> Tensor:
        return self.log_prob(z)

    def log_normalizer(self, n: int = 1200) -> float:
        r""":math:`\log Z = \log\int e^{-U(z)}\,dz`, by the midpoint rule on an ``n x n`` grid over :attr:`limits`."""
        return grid_log_normalizer(self.log_prob, self.limits, self.limits, n=n)


ENERGY_TARGETS: dict[str, EnergyTarget] = {
    "U1": EnergyTarget("U1", u1, (-4.0, 4.0), (-5.0, 5.0), "a ring of radius 2 with two heavier arcs"),
    "U2": EnergyTarget("U2", u2, (-4.0, 4.0), (-6.0, 6.0), "a thin band along a sine wave"),
    "U3": EnergyTarget("U3", u3, (-4.0, 4.0), (-6.0, 6.0), "the wave and a band that splits off below it"),
    "U4": EnergyTarget("U4", u4, (-4.0, 4.0), (-6.0, 6.0), "the wave and a band that steps down"),
}
"""The four energy densities of Rezende and Mohamed (2015), by name (see the module's docstring)."""


def energy_target(name: str) -> EnergyTarget:
    """The target called ``name`` (``"U1"`` ... ``"U4"``) from :data:`ENERGY_TARGETS`."""
    if not isinstance(name, str):
        raise TypeError(f"energy_target: name must be a str, got {type(name).__name__}")
    if name not in ENERGY_TARGETS:
        raise ValueError(f"energy_target: unknown target {name!r}; choose one of {sorted(ENERGY_TARGETS)}")
    return ENERGY_TARGETS[name]


@torch.no_grad()
def grid_log_normalizer(
    log_density: Callable[[Tensor], Tensor],
    xlim: Sequence[float],
    ylim: Sequence[float],
    n: int = 1200,
    chunk: int = 250_000,
) -> float:
    r""":math:`\log \int e^{\log\tilde p(z)}\, dz` over a rectangle, by the midpoint rule on an ``n x n`` grid.

    .. math::

        \log Z \approx \log\Big(\sum_{i,j} \tilde p(c_{ij})\; \Delta_1 \Delta_2\Big)
        = \operatorname{logsumexp}_{i,j}\log\tilde p(c_{ij}) + \log(\Delta_1\Delta_2),

    with :math:`c_{ij}` the centres of the cells of sides :math:`\Delta_1, \Delta_2`.
    The sum runs in float64 through ``logsumexp``, so it neither overflows nor
    underflows whatever the scale of :math:`\tilde p`. For the smooth, quickly
    decaying targets of this module the rule converges fast: doubling ``n``
    from 500 changes :math:`\log Z` by less than :math:`10^{-6}`. It
    cannot see mass outside the rectangle: choose one that holds it all.

    Args:
        log_density: maps ``(m, 2)`` float64 points to ``(m,)`` log-densities.
        xlim, ylim: the rectangle.
        n: cells per side.
        chunk: points per call of ``log_density``.

    Example:
        >>> import math, torch
        >>> standard = lambda z: -0.5 * (z**2).sum(1)        # Z = 2 pi
        >>> abs(grid_log_normalizer(standard, (-9, 9), (-9, 9), n=400) - math.log(2 * math.pi)) < 1e-9
        True
    """
    n = check_int("grid_log_normalizer: n", n, minimum=2)
    chunk = check_int("grid_log_normalizer: chunk", chunk, minimum=1)
    (x0, x1), (y0, y1) = (
        tuple(check_float(f"grid_log_normalizer: {name}", v) for v in lim) for name, lim in (("xlim", xlim), ("ylim", ylim))
    )
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"grid_log_normalizer: need xlim[0] < xlim[1] and ylim[0] < ylim[1], got {xlim}, {ylim}")
    dx, dy = (x1 - x0) / n, (y1 - y0) / n
    xs = x0 + dx * (torch.arange(n, dtype=torch.float64) + 0.5)
    ys = y0 + dy * (torch.arange(n, dtype=torch.float64) + 0.5)
    grid = torch.cartesian_prod(xs, ys)
    pieces = [log_density(grid[i : i + chunk]).double() for i in range(0, grid.shape[0], chunk)]
    values = torch.cat(pieces)
    if values.shape != (grid.shape[0],):
        raise ValueError(f"grid_log_normalizer: log_density must return one value per point, got {tuple(values.shape)}")
    return float(torch.logsumexp(values, 0)) + math.log(dx * dy)


class GaussianMixture:
    r"""A normalized mixture of isotropic Gaussians: a multimodal target whose :math:`\log Z` is exactly 0.

    .. math::

        p(z) = \sum_m \pi_m\, \mathcal{N}(z;\ \mu_m,\ \sigma^2 I_D),

    evaluated with ``logsumexp`` so that it stays finite far from every centre.
    Unlike the energy targets it can also be *sampled*, so a flow can be fitted
    to it both ways: by the reverse KL (variational inference, from
    :meth:`log_prob`) and by the forward KL (maximum likelihood, from
    :meth:`sample`).

    Args:
        means: the centres :math:`\mu_m`, shape ``(M, D)``.
        std: the common standard deviation :math:`\sigma > 0`.
        weights: the mixture weights :math:`\pi_m` (normalized here), default equal.

    Example:
        >>> import torch
        >>> mixture = GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), std=0.5)
        >>> x = mixture.sample(4, generator=torch.Generator().manual_seed(0))
        >>> x.shape, mixture.log_prob(x).shape
        (torch.Size([4, 2]), torch.Size([4]))
        >>> abs(grid_log_normalizer(mixture.log_prob, (-6, 6), (-6, 6), n=300)) < 1e-9   # normalized: log Z = 0
        True
    """

    def __init__(self, means: Tensor, std: float, weights: Tensor | Sequence[float] | None = None) -> None:
        if not isinstance(means, Tensor) or means.dim() != 2 or not means.is_floating_point():
            raise TypeError("GaussianMixture: means must be a float tensor of shape (M, D)")
        self.means = means.detach().clone()
        self.std = check_float("GaussianMixture: std", std, above=0.0)
        count = self.means.shape[0]
        w = torch.ones(count, dtype=self.means.dtype) if weights is None else torch.as_tensor(weights, dtype=self.means.dtype)
        if w.shape != (count,) or not bool((w > 0).all()) or not bool(torch.isfinite(w).all()):
            raise ValueError(f"GaussianMixture: weights must be {count} positive finite numbers, got {weights!r}")
        self.weights = w / w.sum()

    @property
    def dim(self) -> int:
        """:math:`D`, the dimension of one point."""
        return int(self.means.shape[1])

    def component_log_probs(self, z: Tensor) -> Tensor:
        r""":math:`\log \pi_m + \log\mathcal{N}(z; \mu_m, \sigma^2 I)` for every point and component, shape ``(batch, M)``."""
        z = check_tensor(z, "GaussianMixture", "z", torch.Size([self.dim]))
        means = self.means.to(z)
        squared = ((z[:, None, :] - means) ** 2).sum(-1)
        log_normal = -0.5 * squared / self.std**2 - self.dim * (math.log(self.std) + 0.5 * LOG_2PI)
        return log_normal + self.weights.to(z).log()

    def log_prob(self, z: Tensor) -> Tensor:
        """The normalized log-density, one value per point."""
        return torch.logsumexp(self.component_log_probs(z), dim=1)

    def __call__(self, z: Tensor) -> Tensor:
        return self.log_prob(z)

    def nearest_component(self, z: Tensor) -> Tensor:
        """The index of the component with the highest weighted density at each point (its "mode")."""
        return self.component_log_probs(z).argmax(dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` points: a component by its weight, then a Gaussian around its centre."""
        n = check_int("GaussianMixture: n", n, minimum=1)
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        return self.means[which] + self.std * noise
