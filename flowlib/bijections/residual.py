r"""Residual flows: invertible residual blocks (iResNet), their log-determinant estimators, low-rank blocks.

A residual block adds a learned *branch* :math:`g` to the identity,

.. math::

    z = f(x) = x + g(x) .

If :math:`g` is a contraction, :math:`\operatorname{Lip}(g) \le \kappa < 1`,
then :math:`f` is a bijection of :math:`\mathbb{R}^D` (Banach's fixed-point
theorem), and its inverse is the limit of the iteration
:math:`x_{k+1} = z - g(x_k)`, whose error shrinks at least like :math:`\kappa^k`.
An iResNet :cite:`behrmann2019iresnet` makes the branch contractive by
*spectral normalization*: every linear layer's weight is rescaled so that its
largest singular value (estimated by power iteration) is at most
:math:`\kappa`, and the activations have slopes at most 1, so
:math:`\operatorname{Lip}(g) \le \kappa^K` for :math:`K` linear layers.

The Jacobian :math:`I + J_g` is dense and has no closed-form determinant. Three
ways to get :math:`\log\det(I + J_g)` (the determinant is positive because
:math:`\lVert J_g\rVert_2 < 1`):

* ``"exact"``: build :math:`J_g` row by row with autograd (:math:`D` backward
  passes) and take ``slogdet``: :math:`O(D^3)`, for small :math:`D`;
* ``"series"``: truncate :math:`\log\det(I + J) = \sum_{k \ge 1} \frac{(-1)^{k+1}}{k} \operatorname{tr}(J^k)`
  after :math:`n` terms and estimate each trace with Hutchinson's estimator
  :math:`\operatorname{tr}(A) = \mathbb{E}[v^\top A v]` over :math:`m`
  Rademacher probes :math:`v`: :math:`n m` vector-Jacobian products, biased;
* ``"roulette"``: the Russian-roulette estimator of residual flows
  :cite:`chen2019residual`: the first :math:`n` terms, then a random number
  of further terms (geometric with parameter :math:`p`), each reweighted by
  one over the probability of reaching it: unbiased.

A layer in ``"series"`` or ``"roulette"`` mode reports an estimate: its
``logdet_is_exact`` is ``False``, and :func:`flowlib.testing.check_logdet`
asks for its exact mode instead.

A low-rank branch :math:`g(x) = U \sigma(V x + b)`, with :math:`U` of size
:math:`D \times M` and :math:`V` of size :math:`M \times D`, has an exact
log-determinant at the cost of an :math:`M \times M` determinant, by
:math:`\det(I_D + AB) = \det(I_M + BA)` (:class:`LowRankResidual`).

Example:
    >>> import torch
    >>> block = InvertibleResidual(2, hidden=(16,), kappa=0.9, logdet="exact",
    ...                            generator=torch.Generator().manual_seed(0)).double()
    >>> x = torch.randn(4, 2, dtype=torch.float64)
    >>> z, ladj = block(x)
    >>> x_back, _ = block.inverse(z)
    >>> bool((x_back - x).abs().max() < 1e-10), block.last_inverse_iterations < 40
    (True, True)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import check_float, check_int
from ..core import Bijection, as_event_shape, full_precision

__all__ = [
    "LOGDET_METHODS",
    "ACTIVATIONS",
    "LipSwish",
    "SpectralNormLinear",
    "FixedPointError",
    "fixed_point_inverse",
    "default_fixed_point_atol",
    "residual_logdet",
    "hutchinson_series",
    "InvertibleResidual",
    "LowRankResidual",
    "logdet_mode",
]

LOGDET_METHODS = ("exact", "series", "roulette")
"""The ways a residual block can compute its log-determinant."""


class LipSwish(nn.Module):
    r"""The activation :math:`\sigma(x) = x \,\operatorname{sigmoid}(x) / 1.1` of residual flows.

    Swish, :math:`x\,\operatorname{sigmoid}(x)`, is smooth and its slope never
    exceeds about 1.0998 (and never falls below about -0.1); dividing by 1.1
    makes its magnitude at most 1, so the activation does not increase a
    Lipschitz constant :cite:`chen2019residual`.

    Example:
        >>> import torch
        >>> x = torch.linspace(-10, 10, 20001, requires_grad=True)
        >>> slope, = torch.autograd.grad(LipSwish()(x).sum(), x)
        >>> 0.999 < slope.max().item() < 1.0
        True
    """

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x) / 1.1


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"lipswish": LipSwish, "elu": nn.ELU, "tanh": nn.Tanh}
"""The activations a residual branch may use: each has slopes of magnitude at most 1 (``tanh`` and ELU
in :math:`(0, 1]`, LipSwish in about :math:`[-0.09, 1)`), hence Lipschitz constant at most 1."""


def _activation(owner: str, name: str) -> nn.Module:
    if not isinstance(name, str):
        raise TypeError(f"{owner}: activation must be one of {sorted(ACTIVATIONS)}, got {type(name).__name__}")
    if name not in ACTIVATIONS:
        raise ValueError(
            f"{owner}: activation must be one of {sorted(ACTIVATIONS)} (slopes at most 1), got {name!r}"
        )
    return ACTIVATIONS[name]()


def _unit(vector: Tensor) -> Tensor:
    return vector / vector.norm().clamp_min(torch.finfo(vector.dtype).tiny)


class SpectralNormLinear(nn.Module):
    r"""A linear layer whose weight is rescaled to spectral norm at most :math:`\kappa`.

    .. math::

        \tilde W = \frac{W}{\max(1, \hat\sigma / \kappa)}, \qquad y = \tilde W x + b,

    where :math:`\hat\sigma = \lVert W v \rVert` estimates the largest singular
    value :math:`\sigma_{\max}(W)` by **power iteration**: the unit vectors
    :math:`u \leftarrow W v / \lVert W v\rVert`, :math:`v \leftarrow W^\top u / \lVert W^\top u\rVert`
    (buffers, saved with the model) converge to the leading singular vectors.
    A weight whose norm is already below :math:`\kappa` is left alone, as in
    iResNet :cite:`behrmann2019iresnet`. The estimate is differentiable in
    :math:`W` (the vectors are not), so training sees the normalization.

    When the iteration runs: at construction, ``init_iterations`` steps; then,
    in training mode only, on the first call after the weight has changed (an
    optimizer step), until the estimate changes by at most ``power_rtol``
    (relative) in one step, with at most ``power_iterations`` steps; never in
    evaluation mode. Starting from the previous vectors, one or two steps
    usually suffice.
    Between two changes of :math:`W` the normalized weight is therefore one
    fixed matrix, so that a forward pass and an inverse computed with it agree
    exactly. Power iteration approaches :math:`\sigma_{\max}` from below: right
    after a large change of :math:`W` the bound can be exceeded slightly until
    the estimate catches up; :meth:`update_spectral_norm` runs more steps, and
    :meth:`spectral_norm` gives the exact value (an SVD) to check.

    Args:
        in_features, out_features: sizes of the input and the output.
        kappa: the bound, any positive number (a residual block needs :math:`\kappa < 1`).
        bias: learn an offset :math:`b`.
        power_iterations: the most steps per change of the weight in training mode.
        power_rtol: the relative change of the estimate at which those steps stop.
        init_iterations: steps at construction (all of them).
        generator: for the initial weight (PyTorch's default initialization
            of ``nn.Linear``) and the initial vectors.

    Example:
        >>> import torch
        >>> layer = SpectralNormLinear(5, 7, kappa=0.5, generator=torch.Generator().manual_seed(0))
        >>> with torch.no_grad():
        ...     _ = layer.weight.mul_(10.0)   # far above the bound
        >>> steps = layer.update_spectral_norm(200, rtol=0.0)
        >>> round(layer.spectral_norm().item(), 4)
        0.5
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kappa: float = 0.9,
        bias: bool = True,
        power_iterations: int = 20,
        power_rtol: float = 1e-4,
        init_iterations: int = 100,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        in_features = check_int("SpectralNormLinear: in_features", in_features, minimum=1)
        out_features = check_int("SpectralNormLinear: out_features", out_features, minimum=1)
        self.kappa = check_float("SpectralNormLinear: kappa", kappa, above=0.0)
        self.power_iterations = check_int("SpectralNormLinear: power_iterations", power_iterations, minimum=1)
        self.power_rtol = check_float("SpectralNormLinear: power_rtol", power_rtol, minimum=0.0)
        init_iterations = check_int("SpectralNormLinear: init_iterations", init_iterations, minimum=1)
        weight = torch.empty(out_features, in_features)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        self.weight = nn.Parameter(weight)
        if bias:
            bound = 1.0 / math.sqrt(in_features)
            self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound, generator=generator))
        else:
            self.register_parameter("bias", None)
        self.register_buffer("u", _unit(torch.randn(out_features, generator=generator)))
        self.register_buffer("v", _unit(torch.randn(in_features, generator=generator)))
        self.register_buffer("weight_seen", torch.empty(0), persistent=False)
        self.update_spectral_norm(init_iterations, rtol=0.0)

    @torch.no_grad()
    def update_spectral_norm(self, iterations: int | None = None, rtol: float | None = None) -> int:
        """Run power iteration on the current weight; return the number of steps taken.

        At most ``iterations`` steps (default ``power_iterations``); it stops
        early once the estimate changes by at most ``rtol`` (relative) in one
        step (default ``power_rtol``; with 0 it stops only when the estimate
        no longer changes at all).
        """
        steps = self.power_iterations if iterations is None else check_int("iterations", iterations, minimum=1)
        rtol = self.power_rtol if rtol is None else check_float("rtol", rtol, minimum=0.0)
        weight = self.weight.detach()
        u, v = self.u, self.v
        previous = torch.linalg.vector_norm(weight @ v).item()
        taken = 0
        for taken in range(1, steps + 1):
            v = _unit(weight.T @ u)
            u = _unit(weight @ v)
            estimate = torch.linalg.vector_norm(weight @ v).item()
            if abs(estimate - previous) <= rtol * estimate:
                break
            previous = estimate
        self.u.copy_(u)
        self.v.copy_(v)
        self.weight_seen = weight.clone()
        return taken

    def sigma_estimate(self) -> Tensor:
        r"""The power-iteration estimate :math:`\hat\sigma = \lVert W v\rVert \le \sigma_{\max}(W)`, differentiable in :math:`W`."""
        return torch.linalg.vector_norm(self.weight @ self.v.clone())  # a copy: v may change after the step

    def normalized_weight(self) -> Tensor:
        r""":math:`\tilde W = W / \max(1, \hat\sigma/\kappa)`, the weight the layer uses."""
        if self.training and (
            self.weight_seen.shape != self.weight.shape or not torch.equal(self.weight_seen, self.weight.detach())
        ):
            self.update_spectral_norm()
        return self.weight / torch.clamp(self.sigma_estimate() / self.kappa, min=1.0)

    @torch.no_grad()
    def spectral_norm(self) -> Tensor:
        r"""The exact largest singular value of :math:`\tilde W` (an SVD), to check the bound."""
        return torch.linalg.matrix_norm(self.normalized_weight(), ord=2)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, kappa={self.kappa}"


