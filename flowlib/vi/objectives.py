r"""The objectives of variational inference with a flow: the ELBO (reverse KL) and importance-weighted bounds.

The target is known up to its normalizing constant, :math:`p^*(x) = \tilde p(x)/Z`.
For a density :math:`q` that we can sample, the **log-weight** of a sample is

.. math::

    \log w(x) = \log\tilde p(x) - \log q(x), \qquad x \sim q, \qquad \mathbb{E}_q[w] = Z .

* The **ELBO** is the mean log-weight. By Jensen's inequality it lies below
  :math:`\log Z`, and the gap is the reverse KL divergence:

  .. math::

      \mathrm{ELBO}(q) = \mathbb{E}_q[\log w] = \log Z - \mathrm{KL}(q \,\Vert\, p^*) .

  Maximizing it over a flow :math:`q_\phi` minimizes :math:`\mathrm{KL}(q_\phi \Vert p^*)`
  (:func:`reverse_kl_loss`). Both terms of :math:`\log w` are evaluated at
  the flow's *own* samples, so :meth:`~flowlib.Flow.rsample_and_log_prob`
  provides everything in the generative direction: the flow never needs an inverse.

* The **importance-weighted bound** with :math:`S` samples averages the weights
  *inside* the logarithm:

  .. math::

      \mathcal{E}_S = \mathbb{E}\Big[\log \frac1S \sum_{k=1}^S w(x_k)\Big], \qquad x_k \sim q \text{ i.i.d.},

  with :math:`\mathcal{E}_1 = \mathrm{ELBO} \le \mathcal{E}_S \le \mathcal{E}_{S+1} \le \log Z`
  and :math:`\mathcal{E}_S \to \log Z` as :math:`S \to \infty` when the weights have
  a finite variance (Burda et al., 2016). One draw of the inner average is the
  **importance-weighted estimate** of :math:`\log Z` (:func:`estimate_log_normalizer`).

The same formulas give a latent-variable model's log-likelihood: take
:math:`\tilde p(z) = p(x, z) = p(x \mid z)\,p(z)` and :math:`q(z \mid x)`, then
:math:`Z = p(x)` (see :mod:`flowlib.vi.vae`).

Example:
    >>> import torch
    >>> from flowlib import Flow, StandardNormal
    >>> from flowlib.bijections import ElementwiseAffine
    >>> q = Flow(StandardNormal(1), ElementwiseAffine(1.0))           # q = N(0, 1)
    >>> log_target = lambda x: -0.5 * (x**2).sum(1)                  # p~ = exp(-x^2/2): Z = sqrt(2 pi)
    >>> _ = torch.manual_seed(0)
    >>> estimate = estimate_log_normalizer(q, log_target, num_samples=1000)
    >>> round(estimate.log_z, 4), round(0.5 * math.log(2 * math.pi), 4)   # q = p*: every weight is Z
    (0.9189, 0.9189)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..checks import check_float, check_int
from ..core import Flow

__all__ = [
    "LogTarget",
    "log_mean_exp",
    "effective_sample_size",
    "log_importance_weights",
    "elbo",
    "reverse_kl_loss",
    "LogNormalizerEstimate",
    "estimate_log_normalizer",
    "fit_reverse_kl",
]

LogTarget = Callable[[Tensor], Tensor]
"""An unnormalized log-density :math:`\\log\\tilde p`: ``(n, *event_shape)`` points to ``(n,)`` values."""


def log_mean_exp(values: Tensor, dim: int = 0) -> Tensor:
    r""":math:`\log \frac1S \sum_k e^{v_k}` along ``dim`` (:math:`S` entries), never over- or underflowing.

    Computed as :math:`\operatorname{logsumexp}(v) - \log S`: the largest value is
    taken out before exponentiating, so log-weights of :math:`-1000` nats (whose
    exponentials are 0 in any floating-point format) are averaged correctly.
    With log-weights as ``values`` it is the importance-weighted bound's inner term.

    Example:
        >>> import torch
        >>> log_mean_exp(torch.tensor([-1000.0, -1000.0])).item()
        -1000.0
        >>> torch.log(torch.exp(torch.tensor([-1000.0, -1000.0])).mean()).item()   # the naive formula
        -inf
    """
    if not isinstance(values, Tensor) or not values.is_floating_point():
        raise TypeError(
            f"log_mean_exp: expected a floating-point tensor, got {type(values).__name__}"
        )
    count = values.shape[dim]
    if count == 0:
        raise ValueError("log_mean_exp: cannot average zero values")
    return torch.logsumexp(values, dim=dim) - math.log(count)


def effective_sample_size(log_weights: Tensor, dim: int = 0) -> Tensor:
    r"""Kish's effective sample size of importance weights, :math:`(\sum_k w_k)^2 / \sum_k w_k^2`, from their logarithms.

    It lies between 1 (one weight dominates) and :math:`S` (all weights equal,
    :math:`q = p^*`). A small value says the estimate of :math:`Z` rests on a
    few samples. A large value does not prove that :math:`q` covers the target:
    weights that are never drawn (a mode that :math:`q` misses) cannot lower it.

    Example:
        >>> import torch
        >>> effective_sample_size(torch.zeros(10)).item(), round(effective_sample_size(torch.tensor([0.0, -50.0])).item(), 6)
        (10.0, 1.0)
    """
    if not isinstance(log_weights, Tensor) or not log_weights.is_floating_point():
        raise TypeError(f"effective_sample_size: expected a floating-point tensor, got {type(log_weights).__name__}")
    return torch.exp(2.0 * torch.logsumexp(log_weights, dim=dim) - torch.logsumexp(2.0 * log_weights, dim=dim))


def log_importance_weights(
    q: Flow, log_target: LogTarget, num_samples: int, context: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Draw ``num_samples`` points from ``q``, with their log-weights.

    The log-weight of :math:`x` is :math:`\log w(x) = \log\tilde p(x) - \log q(x)`.

    The samples come from :meth:`~flowlib.Flow.rsample_and_log_prob`, the
    generative direction only, and gradients flow to ``q``'s parameters
    through both the points and their log-densities (the reparameterization
    trick). With a ``context`` (a conditional flow) one point is drawn per row.

    Returns:
        ``(x, log_w)``: the points, shape ``(num_samples, *event_shape)``, and
        their log-weights, shape ``(num_samples,)``.
    """
    owner = "log_importance_weights"
    if not isinstance(q, Flow):
        raise TypeError(f"{owner}: q must be a flowlib Flow, got {type(q).__name__}")
    if not callable(log_target):
        raise TypeError(f"{owner}: log_target must be callable, got {type(log_target).__name__}")
    num_samples = check_int(f"{owner}: num_samples", num_samples, minimum=1)
    x, log_q = q.rsample_and_log_prob(num_samples, context)  # generative direction only
    log_p = log_target(x)
    if not isinstance(log_p, Tensor) or log_p.shape != log_q.shape:
        got = tuple(log_p.shape) if isinstance(log_p, Tensor) else type(log_p).__name__
        raise ValueError(
            f"{owner}: log_target must return one value per point, shape {tuple(log_q.shape)}; "
            f"got {got}"
        )
    return x, log_p - log_q


