r"""A small variational autoencoder for the 8x8 digits, with an optional flow posterior and flow prior.

A VAE models discrete images :math:`x` through a continuous latent :math:`z \in \mathbb{R}^d`:

.. math::

    p_\theta(x) = \int p_\theta(x \mid z)\, p(z)\, dz ,

an integral nobody can compute. An encoder gives an approximate posterior
:math:`q_\phi(z \mid x)`, and training maximizes the ELBO, a lower bound of
:math:`\log p_\theta(x)` whose gap is the KL divergence to the true posterior:

.. math::

    \log p_\theta(x) = \underbrace{\mathbb{E}_{q_\phi(z \mid x)}\big[\log p_\theta(x \mid z) + \log p(z) - \log q_\phi(z \mid x)\big]}_{\mathrm{ELBO}(x)}
    + \mathrm{KL}\big(q_\phi(z \mid x) \,\Vert\, p_\theta(z \mid x)\big) .

This is :mod:`flowlib.vi.objectives` with :math:`\tilde p(z) = p_\theta(x, z)` and
:math:`Z = p_\theta(x)`. The three parts, and the choices this module offers:

* **Posterior** :math:`q_\phi(z \mid x)`. The encoder, an MLP, reads the image and
  returns a mean :math:`\mu(x)`, a log-standard-deviation :math:`\log\sigma(x)`
  and a context vector :math:`h(x)`. The draw :math:`z_0 = \mu + \sigma \odot \varepsilon`,
  :math:`\varepsilon \sim \mathcal{N}(0, I)`, is a **diagonal Gaussian** posterior.
  With ``posterior_layers > 0`` it then goes through that many
  :class:`~flowlib.bijections.InverseAutoregressive` layers whose MADEs read the
  context (Kingma et al., 2016), in their generative direction (one pass each):

  .. math::

      z = g_\phi(z_0; h), \qquad
      \log q_\phi(z \mid x) = \log\mathcal{N}(z_0; \mu, \operatorname{diag}\sigma^2)
      - \log\Big\lvert\det\frac{\partial z}{\partial z_0}\Big\rvert .

  The posterior is sampled and its density evaluated at its own samples only,
  so the IAF's slow (sequential) direction is never used.
* **Prior** :math:`p(z)`: the standard normal, or any flow over
  :math:`\mathbb{R}^d` (``prior=`` a :class:`~flowlib.Flow`, e.g.
  :func:`flowlib.models.maf`). The ELBO evaluates :math:`\log p(z)` at the
  posterior's samples, the normalizing direction, which a MAF does in one pass;
  sampling new images from a MAF prior is sequential, which at :math:`d = 8` costs nothing.
* **Decoder** :math:`p_\theta(x \mid z)`: an MLP that gives each pixel a
  **categorical distribution over its** :math:`L` **levels** (17 for the digits),
  independently given :math:`z`. It is a distribution over the integer pixels
  themselves, so :math:`\log p_\theta(x)` is the log-*probability* of the
  discrete image: no dequantization, and :math:`-\log p_\theta(x)/(D \ln 2)`
  is the number of bits per pixel, directly comparable with chapter 4's
  bits/dim (which bounds the same quantity from above through dequantization).
  A continuous decoder (a Gaussian on the pixel values) could put unbounded
  density on the integer values; a categorical one cannot cheat that way, and
  with 17 levels its 17 logits per pixel are cheap.

**Training** goes through :class:`flowlib.train.Trainer` unchanged:
:meth:`VAE.log_prob` returns the one-sample ELBO of each image, so the
Trainer's "mean NLL" is the mean negative ELBO, its ``evaluate`` and validation
losses too. The estimate is random (a fresh :math:`\varepsilon` per call), drawn
from the global torch generator on the model's device.

**Evaluation**: :meth:`VAE.log_weights` returns
:math:`\log w_k = \log p_\theta(x, z_k) - \log q_\phi(z_k \mid x)` for :math:`S`
posterior samples; their mean estimates the ELBO and their ``log_mean_exp``
the importance-weighted bound :math:`\mathcal{E}_S \le \log p_\theta(x)`
(Burda et al., 2016), :meth:`VAE.importance_weighted_log_likelihood`.

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> vae = digits_vae(latent=4, hidden=(32,), posterior_layers=2, prior="maf")
    >>> x = torch.randint(0, 17, (5, 1, 8, 8)).float()
    >>> vae.log_prob(x).shape, vae.log_weights(x, num_samples=3).shape
    (torch.Size([5]), torch.Size([3, 5]))
    >>> bool((vae.importance_weighted_log_likelihood(x, num_samples=20) < 0).all())   # log-probabilities
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from ..bijections import InverseAutoregressive
from ..checks import check_int
from ..constants import LOG_2PI
from ..core import Compose, Flow, as_event_shape, check_tensor, full_precision
from ..distributions import StandardNormal
from ..models import maf
from ..nets import MLP
from .objectives import log_mean_exp

__all__ = ["VAE", "digits_vae", "PRIORS"]

PRIORS = ("standard", "maf")
"""The priors :func:`digits_vae` builds by name: ``"standard"`` (:math:`\\mathcal{N}(0, I)`) or ``"maf"`` (a MAF)."""


class VAE(nn.Module):
    r"""A VAE over images of integer pixels in :math:`\{0, \dots, L-1\}`: see the module's docstring.

    Args:
        event_shape: the shape of one image, e.g. ``(1, 8, 8)``; :math:`D` values.
        levels: :math:`L`, the number of pixel values.
        latent: :math:`d`, the dimension of :math:`z`.
        hidden: hidden widths of the encoder and of the decoder MLPs.
        posterior_layers: number of IAF layers after the Gaussian (0: a diagonal Gaussian posterior).
        posterior_hidden: hidden widths of each IAF layer's MADE.
        context_features: size of the context :math:`h(x)` the IAF layers read.
        prior: ``None`` for :math:`\mathcal{N}(0, I_d)`, or a module with
            ``log_prob(z)`` and ``sample`` over :math:`\mathbb{R}^d`: a :class:`~flowlib.Flow`
            (``sample(n)``) or a base distribution (``sample((n,))``).

    Attributes:
        encoder: MLP from the :math:`D` scaled pixels to :math:`[\mu, \log\sigma, h]`.
        posterior_flow: the IAF layers (a :class:`~flowlib.Compose`) or ``None``.
        prior: the prior.
        decoder: MLP from :math:`z` to :math:`D \cdot L` logits.
    """

    def __init__(
        self,
        event_shape: int | Iterable[int] = (1, 8, 8),
        levels: int = 17,
        latent: int = 8,
        hidden: Sequence[int] = (256, 256),
        posterior_layers: int = 0,
        posterior_hidden: Sequence[int] = (64, 64),
        context_features: int = 16,
        prior: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self._event_shape = as_event_shape(event_shape)
        self.levels = check_int("VAE: levels", levels, minimum=2)
        self.latent = check_int("VAE: latent", latent, minimum=1)
        posterior_layers = check_int("VAE: posterior_layers", posterior_layers, minimum=0)
        self.context_features = check_int("VAE: context_features", context_features, minimum=1) if posterior_layers else 0
        data_features = self._event_shape.numel()
        self.encoder = MLP(data_features, 2 * self.latent + self.context_features, hidden, zero_last=False)
        self.posterior_flow: Compose | None = None
        if posterior_layers:
            orders = ("natural", "reversed")
            self.posterior_flow = Compose(
                *[
                    InverseAutoregressive(
                        self.latent, hidden=posterior_hidden, order=orders[k % 2], context_features=self.context_features
                    )
                    for k in range(posterior_layers)
                ]
            )
        if prior is None:
            prior = StandardNormal(self.latent)
        if not callable(getattr(prior, "log_prob", None)) or not callable(getattr(prior, "sample", None)):
            raise TypeError(f"VAE: prior must have log_prob(z) and sample(n), got {type(prior).__name__}")
        prior_shape = getattr(prior, "event_shape", None)
        if prior_shape is not None and torch.Size(prior_shape) != torch.Size([self.latent]):
            raise ValueError(f"VAE: the prior is over events of shape {tuple(prior_shape)}, not ({self.latent},)")
        self.prior = prior
        self.decoder = MLP(self.latent, data_features * self.levels, hidden, zero_last=False)

    @property
    def event_shape(self) -> torch.Size:
        """The shape of one image (what the :class:`~flowlib.train.Trainer` checks the data against)."""
        return self._event_shape

    # ------------------------------------------------------------------ the three parts

    def _check_images(self, x: Tensor) -> Tensor:
        x = check_tensor(x, "VAE", "the images", self._event_shape)
        if not bool(((x == x.round()) & (x >= 0) & (x <= self.levels - 1)).all()):
            raise ValueError(
                f"VAE: the images must hold integer pixel values in 0..{self.levels - 1} (not dequantized, not scaled)"
            )
        return x

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        r"""The encoder's :math:`\mu(x)`, :math:`\log\sigma(x)` (each ``(batch, d)``) and context :math:`h(x)` (or ``None``)."""
        scaled = x.flatten(1) / (self.levels - 1) - 0.5
        out = self.encoder(scaled).to(x.dtype)
        mean, log_std = out[:, : self.latent], out[:, self.latent : 2 * self.latent]
        context = out[:, 2 * self.latent :] if self.context_features else None
        return mean, log_std, context

    def posterior_rsample(self, x: Tensor, num_samples: int = 1) -> tuple[Tensor, Tensor]:
        r"""Draw :math:`z \sim q_\phi(z \mid x)`, ``num_samples`` per image, and :math:`\log q_\phi(z \mid x)`.

        Returns:
            ``(z, log_q)``, shapes ``(num_samples, batch, d)`` and ``(num_samples, batch)``.
        """
        mean, log_std, context = self.encode(x)
        batch = x.shape[0]
        with full_precision(x):
            eps = torch.randn(num_samples, batch, self.latent, device=x.device,
                              dtype=x.dtype)
            z = mean + log_std.exp() * eps  # the diagonal Gaussian
            log_q = (-0.5 * eps**2 - log_std - 0.5 * LOG_2PI).sum(-1)
        if self.posterior_flow is not None:  # IAF layers, generative direction
            flat_context = context.repeat(num_samples, 1)  # row s * batch + b: image b
            z_flat = z.reshape(-1, self.latent)
            z_flat, ladj = self.posterior_flow.inverse(z_flat, flat_context)
            z = z_flat.reshape(num_samples, batch, self.latent)
            log_q = log_q - ladj.reshape(num_samples, batch)
        return z, log_q

    def decoder_logits(self, z: Tensor) -> Tensor:
        r"""The logits of :math:`p_\theta(x \mid z)`: shape ``(n, D, L)`` for ``n`` latents of shape ``(n, d)``."""
        return self.decoder(z).reshape(z.shape[0], self._event_shape.numel(), self.levels)

    def decoder_log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        r""":math:`\log p_\theta(x \mid z) = \sum_i \log \operatorname{softmax}(\text{logits}_i)[x_i]`, for ``z`` of shape ``(S, batch, d)``; shape ``(S, batch)``."""
        samples, batch = z.shape[0], z.shape[1]
        logits = self.decoder_logits(z.reshape(samples * batch, self.latent))
        with full_precision(x):
            log_p = torch.log_softmax(logits.to(x.dtype), dim=-1)
            index = x.flatten(1).long().repeat(samples, 1).unsqueeze(-1)
            return log_p.gather(-1, index).squeeze(-1).sum(-1).reshape(samples, batch)

    def prior_log_prob(self, z: Tensor) -> Tensor:
        r""":math:`\log p(z)` for ``z`` of shape ``(S, batch, d)``; shape ``(S, batch)``."""
        samples, batch = z.shape[0], z.shape[1]
        return self.prior.log_prob(z.reshape(samples * batch, self.latent)).reshape(samples, batch)

    # ------------------------------------------------------------------ the objectives

    def log_weights(self, x: Tensor, num_samples: int = 1) -> Tensor:
        r"""The log-weights of ``num_samples`` posterior draws :math:`z_k \sim q_\phi(\cdot \mid x)` per image.

        .. math::

            \log w_k = \log p_\theta(x \mid z_k) + \log p(z_k) - \log q_\phi(z_k \mid x) .

        Returns a tensor of shape ``(num_samples, batch)``; its mean over the
        samples estimates the ELBO, its :func:`~flowlib.vi.objectives.log_mean_exp`
        is the importance-weighted bound.
        """
        x = self._check_images(x)
        num_samples = check_int("VAE: num_samples", num_samples, minimum=1)
        z, log_q = self.posterior_rsample(x, num_samples)
        return self.decoder_log_prob(x, z) + self.prior_log_prob(z) - log_q

    def elbo(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """The ELBO of each image, estimated with ``num_samples`` posterior samples; shape ``(batch,)``."""
        return self.log_weights(x, num_samples).mean(0)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The one-sample ELBO of each image, shape ``(batch,)``: what the Trainer maximizes (a lower bound of log p(x))."""
        if context is not None:
            raise ValueError("VAE: the model takes no context (it conditions on the image through its encoder)")
        return self.elbo(x, 1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x, context)

    @torch.no_grad()
    def importance_weighted_log_likelihood(self, x: Tensor, num_samples: int = 100, chunk: int = 50) -> Tensor:
        r"""The importance-weighted estimate of :math:`\log p_\theta(x)` with :math:`S` = ``num_samples``; shape ``(batch,)``.

        :math:`\log\frac1S\sum_k w_k`, computed from ``chunk`` samples at a time
        and pooled before the ``logsumexp``. Its expectation is the bound
        :math:`\mathcal{E}_S`, which lies between the ELBO and :math:`\log p_\theta(x)`
        and approaches the latter as :math:`S` grows.
        """
        num_samples = check_int("VAE: num_samples", num_samples, minimum=1)
        chunk = check_int("VAE: chunk", chunk, minimum=1)
        pieces = [self.log_weights(x, min(chunk, num_samples - start)) for start in range(0, num_samples, chunk)]
        return log_mean_exp(torch.cat(pieces, dim=0).double(), dim=0)

    # ------------------------------------------------------------------ generating

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False) -> Tensor:
        """``n`` images from the model: :math:`z \\sim p(z)`, then each pixel from the decoder.

        With ``mean=True`` each pixel is the decoder's expected value (a float in
        ``[0, L-1]``) instead of a random level: a smoother picture of what
        :math:`z` encodes.
        """
        n = check_int("VAE: n", n, minimum=1)
        z = self.prior.sample(n) if isinstance(self.prior, Flow) else self.prior.sample((n,))
        logits = self.decoder_logits(z).float()
        if mean:
            levels = torch.arange(self.levels, device=logits.device, dtype=logits.dtype)
            pixels = (logits.softmax(-1) * levels).sum(-1)
        else:
            pixels = torch.distributions.Categorical(logits=logits).sample().to(logits.dtype)
        return pixels.reshape(n, *self._event_shape)


def digits_vae(
    latent: int = 8,
    hidden: Sequence[int] = (256, 256),
    posterior_layers: int = 0,
    posterior_hidden: Sequence[int] = (64, 64),
    context_features: int = 16,
    prior: str = "standard",
    prior_layers: int = 4,
    prior_hidden: Sequence[int] = (64, 64),
    event_shape: int | Iterable[int] = (1, 8, 8),
    levels: int = 17,
) -> VAE:
    r"""A :class:`VAE` for sklearn's 8x8 digits (17 levels): the configurations of chapter 8.

    * ``posterior_layers=0, prior="standard"``: the plain VAE, diagonal Gaussian
      posterior and :math:`\mathcal{N}(0, I)` prior;
    * ``posterior_layers=K``: a flow posterior, :math:`K` IAF layers conditioned on the encoder;
    * ``prior="maf"``: a flow prior, a :func:`~flowlib.models.maf` of
      ``prior_layers`` layers with MADEs of widths ``prior_hidden``.

    Seed torch before calling it: the networks start from PyTorch's random
    initialization (the flows' MADEs start at the identity).

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> vae = digits_vae(posterior_layers=2, prior="maf")
        >>> vae.posterior_flow is not None, type(vae.prior).__name__
        (True, 'Flow')
    """
    if prior not in PRIORS:
        raise ValueError(f"digits_vae: prior must be one of {PRIORS}, got {prior!r}")
    prior_module: nn.Module | None = None
    if prior == "maf":
        prior_module = maf(latent, layers=check_int("digits_vae: prior_layers", prior_layers, minimum=1), hidden=prior_hidden)
    return VAE(
        event_shape,
        levels,
        latent,
        hidden,
        posterior_layers=posterior_layers,
        posterior_hidden=posterior_hidden,
        context_features=context_features,
        prior=prior_module,
    )