class FixedPointError(RuntimeError):
    """The fixed-point iteration of a residual block's inverse did not converge."""


def default_fixed_point_atol(dtype: torch.dtype) -> float:
    """The default tolerance of :func:`fixed_point_inverse`: ``1e-12`` in float64, ``2e-6`` in float32.

    Example:
        >>> default_fixed_point_atol(torch.float64), default_fixed_point_atol(torch.float32)
        (1e-12, 2e-06)
    """
    if dtype == torch.float64:
        return 1e-12
    if dtype == torch.float32:
        return 2e-6
    return 16 * torch.finfo(dtype).eps


def fixed_point_inverse(
    branch: Callable[[Tensor], Tensor],
    z: Tensor,
    *,
    atol: float | None = None,
    max_iter: int = 200,
    owner: str = "fixed_point_inverse",
) -> tuple[Tensor, int]:
    r"""Solve :math:`x + g(x) = z` by the Banach iteration :math:`x_{k+1} = z - g(x_k)`, from :math:`x_0 = z`.

    The iteration stops at the first :math:`k` whose step
    :math:`\max\lvert x_k - x_{k-1}\rvert` is at most ``atol`` (over the whole
    batch). If :math:`\operatorname{Lip}(g) \le L < 1` it converges from any
    start, and Banach's theorem bounds the remaining error by
    :math:`\tfrac{L}{1 - L}` times the last step. Runs without gradients.

    Args:
        branch: the residual branch :math:`g`, batch to batch.
        z: the points to invert, ``(batch, D)``.
        atol: the tolerance on the step (default :func:`default_fixed_point_atol`).
        max_iter: the most iterations before giving up.
        owner: names the caller in the error message.

    Returns:
        ``(x, iterations)``.

    Raises:
        FixedPointError: if the step is still above ``atol`` after ``max_iter``
            iterations, or if the iterates become NaN or infinite; the message
            gives the last step and says that :math:`g` must be a contraction.

    Example:
        >>> import torch
        >>> x, k = fixed_point_inverse(lambda x: 0.5 * torch.sin(x), torch.tensor([[1.0]], dtype=torch.float64))
        >>> round((x + 0.5 * torch.sin(x)).item(), 12), k < 60
        (1.0, True)
        >>> fixed_point_inverse(lambda x: 3.0 * torch.sin(x), torch.ones(1, 1), max_iter=20)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        flowlib.bijections.residual.FixedPointError: fixed_point_inverse: the fixed-point iteration ... did not converge in 20 iterations...
    """
    atol = default_fixed_point_atol(z.dtype) if atol is None else check_float(f"{owner}: atol", atol, above=0.0)
    max_iter = check_int(f"{owner}: max_iter", max_iter, minimum=1)
    step = float("inf")
    with torch.no_grad():
        x = z
        for iteration in range(1, max_iter + 1):
            x_next = z - branch(x)
            step = (x_next - x).abs().max().item()
            x = x_next
            if not math.isfinite(step):
                raise FixedPointError(
                    f"{owner}: the fixed-point iteration x <- z - g(x) diverged: the iterates became NaN or infinite "
                    f"after {iteration} iterations. It converges when the residual branch g is a contraction, "
                    "Lip(g) < 1; this one is not"
                )
            if step <= atol:
                return x, iteration
    raise FixedPointError(
        f"{owner}: the fixed-point iteration x <- z - g(x) did not converge in {max_iter} iterations: the last step "
        f"still changed x by {step:.3g} (atol {atol:g}). It converges when the residual branch g is a contraction, "
        "Lip(g) < 1; check the branch's Lipschitz constant (kappa < 1), or raise max_iter if Lip(g) is close to 1"
    )


