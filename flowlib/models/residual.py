r"""Residual flows: the invertible residual network (iResNet), planar flows and radial flows.

Every builder returns a :class:`~flowlib.core.Flow` with a standard normal
base. ``iresnet`` is for density estimation: its layers run data to noise with
one pass of each branch, and sampling inverts them by fixed-point iteration.
``planar_flow`` and ``radial_flow`` stack layers whose cheap, explicit
direction is the generative one (``inverse``): they are meant for variational
inference, where ``Flow.rsample_and_log_prob`` uses that direction only.

Example:
    >>> import torch
    >>> flow = iresnet(2, blocks=2, hidden=(16,), logdet="exact")
    >>> flow.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])
"""

from __future__ import annotations

from collections.abc import Sequence

from ..bijections.planar import Planar, Radial
from ..bijections.residual import InvertibleResidual
from ..checks import check_int
from ..core import Compose, Flow
from ..distributions import StandardNormal

__all__ = ["iresnet", "planar_flow", "radial_flow"]


def iresnet(
    features: int,
    blocks: int = 4,
    hidden: Sequence[int] = (64, 64),
    kappa: float = 0.9,
    activation: str = "lipswish",
    logdet: str = "series",
    n_terms: int = 5,
    n_probes: int = 1,
    roulette_p: float = 0.5,
    atol: float | None = None,
    max_iter: int = 200,
) -> Flow:
    """An iResNet for vectors: ``blocks`` :class:`~flowlib.bijections.residual.InvertibleResidual` blocks.

    Each block's branch is an MLP with hidden widths ``hidden``, spectrally
    normalized to ``kappa``. ``logdet`` chooses how training computes the
    log-determinant (``"exact"``, ``"series"`` or ``"roulette"``); evaluate an
    estimating model exactly, in small dimensions, within
    ``flowlib.bijections.residual.logdet_mode(flow, "exact")``.

    Example:
        >>> flow = iresnet(2, blocks=3, hidden=(8, 8), logdet="roulette")
        >>> len(flow.bijection), flow.bijection.logdet_is_exact
        (3, False)
    """
    blocks = check_int("iresnet: blocks", blocks, minimum=1)
    layers = [
        InvertibleResidual(
            features,
            hidden=hidden,
            kappa=kappa,
            activation=activation,
            logdet=logdet,
            n_terms=n_terms,
            n_probes=n_probes,
            roulette_p=roulette_p,
            atol=atol,
            max_iter=max_iter,
        )
        for _ in range(blocks)
    ]
    return Flow(StandardNormal(features), Compose(*layers))


def planar_flow(features: int, layers: int = 8) -> Flow:
    """A stack of ``layers`` :class:`~flowlib.bijections.planar.Planar` layers, randomly initialized.

    Sampling and ``rsample_and_log_prob`` use the explicit planar maps;
    ``log_prob`` of a given point runs one root find per layer.

    Example:
        >>> import torch
        >>> flow = planar_flow(2, layers=4)
        >>> x, log_q = flow.rsample_and_log_prob(5)
        >>> x.shape, log_q.shape
        (torch.Size([5, 2]), torch.Size([5]))
    """
    layers = check_int("planar_flow: layers", layers, minimum=1)
    return Flow(StandardNormal(features), Compose(*[Planar(features) for _ in range(layers)]))


def radial_flow(features: int, layers: int = 8) -> Flow:
    """A stack of ``layers`` :class:`~flowlib.bijections.planar.Radial` layers, randomly initialized.

    Example:
        >>> import torch
        >>> flow = radial_flow(2, layers=4)
        >>> flow.log_prob(torch.zeros(3, 2)).shape
        torch.Size([3])
    """
    layers = check_int("radial_flow: layers", layers, minimum=1)
    return Flow(StandardNormal(features), Compose(*[Radial(features) for _ in range(layers)]))
