r"""Linear bijections: a general invertible matrix and fixed permutations.

A linear map :math:`z = Wx + b` has the constant Jacobian :math:`W`, so

.. math::

    \log\left|\det \frac{\partial z}{\partial x}\right| = \log|\det W| .

For a general :math:`D \times D` matrix the determinant and the inverse cost
:math:`O(D^3)`; a permutation costs nothing and has :math:`|\det| = 1`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Bijection, as_event_shape, as_float_tensor, full_precision, input_checks_enabled

__all__ = ["Linear", "TriangularLinear", "LULinear", "Permutation"]


def _square_weight_and_bias(
    owner: str,
    weight: int | Sequence[Sequence[float]] | Tensor,
    bias: Sequence[float] | Tensor | None,
    random_weight: Callable[[int], Tensor],
) -> tuple[Tensor, Tensor]:
    """Check and copy the ``(D, D)`` weight and ``(D,)`` bias of a linear layer ``z = W x + b``.

    ``weight`` is a square matrix (copied as a float tensor), or an int ``D``,
    for which ``random_weight(D)`` draws the initial matrix. ``bias`` defaults
    to zeros and takes the weight's dtype. Both must be finite. Whether the
    matrix is invertible is the layer's own check (it differs per structure).

    Raises:
        ValueError: for a dimension below 1, a non-square weight, a bias of the
            wrong shape, or NaN/Inf entries; every message starts with ``owner``.

    Example:
        >>> import torch
        >>> weight, bias = _square_weight_and_bias("Linear", [[2.0, 0.0], [1.0, 3.0]], None, torch.eye)
        >>> weight.dtype, bias.tolist()
        (torch.float32, [0.0, 0.0])
    """
    if isinstance(weight, int):
        if weight < 1:
            raise ValueError(f"{owner}: the dimension must be >= 1, got {weight}")
        weight_t = random_weight(weight)
    else:
        weight_t = as_float_tensor(weight).detach().clone()
    if weight_t.dim() != 2 or weight_t.shape[0] != weight_t.shape[1]:
        raise ValueError(f"{owner}: weight must be a square (D, D) matrix, got shape {tuple(weight_t.shape)}")
    dim = weight_t.shape[0]
    bias_t = weight_t.new_zeros(dim) if bias is None else as_float_tensor(bias, weight_t).detach().clone()
    bias_t = bias_t.to(weight_t.dtype)
    if bias_t.shape != (dim,):
        raise ValueError(f"{owner}: bias must have shape ({dim},), got {tuple(bias_t.shape)}")
    if not bool(torch.isfinite(weight_t).all()) or not bool(torch.isfinite(bias_t).all()):
        raise ValueError(f"{owner}: weight and bias must be finite")
    return weight_t, bias_t


class Linear(Bijection):
    r"""The affine map :math:`z = W x + b` with a general invertible :math:`W`.

    .. math::

        z = W x + b, \qquad x = W^{-1}(z - b), \qquad
        \log\left|\det \frac{\partial z}{\partial x}\right| = \log|\det W|,

    with :math:`\log|\det W|` from ``torch.linalg.slogdet`` (an LU
    factorization, :math:`O(D^3)`) and the inverse from ``torch.linalg.solve``.

    Args:
        weight: a ``(D, D)`` invertible matrix, or an int ``D`` for a random
            orthogonal initialization (``generator`` makes it reproducible).
        bias: :math:`b`, shape ``(D,)`` (default zeros).
        learnable: if ``True`` (default) :math:`W` and :math:`b` are parameters.

    Raises:
        ValueError: if ``weight`` is not square, not finite, or singular
            (smallest singular value at most ``D * eps`` times the largest,
            the rank tolerance of ``torch.linalg.matrix_rank``).

    Example:
        >>> import torch
        >>> layer = Linear(torch.tensor([[2.0, 1.0], [0.0, 3.0]]))
        >>> z, ladj = layer(torch.tensor([[1.0, 1.0]]))
        >>> z.tolist(), round(ladj.item(), 4)   # log det = log 6
        ([[3.0, 3.0]], 1.7918)
    """

    def __init__(
        self,
        weight: int | Sequence[Sequence[float]] | Tensor,
        bias: Sequence[float] | Tensor | None = None,
        learnable: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()

        def random_orthogonal(dim: int) -> Tensor:
            return torch.linalg.qr(torch.randn(dim, dim, generator=generator)).Q

        weight_t, bias_t = _square_weight_and_bias("Linear", weight, bias, random_orthogonal)
        dim = weight_t.shape[0]
        # numerically singular: rank-deficient at the usual tolerance, sigma_min <= sigma_max * D * eps
        singular_values = torch.linalg.svdvals(weight_t)
        if singular_values[-1] <= singular_values[0] * dim * torch.finfo(weight_t.dtype).eps:
            condition = (singular_values[0] / singular_values[-1]).item()
            raise ValueError(
                f"Linear: weight is singular or numerically singular (condition number {condition:.3g}); "
                "an invertible matrix is needed"
            )
        self.event_shape = as_event_shape(dim)
        if learnable:
            self.weight = nn.Parameter(weight_t)
            self.bias = nn.Parameter(bias_t)
        else:
            self.register_buffer("weight", weight_t)
            self.register_buffer("bias", bias_t)

    def _logabsdet(self, batch: int) -> Tensor:
        sign, logabsdet = torch.linalg.slogdet(self.weight)
        if input_checks_enabled() and bool(sign == 0):
            raise ValueError("Linear: the weight matrix has become singular (det W = 0)")
        return logabsdet.expand(batch)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(x):
            return x @ self.weight.T + self.bias, self._logabsdet(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(z):
            x = torch.linalg.solve(self.weight, (z - self.bias).T).T
            return x, -self._logabsdet(z.shape[0])


class TriangularLinear(Bijection):
    r"""A lower-triangular linear map :math:`z = T x + b` (upper with ``lower=False``).

    .. math::

        \log\left|\det T\right| = \sum_i \log |T_{ii}| \quad (O(D)), \qquad
        x = T^{-1}(z - b) \text{ by substitution} \quad (O(D^2)).

    Only the triangle is used: entries on the other side of the diagonal are
    ignored (and receive no gradient). The diagonal must stay non-zero.

    Args:
        weight: a ``(D, D)`` matrix whose triangle is used, or an int ``D`` for a
            random initialization with a diagonal in [0.5, 1.5].
        bias: :math:`b` (default zeros).
        lower: lower (default) or upper triangular.
        generator: for the random initialization.

    Example:
        >>> import torch
        >>> layer = TriangularLinear(torch.tensor([[2.0, 0.0], [1.0, 3.0]]))
        >>> z, ladj = layer(torch.tensor([[1.0, 1.0]]))
        >>> z.tolist(), round(ladj.item(), 4)
        ([[2.0, 4.0]], 1.7918)
    """

    def __init__(
        self,
        weight: int | Tensor,
        bias: Tensor | None = None,
        lower: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()

        def random_triangle(dim: int) -> Tensor:
            weight_t = 0.3 * torch.randn(dim, dim, generator=generator)
            weight_t.diagonal().copy_(0.5 + torch.rand(dim, generator=generator))
            return weight_t

        weight_t, bias_t = _square_weight_and_bias("TriangularLinear", weight, bias, random_triangle)
        if bool((weight_t.diagonal() == 0).any()):
            raise ValueError("TriangularLinear: the diagonal must be non-zero (a zero makes T singular)")
        self.event_shape = as_event_shape(weight_t.shape[0])
        self.lower = bool(lower)
        self.weight = nn.Parameter(weight_t)
        self.bias = nn.Parameter(bias_t)

    def matrix(self) -> Tensor:
        """The triangular matrix :math:`T` actually used."""
        return torch.tril(self.weight) if self.lower else torch.triu(self.weight)

    def _logabsdet(self, batch: int) -> Tensor:
        diagonal = self.weight.diagonal()
        if input_checks_enabled() and bool((diagonal == 0).any()):
            raise ValueError("TriangularLinear: a diagonal entry has become zero (T is singular)")
        return torch.log(diagonal.abs()).sum().expand(batch)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(x):
            return x @ self.matrix().T + self.bias, self._logabsdet(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(z):
            x = torch.linalg.solve_triangular(self.matrix(), (z - self.bias).T, upper=not self.lower).T
            return x, -self._logabsdet(z.shape[0])

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, lower={self.lower}"


class LULinear(Bijection):
    r"""A linear map parametrized by its LU decomposition, :math:`W = P L U` (as in Glow).

    :math:`P` is a fixed permutation, :math:`L` is lower triangular with ones on
    its diagonal, :math:`U` is upper triangular with diagonal
    :math:`u_{ii} = \sigma_i\,(\operatorname{softplus}(\tilde u_i) + \epsilon)`: a
    fixed sign :math:`\sigma_i = \pm 1` (a buffer) times a magnitude that stays
    positive for every value of the free parameter :math:`\tilde u_i`. Then
    :math:`W` is invertible for every value of the free parameters, and

    .. math::

        \log|\det W| = \sum_i \log |u_{ii}| \quad (O(D)), \qquad
        x = U^{-1} L^{-1} P^{\top} (z - b) \quad \text{(two triangular solves, } O(D^2)).

    Args:
        features: :math:`D`.
        generator: for the initialization.
        eps: the floor :math:`\epsilon` of :math:`|u_{ii}|`.
        bias: learn an offset :math:`b` (default) or not (:math:`b = 0`, as
            in Glow's 1x1 convolution, where actnorm provides the offset).
        initial: optional ``initial(features, generator) -> (D, D) float64``
            matrix to start from exactly, signs of :math:`U`'s diagonal
            included (Glow starts from a random rotation,
            :func:`~flowlib.bijections.glow.random_rotation`). By default
            :math:`P, L, U` come from the LU decomposition of a random
            orthogonal matrix, with the absolute value of :math:`U`'s diagonal
            (all signs :math:`+1`).
    """

    def __init__(
        self,
        features: int,
        generator: torch.Generator | None = None,
        eps: float = 1e-5,
        bias: bool = True,
        initial: Callable[[int, torch.Generator | None], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if features < 1:
            raise ValueError(f"LULinear: features must be >= 1, got {features}")
        self.event_shape = as_event_shape(features)
        self.eps = float(eps)
        if initial is None:
            start = torch.linalg.qr(torch.randn(features, features, generator=generator, dtype=torch.float64)).Q
        else:
            start = torch.as_tensor(initial(features, generator), dtype=torch.float64)
            if start.shape != (features, features) or not bool(torch.isfinite(start).all()):
                raise ValueError(f"LULinear: initial must return a finite {features}x{features} matrix")
        p, lower, upper = torch.linalg.lu(start)
        diag = upper.diagonal()
        if initial is not None and bool((diag.abs() < 10 * self.eps).any()):
            raise ValueError("LULinear: the initial matrix is (nearly) singular: U has a diagonal entry near 0")
        sign = torch.sign(diag) if initial is not None else torch.ones_like(diag)
        magnitude = diag.abs().clamp_min(10 * self.eps)
        dtype = torch.get_default_dtype()
        self.register_buffer("permutation", p.to(dtype))
        self.register_buffer("sign", sign.to(dtype))
        self.lower_raw = nn.Parameter(torch.tril(lower, -1).to(dtype))
        self.upper_raw = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.diag_raw = nn.Parameter(torch.log(torch.expm1(magnitude - self.eps)).to(dtype))
        if bias:
            self.bias = nn.Parameter(torch.zeros(features, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    def factors(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(P, L, U)`` with :math:`W = P L U`."""
        eye = torch.eye(self.event_shape[0], dtype=self.lower_raw.dtype, device=self.lower_raw.device)
        lower = torch.tril(self.lower_raw, -1) + eye
        upper = torch.triu(self.upper_raw, 1) + torch.diag(self.sign * (F.softplus(self.diag_raw) + self.eps))
        return self.permutation, lower, upper

    def weight(self) -> Tensor:
        """The full matrix :math:`W = P L U`."""
        p, lower, upper = self.factors()
        return p @ lower @ upper

    def log_abs_det_weight(self) -> Tensor:
        r""":math:`\log|\det W| = \sum_i \log|u_{ii}|`, a scalar, in :math:`O(D)`."""
        return torch.log(F.softplus(self.diag_raw) + self.eps).sum()

    def solve(self, y: Tensor) -> Tensor:
        r""":math:`W^{-1} y` for each row ``y`` of a ``(n, D)`` tensor: a permutation and two triangular solves."""
        p, lower, upper = self.factors()
        y = p.T @ y.T
        y = torch.linalg.solve_triangular(lower, y, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, y, upper=True).T

    def _logabsdet(self, batch: int) -> Tensor:
        return self.log_abs_det_weight().expand(batch)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(x):
            z = x @ self.weight().T
            return (z if self.bias is None else z + self.bias), self._logabsdet(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(z):
            x = self.solve(z if self.bias is None else z - self.bias)
            return x, -self._logabsdet(z.shape[0])


class Permutation(Bijection):
    r"""Reorder the coordinates along one event dimension: :math:`z_i = x_{\pi(i)}`.

    A permutation matrix has determinant :math:`\pm 1`, so the log-determinant
    is 0. Between coupling layers it lets every coordinate be transformed.

    Args:
        permutation: a sequence holding each of ``0 .. n-1`` once.
        event_shape: shape of one sample (default ``(n,)``).
        dim: which event dimension is permuted (0 is the first event
            dimension: the features of a vector, the channels of an image).

    Example:
        >>> import torch
        >>> layer = Permutation([2, 0, 1])
        >>> layer(torch.tensor([[10.0, 20.0, 30.0]]))[0].tolist()
        [[30.0, 10.0, 20.0]]
    """

    def __init__(
        self,
        permutation: Sequence[int] | Tensor,
        event_shape: int | Iterable[int] | None = None,
        dim: int = 0,
    ) -> None:
        super().__init__()
        perm = torch.as_tensor(permutation)
        if perm.dim() != 1 or perm.is_floating_point() or perm.is_complex():
            raise ValueError(f"Permutation: expected a 1-D sequence of ints, got {permutation!r}")
        perm = perm.long()
        n = perm.numel()
        if n == 0 or not torch.equal(torch.sort(perm).values, torch.arange(n)):
            raise ValueError(f"Permutation: expected each of 0..{n - 1} exactly once, got {perm.tolist()}")
        self.event_shape = as_event_shape(n if event_shape is None else event_shape)
        if not -len(self.event_shape) <= dim < len(self.event_shape):
            raise ValueError(f"Permutation: dim={dim} is not an event dimension of {tuple(self.event_shape)}")
        self.dim = dim % len(self.event_shape)
        if self.event_shape[self.dim] != n:
            raise ValueError(
                f"Permutation: a permutation of {n} items does not fit event dimension {self.dim} of size "
                f"{self.event_shape[self.dim]}"
            )
        self.register_buffer("permutation", perm)
        self.register_buffer("inverse_permutation", torch.argsort(perm))

    @classmethod
    def reverse(cls, n: int, event_shape: int | Iterable[int] | None = None, dim: int = 0) -> Permutation:
        """The permutation ``n-1, ..., 1, 0``."""
        return cls(torch.arange(n - 1, -1, -1), event_shape, dim)

    @classmethod
    def random(
        cls,
        n: int,
        event_shape: int | Iterable[int] | None = None,
        dim: int = 0,
        generator: torch.Generator | None = None,
    ) -> Permutation:
        """A uniformly random permutation (reproducible with ``generator``)."""
        return cls(torch.randperm(n, generator=generator), event_shape, dim)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return x.index_select(self.dim + 1, self.permutation), x.new_zeros(x.shape[0])

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return z.index_select(self.dim + 1, self.inverse_permutation), z.new_zeros(z.shape[0])

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}, dim={self.dim}, permutation={self.permutation.tolist()}"
