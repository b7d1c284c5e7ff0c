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

Which check catches which bug:

* a log-det of the wrong *shape* (a forgotten ``.sum(dim=1)``, a scalar that
  was not expanded to the batch) is reported first, by both checks, before any
  arithmetic;
* a wrong inverse, even one that is a bijection, fails :func:`check_inverse`
  (the round trip does not come back) but passes :func:`check_logdet`, which
  never compares the two directions' *outputs*;
* a log-det that is wrong but consistent between the directions (a missing
  constant, the derivative of the other direction, a wrong sign in both)
  passes :func:`check_inverse` and fails :func:`check_logdet`; at the identity
  initialization it may pass both, because many wrong formulas agree at zero.

:func:`self_check` runs both on a student's layer and prints a verdict instead
of raising, for the self-check cells that follow the book's exercises.

Example:
    >>> import torch
    >>> from flowlib.bijections import Linear
    >>> layer = Linear(torch.tensor([[2.0, 1.0], [0.5, 3.0]], dtype=torch.float64))
    >>> x = torch.randn(4, 2, dtype=torch.float64)
    >>> check_inverse(layer, x)
    >>> check_logdet(layer, x)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .core import Bijection, Flow

__all__ = [
    "check_inverse",
    "check_logdet",
    "check_bijection",
    "jacobian_logabsdet",
    "default_tolerances",
    "self_check",
    "self_check_function",
    "SelfCheckResult",
]


class SelfCheckResult:
    """What :func:`self_check` and :func:`self_check_function` return: true if the checks passed.

    The verdict has already been printed, so a notebook shows nothing more
    for it; ``bool(result)`` and ``result.message`` give it to code.
    """

    def __init__(self, passed: bool, message: str) -> None:
        self.passed = passed
        self.message = message

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"SelfCheckResult(passed={self.passed})"

    def _ipython_display_(self) -> None:
        """Display nothing: the verdict was printed when the check ran."""


def _verdict(passed: bool, message: str) -> SelfCheckResult:
    print(message)
    return SelfCheckResult(passed, message)


def default_tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """``(inverse_atol, logdet_atol)`` used when none is given: tight for float64, loose for float32."""
    if dtype == torch.float64:
        return 1e-10, 1e-8
    return 1e-4, 1e-3


def _fail(message: str) -> None:
    raise AssertionError(message)


def _position(index: int, shape: Sequence[int]) -> str:
    """``"sample 2, coordinate 1"`` (vectors) or ``"sample 2, position (0, 3, 1)"`` (images) for a flat index."""
    coordinates = [int(c) for c in torch.unravel_index(torch.tensor(index), tuple(shape))]
    if len(coordinates) == 1:
        return f"sample {coordinates[0]}"
    if len(coordinates) == 2:
        return f"sample {coordinates[0]}, coordinate {coordinates[1]}"
    return f"sample {coordinates[0]}, position {tuple(coordinates[1:])}"


def _run_direction(
    bijection: Bijection, direction: str, points: Tensor, context: Tensor | None, expected_shape: torch.Size
) -> tuple[Tensor, Tensor]:
    """Call ``forward`` or ``inverse`` and check the *shapes* of what comes back before any arithmetic."""
    name = f"{type(bijection).__name__}.{direction}"
    method = bijection.forward if direction == "forward" else bijection.inverse
    result = method(points, context)
    if not isinstance(result, tuple) or len(result) != 2:
        _fail(f"{name} must return a pair (output, logabsdet), got {type(result).__name__}")
    output, ladj = result
    batch = points.shape[0]
    if not isinstance(output, Tensor) or output.shape != (batch, *expected_shape):
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        _fail(f"{name}: the output must have shape {(batch, *expected_shape)}, got {shape}")
    _check_logdet_shape(bijection, ladj, batch, direction)
    return output, ladj


