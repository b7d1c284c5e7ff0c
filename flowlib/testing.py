r"""Checks that a bijection keeps its promises: use them on your own layers.

A flow layer makes two promises, and a bug in either one trains silently to a
wrong model:

1. ``inverse`` undoes ``forward`` (and the other way round);
2. the ``logabsdet`` it returns equals :math:`\log|\det J|` of the map it
   computes, where :math:`J` is the Jacobian.

:func:`check_inverse` and :func:`check_logdet` test both by brute force: the
round trip is run, and the Jacobian of each sample is built with autograd, one
row at a time, and its log-determinant taken with ``torch.linalg.slogdet``.
That costs :math:`O(D)` backward passes and an :math:`O(D^3)` determinant per
sample, so use small dimensions and batches, and float64 for tight tolerances.

Test a layer with *random* parameters: a layer at its identity initialization
passes any log-det check, whatever its formula.

Example:
    >>> import torch
    >>> from flowlib.bijections import Linear
    >>> layer = Linear(torch.tensor([[2.0, 1.0], [0.5, 3.0]], dtype=torch.float64))
    >>> x = torch.randn(4, 2, dtype=torch.float64)
    >>> check_inverse(layer, x)
    >>> check_logdet(layer, x)
"""

from __future__ import annotations

import torch
from torch import Tensor

from .core import Bijection

__all__ = ["check_inverse", "check_logdet", "check_bijection", "jacobian_logabsdet", "default_tolerances"]


def default_tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """``(inverse_atol, logdet_atol)`` used when none is given: tight for float64, loose for float32."""
    if dtype == torch.float64:
        return 1e-10, 1e-8
    return 1e-4, 1e-3


def _fail(message: str) -> None:
    raise AssertionError(message)


def check_inverse(
    bijection: Bijection,
    x: Tensor,
    z: Tensor | None = None,
    context: Tensor | None = None,
    atol: float | None = None,
) -> None:
    """Assert that ``inverse(forward(x)) == x`` and ``forward(inverse(z)) == z``.

    Also asserts that the two directions report opposite log-determinants at
    corresponding points, and that ``logabsdet`` has shape ``(batch,)``.

    Args:
        bijection: the layer under test.
        x: a batch of data-space points, shape ``(batch, *event_shape)``.
        z: a batch of noise-space points for the second round trip; by default
            ``x`` itself when the two spaces have the same shape (pass ``z`` for
            layers whose inverse has a restricted domain, such as a sigmoid).
        context: passed to both directions.
        atol: largest allowed absolute error (default from :func:`default_tolerances`).

    Raises:
        AssertionError: with the largest error and where it happened.
    """
    atol = default_tolerances(x.dtype)[0] if atol is None else atol
    with torch.no_grad():
        z_of_x, ladj_forward = bijection.forward(x, context)
        _check_logdet_shape(bijection, ladj_forward, x.shape[0], "forward")
        x_back, ladj_back = bijection.inverse(z_of_x, context)
        _check_logdet_shape(bijection, ladj_back, x.shape[0], "inverse")
        _assert_close(x_back, x, atol, f"{type(bijection).__name__}: inverse(forward(x)) differs from x")
        _assert_close(
            ladj_back,
            -ladj_forward,
            atol,
            f"{type(bijection).__name__}: the inverse's log|det| is not minus the forward's at the same point",
        )
        if z is None:
            if bijection.output_event_shape != bijection.event_shape:
                return
            z = x
        x_of_z, _ = bijection.inverse(z, context)
        z_back, _ = bijection.forward(x_of_z, context)
        _assert_close(z_back, z, atol, f"{type(bijection).__name__}: forward(inverse(z)) differs from z")