def elbo(q: Flow, log_target: LogTarget, num_samples: int = 256, context: Tensor | None = None) -> Tensor:
    r"""The Monte-Carlo ELBO :math:`\frac1n \sum_i [\log\tilde p(x_i) - \log q(x_i)]`, :math:`x_i \sim q`: a differentiable scalar.

    Its expectation is :math:`\log Z - \mathrm{KL}(q \Vert p^*)`.

    Example:
        >>> import torch
        >>> from flowlib import Flow, StandardNormal
        >>> from flowlib.bijections import ElementwiseAffine
        >>> q = Flow(StandardNormal(2), ElementwiseAffine(torch.ones(2)))
        >>> value = elbo(q, lambda x: -0.5 * (x**2).sum(1), num_samples=64)
        >>> value.shape, value.requires_grad
        (torch.Size([]), True)
    """
    _, log_w = log_importance_weights(q, log_target, num_samples, context)
    return log_w.mean()


def reverse_kl_loss(
    q: Flow, log_target: LogTarget, num_samples: int = 256, beta: float = 1.0, context: Tensor | None = None
) -> Tensor:
    r"""The loss of variational inference, :math:`\frac1n\sum_i [\log q(x_i) - \beta\log\tilde p(x_i)]`, :math:`x_i \sim q`.

    With :math:`\beta = 1` it is :math:`-\mathrm{ELBO}`, whose expectation is
    :math:`\mathrm{KL}(q \Vert p^*) - \log Z`: minimizing it minimizes the
    reverse KL, since :math:`\log Z` does not depend on :math:`q`. A
    :math:`\beta < 1` *anneals* the target, :math:`\tilde p^\beta`, flatter than
    :math:`\tilde p`, which lets :math:`q` spread over all of the target early in
    training before it has to fit the narrow parts (Rezende and Mohamed, 2015).
    """
    beta = check_float("reverse_kl_loss: beta", beta, above=0.0)
    x, log_q = q.rsample_and_log_prob(check_int("reverse_kl_loss: num_samples", num_samples, minimum=1), context)
    log_p = log_target(x)
    if not isinstance(log_p, Tensor) or log_p.shape != log_q.shape:
        raise ValueError(f"reverse_kl_loss: log_target must return one value per point, shape {tuple(log_q.shape)}")
    return (log_q - beta * log_p).mean()