def check_inverse(
    bijection: Bijection,
    x: Tensor,
    z: Tensor | None = None,
    context: Tensor | None = None,
    atol: float | None = None,
) -> None:
    """Assert that ``inverse(forward(x)) == x`` and ``forward(inverse(z)) == z``.

    Also asserts that the two directions report opposite log-determinants at
    corresponding points. The shapes of every output are checked first
    (``logabsdet`` must be ``(batch,)``), so a forgotten sum gives a message
    about the shape, not an error from deep inside torch.

    Args:
        bijection: the layer under test.
        x: a batch of data-space points, shape ``(batch, *event_shape)``.
        z: a batch of noise-space points for the second round trip; by default
            ``x`` itself when the two spaces have the same shape (pass ``z`` for
            layers whose inverse has a restricted domain, such as a sigmoid).
        context: passed to both directions.
        atol: largest allowed absolute error (default from :func:`default_tolerances`).

    Raises:
        AssertionError: with the largest error and where it happened, as
            (sample, coordinate).
    """
    _round_trip_errors(bijection, x, z, context, atol)


def _round_trip_errors(
    bijection: Bijection, x: Tensor, z: Tensor | None, context: Tensor | None, atol: float | None
) -> float:
    """:func:`check_inverse`'s work; returns the largest error seen."""
    atol = default_tolerances(x.dtype)[0] if atol is None else atol
    name = type(bijection).__name__
    with torch.no_grad():
        z_of_x, ladj_forward = _run_direction(bijection, "forward", x, context, bijection.output_event_shape)
        x_back, ladj_back = _run_direction(bijection, "inverse", z_of_x, context, bijection.event_shape)
        errors = [
            _assert_close(x_back, x, atol, f"{name}: inverse(forward(x)) differs from x"),
            _assert_close(
                ladj_back,
                -ladj_forward,
                atol,
                f"{name}: the inverse's log|det| is not minus the forward's at the same point",
            ),
        ]
        if z is None:
            if bijection.output_event_shape != bijection.event_shape:
                return max(errors)
            z = x
        x_of_z, _ = _run_direction(bijection, "inverse", z, context, bijection.event_shape)
        z_back, _ = _run_direction(bijection, "forward", x_of_z, context, bijection.output_event_shape)
        errors.append(_assert_close(z_back, z, atol, f"{name}: forward(inverse(z)) differs from z"))
    return max(errors)