def _implicit_gradient(branch: nn.Module, z: Tensor, root: Tensor, atol: float, max_iter: int, owner: str) -> Tensor:
    r"""Give a root :math:`x^*` of :math:`x + g(x) = z`, found without autograd, the derivatives of the inverse.

    The value returned is :math:`z - g(x^*)`, one more iteration, so it equals
    :math:`x^*` to within the tolerance; its graph gives :math:`\partial/\partial z = I`
    and :math:`\partial/\partial\theta = -\partial g/\partial\theta`. A hook
    then replaces each incoming gradient :math:`\bar x` by
    :math:`a = (I + J_g)^{-\top}\bar x`, found by the same kind of iteration,
    :math:`a \leftarrow \bar x - J_g^\top a` (a contraction too, since
    :math:`\lVert J_g^\top\rVert_2 = \lVert J_g\rVert_2 < 1`). That gives the
    implicit function theorem's derivatives,
    :math:`\partial x/\partial z = (I + J_g)^{-1}` and
    :math:`\partial x/\partial\theta = -(I + J_g)^{-1}\partial g/\partial\theta`.
    """
    leaf = root.detach().requires_grad_(True)
    with torch.enable_grad():
        g_root = branch(leaf)
    x = z - g_root

    def corrected(grad: Tensor) -> Tensor:
        def transpose_step(a: Tensor) -> Tensor:
            (jt_a,) = torch.autograd.grad(g_root, leaf, a, retain_graph=True)
            return jt_a

        solution, _ = fixed_point_inverse(
            transpose_step, grad, atol=atol, max_iter=max_iter, owner=f"{owner} (gradient of the inverse)"
        )
        return solution

    x.register_hook(corrected)
    return x


