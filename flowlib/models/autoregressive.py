r"""Autoregressive flows: MAF and IAF, stacks of masked autoregressive layers.

A single autoregressive layer can only model each coordinate given the ones
before it *in its order*; stacking layers whose orders differ lets every
coordinate depend on every other. The classic choice reverses the order
between layers. Reversing the coordinates between two layers, or reversing the
order of every other layer's MADE, give the same family of models (the
reversals pair up around the even layers, :math:`R L R` being a layer with the
reversed order), so the default ``ordering="alternate"`` alternates the MADEs'
orders and moves no data.

Example:
    >>> import torch
    >>> flow = maf(64, layers=5, hidden=(256, 256))
    >>> sum(p.numel() for p in flow.parameters())   # task B of the benchmark protocol
    576640
    >>> flow.log_prob(torch.randn(3, 64)).shape
    torch.Size([3])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from ..bijections import ElementwiseAffine, InverseAutoregressive, MaskedAutoregressive, Permutation, Reshape
from ..bijections.scalar import AffineTransform, RationalQuadraticSpline, ScalarTransform
from ..core import Bijection, Compose, Flow, as_event_shape
from ..distributions import StandardNormal

__all__ = ["maf", "iaf", "ORDERINGS"]

ORDERINGS = ("alternate", "reverse", "random", "natural")
"""How consecutive layers are ordered: see :func:`maf`."""


def _transform(kind: str, bins: int, bound: float) -> ScalarTransform:
    if kind == "affine":
        return AffineTransform(bound)
    if kind == "spline":
        return RationalQuadraticSpline(bins, bound)
    raise ValueError(f"transform must be 'affine' or 'spline', got {kind!r}")


def _autoregressive_flow(
    layer_class: type[MaskedAutoregressive],
    features: int,
    layers: int,
    hidden: Sequence[int],
    transform: str,
    bins: int,
    bound: float,
    ordering: str,
    residual: bool,
    context_features: int,
    event_shape: Iterable[int] | None,
    standardize: tuple[Tensor, Tensor] | None,
    seed: int,
) -> Flow:
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"layers must be an int >= 1, got {layers!r}")
    generator = torch.Generator().manual_seed(seed)
    parts: list[Bijection] = []
    if event_shape is not None:
        shape = as_event_shape(event_shape)
        if shape.numel() != features:
            raise ValueError(f"event_shape {tuple(shape)} has {shape.numel()} values, not features={features}")
        if len(shape) > 1 or shape[0] != features:
            parts.append(Reshape(shape, (features,)))
    if standardize is not None:
        mean, std = (torch.as_tensor(t, dtype=torch.get_default_dtype()).reshape(features) for t in standardize)
        parts.append(ElementwiseAffine(1.0 / std, -mean / std, learnable=False))
    for k in range(layers):
        if ordering == "alternate":
            order = "natural" if k % 2 == 0 else "reversed"
        elif ordering == "random":
            order = torch.randperm(features, generator=generator)
        else:
            order = "natural"
        if k > 0 and ordering == "reverse":
            parts.append(Permutation.reverse(features))
        parts.append(
            layer_class(
                features,
                _transform(transform, bins, bound),
                hidden,
                order,
                context_features=context_features,
                residual=residual,
            )
        )
    return Flow(StandardNormal(features), Compose(*parts))


def maf(
    features: int,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    transform: str = "affine",
    bins: int = 8,
    bound: float = 5.0,
    ordering: str = "alternate",
    residual: bool = False,
    context_features: int = 0,
    event_shape: Iterable[int] | None = None,
    standardize: tuple[Tensor, Tensor] | None = None,
    seed: int = 0,
) -> Flow:
    r"""A masked autoregressive flow: ``layers`` :class:`~flowlib.bijections.MaskedAutoregressive` layers.

    Density evaluation is one MADE pass per layer; sampling is sequential (each
    layer's inverse runs :class:`~flowlib.nets.IncrementalMADE`). The MADEs'
    last layers start at zero, so a fresh flow is the identity map.

    Args:
        features: :math:`D`.
        layers: number of autoregressive layers.
        hidden: hidden widths of each MADE.
        transform: ``"affine"`` (shift and log-scale softly bounded to
            :math:`(-\text{bound}, \text{bound})`) or ``"spline"`` (rational-quadratic
            spline on :math:`[-\text{bound}, \text{bound}]` with ``bins`` bins).
        ordering: ``"alternate"`` (the MADEs' orders alternate natural and
            reversed; the same models as reversals between layers, without moving
            data), ``"reverse"`` (natural orders with a
            :class:`~flowlib.bijections.Permutation` reversal between layers),
            ``"random"`` (a random order per layer, from ``seed``) or
            ``"natural"`` (every layer in the same order: a poor model, for
            comparison).
        residual: residual MADEs.
        context_features: size of a context vector (a conditional flow).
        event_shape: the shape of one data sample if it is not ``(features,)``,
            e.g. ``(1, 8, 8)``: a :class:`~flowlib.bijections.Reshape` comes first.
        standardize: ``(mean, std)`` of the training data, one value per
            feature: a fixed (not trained) standardization
            :math:`(x - \mu)/\sigma` comes next. It is part of the model, so
            ``log_prob`` is the density of the data as given (its log-determinant
            :math:`-\sum\log\sigma_i` included).
        seed: for ``ordering="random"``.

    Example:
        >>> flow = maf(3, layers=2, hidden=(8,), ordering="reverse")
        >>> [type(layer).__name__ for layer in flow.bijection]
        ['MaskedAutoregressive', 'Permutation', 'MaskedAutoregressive']
    """
    return _autoregressive_flow(
        MaskedAutoregressive, features, layers, hidden, transform, bins, bound, ordering, residual,
        context_features, event_shape, standardize, seed,
    )


def iaf(
    features: int,
    layers: int = 5,
    hidden: Sequence[int] = (128, 128),
    transform: str = "affine",
    bins: int = 8,
    bound: float = 5.0,
    ordering: str = "alternate",
    residual: bool = False,
    context_features: int = 0,
    event_shape: Iterable[int] | None = None,
    standardize: tuple[Tensor, Tensor] | None = None,
    seed: int = 0,
) -> Flow:
    r"""An inverse autoregressive flow: ``layers`` :class:`~flowlib.bijections.InverseAutoregressive` layers.

    Sampling (and ``rsample_and_log_prob``, for variational inference) is one
    MADE pass per layer; ``log_prob`` of given data is sequential. Arguments
    as for :func:`maf`.

    Example:
        >>> import torch
        >>> flow = iaf(4, layers=2, hidden=(16,))
        >>> x, log_p = flow.rsample_and_log_prob(5)    # one pass per layer
        >>> x.shape, log_p.shape
        (torch.Size([5, 4]), torch.Size([5]))
    """
    return _autoregressive_flow(
        InverseAutoregressive, features, layers, hidden, transform, bins, bound, ordering, residual,
        context_features, event_shape, standardize, seed,
    )