def jacobian_logabsdet(function: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
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
    ``z = forward(x)``. The shapes of the outputs are checked first. Layers
    whose log-determinant is an estimate (``logdet_is_exact = False``) are
    rejected: compare their exact mode instead.

    Raises:
        AssertionError: naming the direction, the sample, the reported and the
            brute-force value.
    """
    _logdet_errors(bijection, x, context, atol)


def _logdet_errors(bijection: Bijection, x: Tensor, context: Tensor | None, atol: float | None) -> float:
    """:func:`check_logdet`'s work; returns the largest error seen."""
    if not bijection.logdet_is_exact:
        _fail(f"{type(bijection).__name__} estimates its log-determinant; check its exact mode instead")
    atol = default_tolerances(x.dtype)[1] if atol is None else atol
    name = type(bijection).__name__
    largest = 0.0

    def run(direction: str, points: Tensor) -> float:
        method = bijection.forward if direction == "forward" else bijection.inverse
        out_shape = bijection.output_event_shape if direction == "forward" else bijection.event_shape
        with torch.no_grad():
            _, reported = _run_direction(bijection, direction, points, context, out_shape)

        def single(p: Tensor, row: int) -> Tensor:
            ctx = None if context is None else context[row : row + 1]
            return method(p, ctx)[0]

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
        return float(error.max())

    largest = max(largest, run("forward", x))
    with torch.no_grad():
        z, _ = bijection.forward(x, context)
    return max(largest, run("inverse", z))


def check_bijection(bijection: Bijection, x: Tensor, context: Tensor | None = None) -> None:
    """Run :func:`check_inverse` and :func:`check_logdet` with their default tolerances."""
    check_inverse(bijection, x, context=context)
    check_logdet(bijection, x, context=context)


def _check_logdet_shape(bijection: Bijection, ladj: Tensor, batch: int, direction: str) -> None:
    if isinstance(ladj, Tensor) and ladj.shape == (batch,):
        return
    name = f"{type(bijection).__name__}.{direction}"
    if not isinstance(ladj, Tensor):
        _fail(f"{name}: logabsdet must be a tensor of shape ({batch},), got {type(ladj).__name__}")
    shape = tuple(ladj.shape)
    hint = ""
    if ladj.dim() == 0:
        hint = ": it is one number for the whole batch; expand it to one value per sample, e.g. .expand(x.shape[0])"
    elif ladj.dim() > 1 and ladj.shape[0] == batch:
        dims = tuple(range(1, ladj.dim()))
        hint = (
            ": it holds one term per coordinate; sum them over the event dimensions, "
            f"e.g. .sum(dim={dims[0] if len(dims) == 1 else dims})"
        )
    _fail(f"{name}: logabsdet must have shape ({batch},), one value per sample, got {shape}{hint}")


def _assert_close(actual: Tensor, expected: Tensor, atol: float, message: str) -> float:
    if actual.shape != expected.shape:
        _fail(f"{message}: shape {tuple(actual.shape)} instead of {tuple(expected.shape)}")
    error = (actual - expected).abs()
    if not bool(torch.isfinite(actual).all()) or bool((error > atol).any()):
        flat = torch.nan_to_num(error, nan=float("inf")).reshape(-1)
        worst = int(flat.argmax())
        _fail(
            f"{message}: largest error {flat[worst].item():.3g} > atol {atol:g} "
            f"(at {_position(worst, actual.shape)}: got {actual.reshape(-1)[worst].item():.10g}, "
            f"expected {expected.reshape(-1)[worst].item():.10g})"
        )
    return float(error.max()) if error.numel() else 0.0


def _in_float64(bijection: Bijection) -> Bijection:
    """A float64 copy of ``bijection`` (the student's own object is left as it is)."""
    floats = [t for t in list(bijection.parameters()) + list(bijection.buffers()) if t.is_floating_point()]
    if all(t.dtype == torch.float64 for t in floats):
        return bijection
    return copy.deepcopy(bijection).double()


def self_check(
    bijection: Bijection | Flow | Callable[[], Bijection | Flow],
    x: Tensor | None = None,
    *,
    z: Tensor | None = None,
    context: Tensor | None = None,
    batch: int = 8,
    seed: int = 0,
) -> SelfCheckResult:
    """Check a layer you wrote and print a verdict: passed, not attempted yet, or what failed and by how much.

    Runs :func:`check_inverse` and :func:`check_logdet` in float64 (on a copy
    of the layer) and never raises, so a self-check cell placed after an
    exercise can stay in the notebook while the exercise is still a stub. A
    ``NotImplementedError`` from the layer reads as "not attempted yet".

    Args:
        bijection: your layer (or a :class:`~flowlib.Flow`, whose bijection is
            checked), or a function with no arguments that builds it.
        x: test points in the data space; by default ``batch`` standard-normal
            float64 samples of the layer's event shape.
        z: noise-space points for the second round trip (for layers whose
            inverse has a restricted domain).
        context: passed to both directions.
        batch, seed: size and seed of the default test points.

    Returns:
        a :class:`SelfCheckResult`, true if both checks passed (it displays
        nothing more in a notebook: the verdict is already printed).

    Example:
        >>> from flowlib.bijections import ElementwiseAffine
        >>> result = self_check(ElementwiseAffine(torch.tensor([2.0, -0.5]), torch.tensor([1.0, 0.0])))
        ... # doctest: +ELLIPSIS
        Self-check of ElementwiseAffine: passed. Inverse round trip: largest error ...
        >>> bool(result)
        True
    """
    label = getattr(bijection, "__name__", None) or type(bijection).__name__
    try:
        layer = bijection if isinstance(bijection, (Bijection, Flow)) else bijection()
        if isinstance(layer, Flow):
            layer = layer.bijection
        label = type(layer).__name__
        if not isinstance(layer, Bijection):
            return _verdict(
False,
f"Self-check: expected a flowlib Bijection, got {type(layer).__name__}.",
            )
        layer = _in_float64(layer)
        if x is None:
            generator = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, *layer.event_shape, generator=generator, dtype=torch.float64)
        else:
            x = x.double()
        z = None if z is None else z.double()
        context = None if context is None or not context.is_floating_point() else context.double()
        inverse_error = _round_trip_errors(layer, x, z, context, None)
        logdet_error = _logdet_errors(layer, x, context, None)
    except NotImplementedError as error:
        detail = f" ({error})" if str(error) else ""
        return _verdict(
            False,
            f"Self-check of {label}: not attempted yet: a method still raises NotImplementedError{detail}. "
            "Fill in the workspace cell above, run it, then run this cell again.",
        )
    except AssertionError as error:
        return _verdict(
False,
f"Self-check of {label}: FAILED. {error}",
        )
    except Exception as error:  # the student's code may raise anything; report it instead of a traceback
        return _verdict(
False,
f"Self-check of {label}: FAILED. Calling your layer raised {type(error).__name__}: {error}",
        )
    return _verdict(
        True,
        f"Self-check of {label}: passed. Inverse round trip: largest error {inverse_error:.1e}; "
        f"log|det J| against the brute-force Jacobian: largest error {logdet_error:.1e} (float64).",
    )