def jacobian_logabsdet(function, x: Tensor) -> Tensor:
    r"""Brute-force :math:`\log|\det \partial f(x_b)/\partial x_b|` for each sample ``x_b`` of ``x``.

    ``function`` maps a batch to a batch (any event shapes with the same number
    of elements). The Jacobian of each sample is built with autograd and
    flattened to a square matrix; ``slogdet`` gives its log-determinant.
    """
    values = []
    for sample in x:
        flat_in = sample.detach().reshape(-1)

        def single(flat: Tensor) -> Tensor:
            return function(flat.reshape(sample.shape).unsqueeze(0))[0].reshape(-1)

        jacobian = torch.autograd.functional.jacobian(single, flat_in)
        if jacobian.shape[0] != jacobian.shape[1]:
            _fail(f"the Jacobian is not square: shape {tuple(jacobian.shape)}")
        sign, logabsdet = torch.linalg.slogdet(jacobian)
        if sign == 0:
            _fail("the brute-force Jacobian is singular at a test point: the map is not invertible there")
        values.append(logabsdet)
    return torch.stack(values)


def check_logdet(
    bijection: Bijection,
    x: Tensor,
    context: Tensor | None = None,
    atol: float | None = None,
) -> None:
    r"""Assert that the reported log-determinants match brute-force autograd Jacobians.

    Both directions are checked: ``forward`` at ``x`` and ``inverse`` at
    ``z = forward(x)``. Layers whose log-determinant is an estimate
    (``logdet_is_exact = False``) are rejected: compare their exact mode instead.

    Raises:
        AssertionError: naming the direction, the sample, the reported and the
            brute-force value.
    """
    if not bijection.logdet_is_exact:
        _fail(f"{type(bijection).__name__} estimates its log-determinant; check its exact mode instead")
    atol = default_tolerances(x.dtype)[1] if atol is None else atol
    name = type(bijection).__name__

    def run(direction: str, points: Tensor) -> None:
        method = bijection.forward if direction == "forward" else bijection.inverse

        def single(p: Tensor, row: int) -> Tensor:
            ctx = None if context is None else context[row : row + 1]
            return method(p, ctx)[0]

        with torch.no_grad():
            _, reported = method(points, context)
        brute = torch.stack(
            [jacobian_logabsdet(lambda p, r=row: single(p, r), points[row : row + 1])[0] for row in range(len(points))]
        )
        error = (reported - brute).abs()
        if not bool(torch.isfinite(reported).all()) or bool((error > atol).any()):
            worst = int(torch.nan_to_num(error, nan=float("inf")).argmax())
            _fail(
                f"{name}.{direction}: log|det J| is wrong at sample {worst}: the layer reports "
                f"{reported[worst].item():.10g}, the brute-force Jacobian gives {brute[worst].item():.10g} "
                f"(error {error[worst].item():.3g} > atol {atol:g})"
            )

    run("forward", x)
    with torch.no_grad():
        z, _ = bijection.forward(x, context)
    run("inverse", z)


def check_bijection(bijection: Bijection, x: Tensor, context: Tensor | None = None) -> None:
    """Run :func:`check_inverse` and :func:`check_logdet` with their default tolerances."""
    check_inverse(bijection, x, context=context)
    check_logdet(bijection, x, context=context)


def _check_logdet_shape(bijection: Bijection, ladj: Tensor, batch: int, direction: str) -> None:
    if not isinstance(ladj, Tensor) or ladj.shape != (batch,):
        shape = tuple(ladj.shape) if isinstance(ladj, Tensor) else type(ladj).__name__
        _fail(f"{type(bijection).__name__}.{direction}: logabsdet must have shape ({batch},), got {shape}")


def _assert_close(actual: Tensor, expected: Tensor, atol: float, message: str) -> None:
    if actual.shape != expected.shape:
        _fail(f"{message}: shape {tuple(actual.shape)} instead of {tuple(expected.shape)}")
    error = (actual - expected).abs()
    if not bool(torch.isfinite(actual).all()) or bool((error > atol).any()):
        flat = torch.nan_to_num(error, nan=float("inf")).reshape(-1)
        worst = int(flat.argmax())
        _fail(
            f"{message}: largest error {flat[worst].item():.3g} > atol {atol:g} "
            f"(at flat index {worst}: got {actual.reshape(-1)[worst].item():.10g}, "
            f"expected {expected.reshape(-1)[worst].item():.10g})"
        )