@dataclass(frozen=True)
class LogNormalizerEstimate:
    r"""What :func:`estimate_log_normalizer` measured from :math:`S` samples of :math:`q`.

    Attributes:
        log_z: the importance-weighted estimate :math:`\log\frac1S\sum_k w_k`.
        log_z_std_error: its delta-method standard error, :math:`\sqrt{1/\mathrm{ESS} - 1/S}`.
        elbo: the mean log-weight, an estimate of the ELBO.
        elbo_std_error: its standard error, :math:`\operatorname{sd}(\log w)/\sqrt{S}`.
        ess: the effective sample size :math:`(\sum w)^2/\sum w^2` (:func:`effective_sample_size`).
        num_samples: :math:`S`.
    """

    log_z: float
    log_z_std_error: float
    elbo: float
    elbo_std_error: float
    ess: float
    num_samples: int

    @property
    def gap(self) -> float:
        r"""``log_z - elbo``: an estimate of :math:`\mathrm{KL}(q \Vert p^*)` when ``log_z`` is accurate."""
        return self.log_z - self.elbo


@torch.no_grad()
def estimate_log_normalizer(
    q: Flow, log_target: LogTarget, num_samples: int = 100_000, batch_size: int = 10_000
) -> LogNormalizerEstimate:
    r"""Estimate :math:`\log Z` and the ELBO from ``num_samples`` samples of ``q``, drawn ``batch_size`` at a time.

    The log-weights of all batches are pooled (in float64) before the
    ``logsumexp``, so the estimate is that of one importance-weighted average over
    all :math:`S` samples. It is consistent (:math:`\to\log Z` as :math:`S\to\infty`)
    and biased low for finite :math:`S` (Jensen). Its standard error, from the
    delta method, is :math:`\operatorname{sd}(w)/(\sqrt S\,\bar w) = \sqrt{1/\mathrm{ESS} - 1/S}`;
    like the ESS, it cannot see regions of the target that :math:`q` never
    visits, so a :math:`q` that misses a mode gives a precise-looking estimate
    that is too low.
    """
    num_samples = check_int("estimate_log_normalizer: num_samples", num_samples, minimum=2)
    batch_size = check_int("estimate_log_normalizer: batch_size", batch_size, minimum=1)
    pieces = []
    for start in range(0, num_samples, batch_size):
        _, log_w = log_importance_weights(q, log_target, min(batch_size, num_samples - start))
        pieces.append(log_w.double().cpu())
    log_w = torch.cat(pieces)
    ess = float(effective_sample_size(log_w))
    return LogNormalizerEstimate(
        log_z=float(log_mean_exp(log_w)),
        log_z_std_error=math.sqrt(max(1.0 / ess - 1.0 / num_samples, 0.0)),
        elbo=float(log_w.mean()),
        elbo_std_error=float(log_w.std() / math.sqrt(num_samples)),
        ess=ess,
        num_samples=num_samples,
    )