def _rademacher(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = like.device if generator is None else generator.device
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(device=like.device, dtype=like.dtype)


def _roulette_extra_terms(p: float, generator: torch.Generator | None) -> int:
    """A draw of N - n ~ Geometric(p) on {0, 1, 2, ...}: P(N - n >= j) = (1 - p)^j."""
    device = "cpu" if generator is None else generator.device
    return int(torch.empty(1, device=device).geometric_(p, generator=generator).item()) - 1


def _jacobian(g_x: Tensor, x: Tensor, create_graph: bool) -> Tensor:
    """``J[b, i, j] = d g_i / d x_j`` for every sample (rows independent), from ``D`` backward passes."""
    rows = [
        torch.autograd.grad(g_x[:, i].sum(), x, retain_graph=True, create_graph=create_graph)[0]
        for i in range(g_x.shape[1])
    ]
    return torch.stack(rows, dim=1)


def hutchinson_series(
    g_x: Tensor,
    x: Tensor,
    coefficients: Sequence[float],
    n_probes: int = 1,
    *,
    create_graph: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Estimate :math:`\sum_k c_k \operatorname{tr}(J^k)` for each sample, :math:`J = \partial g(x)/\partial x`.

    For each of ``n_probes`` Rademacher vectors :math:`v` (independent
    :math:`\pm 1` entries, so :math:`\mathbb{E}[v v^\top] = I` and
    :math:`\mathbb{E}[v^\top A v] = \operatorname{tr}(A)`), the row vectors
    :math:`v^\top J^k` come from :math:`k` vector-Jacobian products, one more
    per term, and :math:`v^\top J^k v` is their dot product with :math:`v`:
    :math:`J` is never formed. ``g_x`` must be ``g(x)`` computed from ``x``
    with autograd; samples must not interact (no batch statistics).

    Example:
        >>> import torch
        >>> A = torch.tensor([[0.3, 0.1], [0.0, -0.2]], dtype=torch.float64)
        >>> x = torch.zeros(20000, 2, dtype=torch.float64, requires_grad=True)
        >>> estimate = hutchinson_series(x @ A.T, x, [1.0], generator=torch.Generator().manual_seed(0))
        >>> round(estimate.mean().item(), 2)   # tr(A) = 0.1
        0.1
    """
    total = x.new_zeros(x.shape[0])
    for _ in range(n_probes):
        probe = _rademacher(x.shape, x, generator)
        w = probe
        for coefficient in coefficients:
            (w,) = torch.autograd.grad(g_x, x, w, retain_graph=True, create_graph=create_graph)
            total = total + coefficient * (w * probe).sum(dim=1)
    return total / n_probes


def residual_logdet(
    branch: Callable[[Tensor], Tensor],
    x: Tensor,
    method: str = "exact",
    *,
    n_terms: int = 5,
    n_probes: int = 1,
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Return :math:`g(x)` and the exact or estimated :math:`\log\det(I + J_g(x))` of each sample.

    With :math:`J = J_g(x)` and :math:`\lVert J\rVert_2 < 1`,

    .. math::

        \log\det(I + J) = \sum_{k=1}^{\infty} \frac{(-1)^{k+1}}{k}\operatorname{tr}(J^k),
        \qquad \operatorname{tr}(A) = \mathbb{E}_v[v^\top A v] \quad (v \text{ Rademacher}).

    * ``"exact"``: ``slogdet`` of :math:`I + J`, with :math:`J` from :math:`D`
      backward passes;
    * ``"series"``: the first ``n_terms`` terms, each trace estimated with
      ``n_probes`` probes (biased: the tail is dropped);
    * ``"roulette"``: the first ``n_terms`` terms, then :math:`N - n` more, with
      :math:`N - n \sim \text{Geometric}(p)` on :math:`\{0, 1, \dots\}` drawn
      once per call; term :math:`k` is divided by :math:`P(N \ge k)`, which
      makes the estimate unbiased :cite:`chen2019residual`. Its variance is
      finite when the squared terms shrink faster than the probability of
      reaching them, :math:`\lVert J\rVert_2^2 < 1 - p`: with
      :math:`\operatorname{Lip}(g) \le L`, choose :math:`p < 1 - L^2`.

    Differentiable (``create_graph``) when gradients are enabled; under
    ``torch.no_grad()`` it still uses autograd internally and returns detached
    tensors. ``generator`` draws the probes and the roulette's :math:`N`.

    Example:
        >>> import torch
        >>> W = torch.tensor([[0.2, 0.3], [-0.1, 0.4]], dtype=torch.float64)
        >>> x = torch.zeros(3, 2, dtype=torch.float64)
        >>> _, exact = residual_logdet(lambda x: x @ W.T, x)
        >>> round(exact[0].item(), 6) == round(torch.logdet(torch.eye(2, dtype=torch.float64) + W).item(), 6)
        True
    """
    if method not in LOGDET_METHODS:
        raise ValueError(f"residual_logdet: method must be one of {LOGDET_METHODS}, got {method!r}")
    n_terms = check_int("residual_logdet: n_terms", n_terms, minimum=1)
    n_probes = check_int("residual_logdet: n_probes", n_probes, minimum=1)
    p = check_float("residual_logdet: p", p, above=0.0, below=1.0)
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        inputs = x if x.requires_grad else x.detach().requires_grad_(True)
        g_x = branch(inputs)
        if method == "exact":
            eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
            logdet = torch.linalg.slogdet(eye + _jacobian(g_x, inputs, create_graph))[1]
        else:
            count = n_terms if method == "series" else n_terms + _roulette_extra_terms(p, generator)
            coefficients = [
                (-1) ** (k + 1) / k / (1.0 if k <= n_terms else (1 - p) ** (k - n_terms)) for k in range(1, count + 1)
            ]
            logdet = hutchinson_series(
                g_x, inputs, coefficients, n_probes, create_graph=create_graph, generator=generator
            )
    if not create_graph:
        g_x, logdet = g_x.detach(), logdet.detach()
    return g_x, logdet


def _check_vector_features(owner: str, features: int) -> int:
    return check_int(f"{owner}: features", features, minimum=1)


class _ResidualBase(Bijection):
    """What both residual blocks share: z = x + g(x), the fixed-point inverse with its gradient, bookkeeping."""

    atol: float | None
    max_iter: int
    last_inverse_iterations: int | None

    def _setup_inverse(self, owner: str, atol: float | None, max_iter: int) -> None:
        self.atol = None if atol is None else check_float(f"{owner}: atol", atol, above=0.0)
        self.max_iter = check_int(f"{owner}: max_iter", max_iter, minimum=1)
        self.last_inverse_iterations = None

    def branch_forward(self, x: Tensor) -> Tensor:
        """The residual branch :math:`g(x)`."""
        raise NotImplementedError

    def linear_layers(self) -> list[SpectralNormLinear]:
        """The branch's spectrally normalized linear layers, input side first."""
        return [module for module in self.modules() if isinstance(module, SpectralNormLinear)]

    def update_spectral_norm(self, iterations: int = 100) -> None:
        """Run power iteration on every linear layer (after changing the weights by hand)."""
        for layer in self.linear_layers():
            layer.update_spectral_norm(iterations, rtol=0.0)

    def lipschitz_bound(self) -> float:
        r"""The product of the exact spectral norms of the normalized weights: a bound on :math:`\operatorname{Lip}(g)`."""
        return math.prod(layer.spectral_norm().item() for layer in self.linear_layers())

    def _branch_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        with full_precision(x):
            g_x, logdet = self._branch_and_logdet(x)
            return x + g_x, logdet

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        owner = type(self).__name__
        with full_precision(z):
            atol = default_fixed_point_atol(z.dtype) if self.atol is None else self.atol
            x, iterations = fixed_point_inverse(
                self.branch_forward, z, atol=atol, max_iter=self.max_iter, owner=f"{owner}.inverse"
            )
            self.last_inverse_iterations = iterations
            needs_gradient = z.requires_grad or any(p.requires_grad for p in self.parameters())
            if torch.is_grad_enabled() and needs_gradient:
                x = _implicit_gradient(self.branch_forward, z, x, atol, self.max_iter, owner)
            # the log-det's Jacobian is taken at a copy: autograd must not apply x's gradient hook to it
            _, logdet = self._branch_and_logdet(x.view_as(x) if x.requires_grad else x)
            return x, -logdet


class InvertibleResidual(_ResidualBase):
    r"""An invertible residual block (iResNet): :math:`z = x + g(x)`, with :math:`\operatorname{Lip}(g) \le \kappa^K < 1`.

    The branch is an MLP :math:`g = W_K \circ \sigma \circ \dots \circ \sigma \circ W_1`
    (biases included) whose :math:`K` linear layers are
    :class:`SpectralNormLinear` with bound :math:`\kappa` and whose
    activations :math:`\sigma` have slopes of magnitude at most 1. A Lipschitz
    constant of a composition is at most the product of those of its parts,
    so :math:`\operatorname{Lip}(g) \le \kappa^K \le \kappa < 1`.

    * ``forward`` (data to noise) is one pass of the branch, plus the
      log-determinant :math:`\log\det(I + J_g(x))` by ``logdet`` (see
      :func:`residual_logdet`): ``"exact"`` (:math:`O(D^3)`, for small
      :math:`D`), ``"series"`` (biased estimate) or ``"roulette"`` (unbiased
      estimate). In the two estimating modes ``logdet_is_exact`` is ``False``.
      The mode can be changed at any time (``block.logdet = "exact"``, or for a
      whole model :func:`logdet_mode`).
    * ``inverse`` (noise to data) iterates :math:`x \leftarrow z - g(x)` until
      a step is at most ``atol`` (:func:`fixed_point_inverse`), and records
      the number of iterations in :attr:`last_inverse_iterations`; it raises
      :class:`FixedPointError` if ``max_iter`` iterations are not enough. The
      inverse is differentiable, with the implicit function theorem's
      derivatives.

    Args:
        features: :math:`D`.
        hidden: widths of the branch's hidden layers.
        kappa: the spectral-norm bound of every linear layer, in ``(0, 1)``.
        activation: ``"lipswish"``, ``"elu"`` or ``"tanh"``.
        logdet: ``"exact"``, ``"series"`` or ``"roulette"``.
        n_terms: terms of the series (for ``"roulette"``: the terms always
            computed before the random tail).
        n_probes: Hutchinson probes per estimate.
        roulette_p: the geometric tail's parameter :math:`p` (expected extra
            terms :math:`(1 - p)/p`; the variance is finite for
            :math:`p < 1 - \kappa^{2K}`, see :func:`residual_logdet`).
        atol: tolerance of the fixed-point inverse (default
            :func:`default_fixed_point_atol`).
        max_iter: the most fixed-point iterations.
        power_iterations: the most power-iteration steps per change of the
            weights in training mode (see :class:`SpectralNormLinear`).
        generator: for the initial weights.

    Attributes:
        last_inverse_iterations: iterations of the last call of ``inverse``.

    Example:
        >>> import torch
        >>> block = InvertibleResidual(3, hidden=(8,), logdet="series", generator=torch.Generator().manual_seed(1))
        >>> block.logdet_is_exact, block.lipschitz_bound() <= 0.81 + 1e-6
        (False, True)
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 64),
        kappa: float = 0.9,
        activation: str = "lipswish",
        logdet: str = "exact",
        n_terms: int = 5,
        n_probes: int = 1,
        roulette_p: float = 0.5,
        atol: float | None = None,
        max_iter: int = 200,
        power_iterations: int = 20,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        owner = "InvertibleResidual"
        features = _check_vector_features(owner, features)
        self.kappa = check_float(
            f"{owner}: kappa", kappa, above=0.0, below=1.0, hint="the branch must be a contraction, kappa < 1"
        )
        widths = [check_int(f"{owner}: hidden width", h, minimum=1) for h in hidden]
        sizes = [features, *widths, features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(SpectralNormLinear(a, b, kappa, power_iterations=power_iterations, generator=generator))
            if i < len(sizes) - 2:
                layers.append(_activation(owner, activation))
        self.branch = nn.Sequential(*layers)
        self.activation = activation
        self.event_shape = as_event_shape(features)
        self.logdet = logdet
        self.n_terms = check_int(f"{owner}: n_terms", n_terms, minimum=1)
        self.n_probes = check_int(f"{owner}: n_probes", n_probes, minimum=1)
        self.roulette_p = check_float(f"{owner}: roulette_p", roulette_p, above=0.0, below=1.0)
        self._setup_inverse(owner, atol, max_iter)

    @property
    def logdet(self) -> str:
        """How the log-determinant is computed: ``"exact"``, ``"series"`` or ``"roulette"``."""
        return self._logdet

    @logdet.setter
    def logdet(self, method: str) -> None:
        if method not in LOGDET_METHODS:
            raise ValueError(f"{type(self).__name__}: logdet must be one of {LOGDET_METHODS}, got {method!r}")
        self._logdet = method

    @property
    def logdet_is_exact(self) -> bool:  # type: ignore[override]
        """``True`` only in the ``"exact"`` mode; the estimators report random values."""
        return self._logdet == "exact"

    def branch_forward(self, x: Tensor) -> Tensor:
        """The residual branch :math:`g(x)`."""
        return self.branch(x)

    def _branch_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return residual_logdet(
            self.branch, x, self._logdet, n_terms=self.n_terms, n_probes=self.n_probes, p=self.roulette_p
        )

    def extra_repr(self) -> str:
        return f"features={self.event_shape[0]}, kappa={self.kappa}, activation={self.activation!r}, logdet={self._logdet!r}"


class LowRankResidual(_ResidualBase):
    r"""A residual block with a rank-:math:`M` bottleneck, :math:`z = x + U\sigma(Vx + b)`, and an exact :math:`O(M^3)` log-det.

    :math:`V` is :math:`M \times D`, :math:`U` is :math:`D \times M`; both are
    spectrally normalized to :math:`\kappa`, so :math:`\operatorname{Lip}(g) \le \kappa^2`
    and the inverse is the same fixed-point iteration as
    :class:`InvertibleResidual`'s. The Jacobian of the branch is
    :math:`J_g = U\, \operatorname{diag}(\sigma'(Vx + b))\, V`, a product of a
    :math:`D \times M` and an :math:`M \times D` matrix, so the determinant
    lemma :math:`\det(I_D + AB) = \det(I_M + BA)` gives

    .. math::

        \log\det(I_D + J_g) = \log\det\big(I_M + \operatorname{diag}(\sigma'(Vx + b))\, V U\big),

    an :math:`M \times M` determinant instead of a :math:`D \times D` one. The
    planar flow is the case :math:`M = 1` (without the contraction).

    Args:
        features: :math:`D`.
        rank: :math:`M`.
        kappa: the spectral-norm bound of :math:`U` and :math:`V`, in ``(0, 1)``.
        activation: ``"lipswish"``, ``"elu"`` or ``"tanh"``.
        atol, max_iter: of the fixed-point inverse.
        power_iterations: see :class:`SpectralNormLinear`.
        generator: for the initial weights.

    Example:
        >>> import torch
        >>> layer = LowRankResidual(6, rank=2, generator=torch.Generator().manual_seed(0)).double()
        >>> x = torch.randn(3, 6, dtype=torch.float64)
        >>> _, lemma = layer(x)
        >>> _, brute = residual_logdet(layer.branch_forward, x, "exact")
        >>> bool((lemma - brute).abs().max() < 1e-12)
        True
    """

    def __init__(
        self,
        features: int,
        rank: int = 1,
        kappa: float = 0.9,
        activation: str = "tanh",
        atol: float | None = None,
        max_iter: int = 200,
        power_iterations: int = 20,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        owner = "LowRankResidual"
        features = _check_vector_features(owner, features)
        self.rank = check_int(f"{owner}: rank", rank, minimum=1)
        self.kappa = check_float(
            f"{owner}: kappa", kappa, above=0.0, below=1.0, hint="the branch must be a contraction, kappa < 1"
        )
        self.down = SpectralNormLinear(features, self.rank, kappa, power_iterations=power_iterations, generator=generator)
        self.up = SpectralNormLinear(
            self.rank, features, kappa, bias=False, power_iterations=power_iterations, generator=generator
        )
        self.sigma = _activation(owner, activation)
        self.activation = activation
        self.event_shape = as_event_shape(features)
        self._setup_inverse(owner, atol, max_iter)

    def branch_forward(self, x: Tensor) -> Tensor:
        """The residual branch :math:`g(x) = U\\sigma(Vx + b)`."""
        return self.up(self.sigma(self.down(x)))

    def _branch_and_logdet(self, x: Tensor) -> tuple[Tensor, Tensor]:
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            pre = self.down(x)  # (batch, M)
            point = pre if pre.requires_grad else pre.detach().requires_grad_(True)
            hidden = self.sigma(point)
            (slopes,) = torch.autograd.grad(hidden.sum(), point, create_graph=create_graph)  # sigma', elementwise
        if not create_graph:
            hidden, slopes = hidden.detach(), slopes.detach()
        V, U = self.down.normalized_weight(), self.up.normalized_weight()
        small = slopes[:, :, None] * (V @ U)  # diag(sigma') V U, (batch, M, M)
        eye = torch.eye(self.rank, dtype=x.dtype, device=x.device)
        return self.up(hidden), torch.linalg.slogdet(eye + small)[1]

    def extra_repr(self) -> str:
        return f"features={self.event_shape[0]}, rank={self.rank}, kappa={self.kappa}, activation={self.activation!r}"


@contextlib.contextmanager
def logdet_mode(module: nn.Module, method: str) -> Iterator[nn.Module]:
    """Within the ``with`` block, every :class:`InvertibleResidual` inside ``module`` uses ``method``.

    For instance, train with the ``"roulette"`` estimator and evaluate a 2-D
    model with the exact log-determinant. The previous modes are restored on exit.

    Example:
        >>> import torch
        >>> from flowlib import Compose
        >>> model = Compose(InvertibleResidual(2, hidden=(4,), logdet="series"))
        >>> with logdet_mode(model, "exact"):
        ...     model[0].logdet
        'exact'
        >>> model[0].logdet
        'series'
    """
    if method not in LOGDET_METHODS:
        raise ValueError(f"logdet_mode: method must be one of {LOGDET_METHODS}, got {method!r}")
    blocks = [m for m in module.modules() if isinstance(m, InvertibleResidual)]
    saved = [block.logdet for block in blocks]
    try:
        for block in blocks:
            block.logdet = method
        yield module
    finally:
        for block, previous in zip(blocks, saved):
            block.logdet = previous
