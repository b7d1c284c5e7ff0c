r"""Flows for variational inference (chapter 8): objectives, unnormalized 2-D targets, and a small digits VAE.

* :mod:`~flowlib.vi.objectives`: the ELBO and the reverse-KL loss of a flow
  against an unnormalized target (samples and densities from
  :meth:`~flowlib.Flow.rsample_and_log_prob`, so no inverse is needed), the
  importance-weighted estimate of :math:`\log Z`, the effective sample size,
  a stable ``log_mean_exp``, and :func:`fit_reverse_kl`, a small fitting loop;
* :mod:`~flowlib.vi.targets`: the four energy densities :math:`U_1, \dots, U_4`
  of Rezende and Mohamed (2015) as named targets, a Gaussian mixture, and
  :func:`grid_log_normalizer`, the brute-force :math:`\log Z` of a 2-D density;
* :mod:`~flowlib.vi.vae`: :class:`VAE` and :func:`digits_vae`, a VAE for the
  8x8 digits with a diagonal Gaussian or IAF posterior, a standard normal or
  MAF prior, and a categorical decoder over the 17 pixel levels; it trains
  with :class:`flowlib.train.Trainer`, since its ``log_prob`` is the ELBO.

Example:
    >>> import torch
    >>> from flowlib.models import planar_flow
    >>> _ = torch.manual_seed(0)
    >>> q = planar_flow(2, layers=4)
    >>> elbo(q, ENERGY_TARGETS["U1"].log_prob, num_samples=128).shape
    torch.Size([])
"""

from .objectives import (
    LogNormalizerEstimate,
    LogTarget,
    effective_sample_size,
    elbo,
    estimate_log_normalizer,
    fit_reverse_kl,
    log_importance_weights,
    log_mean_exp,
    reverse_kl_loss,
)
from .targets import (
    ENERGY_TARGETS,
    EnergyTarget,
    GaussianMixture,
    bump,
    energy_target,
    grid_log_normalizer,
    step,
    u1,
    u2,
    u3,
    u4,
    wall,
    wave,
)
from .vae import PRIORS, VAE, digits_vae

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
    "EnergyTarget",
    "ENERGY_TARGETS",
    "energy_target",
    "grid_log_normalizer",
    "GaussianMixture",
    "wave",
    "bump",
    "step",
    "wall",
    "u1",
    "u2",
    "u3",
    "u4",
    "VAE",
    "digits_vae",
    "PRIORS",
]