def fit_reverse_kl(
    q: Flow,
    log_target: LogTarget,
    steps: int,
    *,
    num_samples: int = 256,
    lr: float = 1e-2,
    anneal_steps: int = 0,
    initial_beta: float = 0.01,
    grad_clip: float | None = 10.0,
) -> list[float]:
    r"""Fit a flow to an unnormalized target by minimizing :func:`reverse_kl_loss` with Adam; return the ELBO per step.

    The learning rate follows a cosine schedule from ``lr`` down to 0 over
    ``steps``, which lets the stochastic gradients settle at the end. With
    ``anneal_steps > 0`` the target is annealed: :math:`\beta` grows linearly
    from ``initial_beta`` to 1 over the first ``anneal_steps`` steps.
    The ELBO recorded at each step is that of the un-annealed target
    (:math:`\beta = 1`), estimated from the step's own ``num_samples`` samples,
    before the update.

    The samples come from the global torch generator: seed it for a
    reproducible fit. Device-agnostic: ``q`` draws its samples on its own
    device, and ``log_target`` must accept them there.

    Example:
        >>> import torch
        >>> from flowlib import Flow, DiagonalGaussian
        >>> from flowlib.bijections import ElementwiseAffine
        >>> _ = torch.manual_seed(0)
        >>> q = Flow(DiagonalGaussian(1), ElementwiseAffine(1.0, learnable=False))
        >>> curve = fit_reverse_kl(q, lambda x: -0.5 * ((x - 3.0) ** 2).sum(1), steps=300, lr=0.05)
        >>> round(q.base.loc.item(), 1), round(q.base.scale.item(), 1)   # q -> N(3, 1)
        (3.0, 1.0)
    """
    if not isinstance(q, Flow):
        raise TypeError(f"fit_reverse_kl: q must be a flowlib Flow, got {type(q).__name__}")
    steps = check_int("fit_reverse_kl: steps", steps, minimum=1)
    lr = check_float("fit_reverse_kl: lr", lr, above=0.0)
    anneal_steps = check_int("fit_reverse_kl: anneal_steps", anneal_steps, minimum=0)
    initial_beta = check_float("fit_reverse_kl: initial_beta", initial_beta, above=0.0)
    if initial_beta > 1.0:
        raise ValueError(f"fit_reverse_kl: initial_beta must be in (0, 1], got {initial_beta}")
    grad_clip = check_float("fit_reverse_kl: grad_clip", grad_clip, above=0.0, allow_none=True)
    parameters = [p for p in q.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("fit_reverse_kl: q has no trainable parameters")
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    curve: list[float] = []
    for t in range(steps):
        beta = min(1.0, initial_beta + (1.0 - initial_beta) * t / anneal_steps) if anneal_steps else 1.0
        x, log_q = q.rsample_and_log_prob(num_samples)
        log_p = log_target(x)
        loss = (log_q - beta * log_p).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()
        schedule.step()
        value = float((log_p - log_q).detach().mean())
        if not math.isfinite(value):
            raise FloatingPointError(f"fit_reverse_kl: the ELBO is {value} at step {t + 1}; lower lr or clip gradients")
        curve.append(value)
    return curve