def self_check_function(
    function: Callable[[Tensor], Tensor],
    reference: Callable[[Tensor], Tensor],
    inputs: Tensor,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-6,
    name: str | None = None,
) -> SelfCheckResult:
    """Compare a function you wrote with an independent reference on ``inputs``, and print a verdict.

    For exercises whose answer is a formula rather than a layer: your
    ``function`` is compared with ``reference`` (a library implementation, a
    brute-force computation) elementwise, within ``atol + rtol * |reference|``.
    Never raises; ``NotImplementedError`` reads as "not attempted yet".

    Returns:
        a :class:`SelfCheckResult`, true if every value agrees.

    Example:
        >>> import math
        >>> normal = torch.distributions.Normal(0.0, 1.0)
        >>> result = self_check_function(lambda x: -0.5 * x**2 - 0.5 * math.log(2 * math.pi), normal.log_prob,
        ...                              torch.linspace(-3, 3, 7), name="log N(x; 0, 1)")
        Self-check of log N(x; 0, 1): passed on 7 points (largest error 0.0e+00).
    """
    label = name or getattr(function, "__name__", type(function).__name__)
    try:
        with torch.no_grad():
            expected = torch.as_tensor(reference(inputs))
            got = function(inputs)
        if not isinstance(got, Tensor):
            got = torch.as_tensor(got, dtype=expected.dtype)
        if got.shape != expected.shape:
            return _verdict(
False,
f"Self-check of {label}: FAILED. Expected an output of shape {tuple(expected.shape)}, "
                  f"got {tuple(got.shape)}.",
            )
        error = (got.to(expected.dtype) - expected).abs()
        allowed = atol + rtol * expected.abs()
        bad = ~(error <= allowed)
    except NotImplementedError as error:
        detail = f" ({error})" if str(error) else ""
        return _verdict(
            False,
            f"Self-check of {label}: not attempted yet: the function still raises NotImplementedError{detail}. "
            "Fill in the workspace cell above, run it, then run this cell again.",
        )
    except Exception as error:  # the student's code may raise anything; report it instead of a traceback
        return _verdict(
False,
f"Self-check of {label}: FAILED. Calling it raised {type(error).__name__}: {error}",
        )
    if bool(bad.any()):
        worst = int(torch.nan_to_num(error - allowed, nan=float("inf")).reshape(-1).argmax())
        where = (f"point {worst}" if error.dim() == 1 else _position(worst, error.shape)) if error.dim() else "the output"
        point = inputs.reshape(-1)[worst].item() if inputs.dim() == 1 and inputs.numel() == error.numel() else None
        at_input = f" (input {point:.6g})" if point is not None else ""
        return _verdict(
            False,
            f"Self-check of {label}: FAILED at {int(bad.sum())} of {error.numel()} points. "
            f"At {where}{at_input}: got {got.reshape(-1)[worst].item():.10g}, "
            f"expected {expected.reshape(-1)[worst].item():.10g}.",
        )
    return _verdict(
True,
f"Self-check of {label}: passed on {error.numel()} points (largest error {float(error.max()):.1e}).",
    )
