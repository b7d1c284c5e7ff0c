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

:func:`check_autoregressive` checks a third promise, that of autoregressive
layers and of the masked networks inside them (MADE): output :math:`i` depends
only on the inputs that come before :math:`i` in an order, so the Jacobian is
triangular. :func:`self_check_autoregressive` is its verdict-printing variant.

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
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

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
    "check_autoregressive",
    "self_check_autoregressive",
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
    """Print the verdict wrapped to a notebook's width, and return it."""
    print(textwrap.fill(message, width=88, subsequent_indent="    ", break_on_hyphens=False))
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



def _dependencies(model: Callable[..., Tensor], x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(largest, sample)``: per (output coordinate i, input j), the largest |d out_i / d x_j| over the batch, and where.

    ``model`` maps ``(1, D)`` (and a context row) to ``(1, D)``, ``(1, D, k)`` or
    a pair ``(z, logabsdet)``; the ``k`` outputs of a coordinate count together.
    """
    features = x.shape[1]
    largest = x.new_zeros(features, features)
    sample = torch.zeros(features, features, dtype=torch.long)
    for b in range(x.shape[0]):
        row = None if context is None else context[b : b + 1]

        def single(point: Tensor, row: Tensor | None = row) -> Tensor:
            out = model(point.unsqueeze(0)) if row is None else model(point.unsqueeze(0), row)
            if isinstance(out, tuple):  # a bijection: (z, logabsdet)
                out = out[0]
            if not isinstance(out, Tensor) or out.dim() not in (2, 3) or tuple(out.shape[:2]) != (1, features):
                shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                _fail(
                    f"check_autoregressive: expected an output of shape (batch, {features}) or "
                    f"(batch, {features}, k) for an input of shape (batch, {features}), got {shape}"
                )
            return out[0].reshape(features, -1)

        jacobian = torch.autograd.functional.jacobian(single, x[b].detach())  # (D, k, D)
        magnitude = jacobian.abs().amax(dim=1)
        bigger = magnitude > largest
        largest = torch.where(bigger, magnitude, largest)
        sample[bigger] = b
    return largest, sample


def _autoregressive_dependencies(
    bijection: Any, x: Tensor, order: Sequence[int] | Tensor | None, context: Tensor | None, atol: float,
    strict: bool | None,
) -> tuple[Tensor, Tensor, bool]:
    """:func:`check_autoregressive`'s work; returns ``(dependence magnitudes (D, D), order, strict)``."""
    from .nets.made import autoregressive_order

    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"check_autoregressive: x must be a tensor of shape (batch, D), got {shape}")
    features = x.shape[1]
    order_t = autoregressive_order(features, "natural" if order is None else torch.as_tensor(order).cpu())
    name = getattr(bijection, "__name__", None) or type(bijection).__name__
    strict = (not isinstance(bijection, Bijection)) if strict is None else bool(strict)
    model = _in_float64(bijection) if isinstance(bijection, torch.nn.Module) else bijection
    if context is not None and context.is_floating_point():
        context = context.double()
    magnitude, where = _dependencies(model, x.detach().double(), context)
    position = torch.empty(features, dtype=torch.long)
    position[order_t] = torch.arange(features)
    later = position[None, :] >= position[:, None] if strict else position[None, :] > position[:, None]
    offending = later & (magnitude > atol)
    if bool(offending.any()):
        pairs = sorted(
            ((int(i), int(j)) for i, j in torch.nonzero(offending).tolist()),
            key=lambda ij: (int(position[ij[0]]), int(position[ij[1]])),
        )
        i, j = pairs[0]
        what = f"the outputs of coordinate {i} depend" if strict else f"z_{i} depends"
        relation = "at or after" if strict else "after"
        listed = ", ".join(str(pair) for pair in pairs[:6]) + (", ..." if len(pairs) > 6 else "")
        _fail(
            f"{name} is not autoregressive in the order {_order_text(order_t)}: the first offending pair is "
            f"(i, j) = ({i}, {j}): {what} on x_{j}, which comes {relation} it in the order "
            f"(largest |d/dx_{j}| = {magnitude[i, j].item():.3g}, at sample {int(where[i, j])}); "
            f"{len(pairs)} offending pair(s) in all: {listed}"
        )
    return magnitude, order_t, strict


def _order_text(order: Tensor) -> str:
    values = order.tolist()
    return str(values) if len(values) <= 16 else "[" + ", ".join(map(str, values[:8])) + ", ...]"


def check_autoregressive(
    bijection: Any,
    x: Tensor,
    order: Sequence[int] | Tensor | None = None,
    *,
    context: Tensor | None = None,
    atol: float = 0.0,
    strict: bool | None = None,
) -> None:
    r"""Assert that output :math:`i` depends only on inputs that come before :math:`i` in ``order``.

    The Jacobian at every sample of ``x`` is built by brute force (autograd, in
    float64, on a float64 copy of a module); an entry counts as a dependence
    when its magnitude exceeds ``atol`` at any sample. With
    :math:`\operatorname{pos}(i)` the position of coordinate :math:`i` in the order:

    * a :class:`~flowlib.Bijection` (its ``forward``, data to noise) must have a
      **triangular** Jacobian: :math:`\partial z_i/\partial x_j = 0` whenever
      :math:`\operatorname{pos}(j) > \operatorname{pos}(i)`;
    * any other network or function (a :class:`~flowlib.nets.MADE`, mapping
      ``(batch, D)`` to ``(batch, D)`` or ``(batch, D, k)``) must be **strictly**
      triangular: the outputs of coordinate :math:`i` may depend on :math:`x_j`
      only if :math:`\operatorname{pos}(j) < \operatorname{pos}(i)`. (A MADE
      whose :math:`\theta_i` reads :math:`x_i` still gives a triangular layer,
      but one whose inverse and log-determinant are wrong.)

    ``strict`` overrides that choice. One wrong entry in a MADE's masks makes
    some output read an input that comes after it, and the check names the
    first such pair in the order.

    Args:
        bijection: a flowlib ``Bijection`` on vectors, or a network / function.
        x: test points, shape ``(batch, D)``; use several, since a dependence can
            vanish at one point (a ReLU that is off there).
        order: the order as a permutation (``order[p]`` is the coordinate at
            position ``p``); by default ``0, 1, ..., D-1``. For flowlib's
            autoregressive layers and MADEs pass their ``.order``.
        context: passed to the bijection or network, one row per sample.
        atol: magnitudes up to ``atol`` count as zero (default: only exact zeros).
        strict: see above (default: ``False`` for a Bijection, ``True`` otherwise).

    Raises:
        AssertionError: naming the first offending pair ``(i, j)`` (output
            coordinate, input coordinate) in the order, the size of the
            dependence and the sample, and how many pairs offend in all.

    Example:
        >>> from flowlib.nets import MADE
        >>> _ = torch.manual_seed(0)
        >>> made = MADE(4, outputs_per_feature=2, hidden=(16,), order="reversed", zero_last=False)
        >>> points = torch.randn(20, 4)
        >>> check_autoregressive(made, points, order=made.order)     # passes silently
        >>> with torch.no_grad():
        ...     made.layers[0].mask[0, 0] = 1.0    # a unit of degree 1 now reads x_0, the last coordinate
        >>> check_autoregressive(made, points, order=made.order)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        AssertionError: MADE is not autoregressive in the order [3, 2, 1, 0]: the first offending pair is (i, j) = (2, 0): ...
    """
    _autoregressive_dependencies(bijection, x, order, context, atol, strict)


def self_check_autoregressive(
    network: Any,
    x: Tensor | None = None,
    order: Sequence[int] | Tensor | None = None,
    *,
    context: Tensor | None = None,
    batch: int = 4,
    seed: int = 0,
    strict: bool | None = None,
) -> SelfCheckResult:
    """Check that a network or layer you wrote is autoregressive and print a verdict; never raises.

    Runs :func:`check_autoregressive` in float64 on a copy. ``order`` defaults
    to the network's own ``.order`` if it has one, else the natural order. The
    check also fails when no output depends on any earlier input: a network
    whose last layer is zero passes the structural test trivially, so build it
    with random weights. ``NotImplementedError`` reads as "not attempted yet".

    Args:
        network: your MADE or layer, or a function with no arguments that builds it.
        x: test points ``(batch, D)``; by default ``batch`` standard-normal points,
            with ``D`` from the network's ``features`` or ``event_shape``.
        order, context, strict: as for :func:`check_autoregressive`.
        batch, seed: size and seed of the default test points.

    Returns:
        a :class:`SelfCheckResult`, true if the check passed.

    Example:
        >>> from flowlib.nets import MADE
        >>> result = self_check_autoregressive(MADE(5, hidden=(16,), zero_last=False))  # doctest: +ELLIPSIS
        Self-check of MADE: passed. Autoregressive in the order [0, 1, 2, 3, 4]: ...
    """
    label = getattr(network, "__name__", None) or type(network).__name__
    try:
        model = network if isinstance(network, torch.nn.Module) else network()
        label = type(model).__name__
        if x is None:
            features = getattr(model, "features", None)
            if features is None and getattr(model, "event_shape", None) is not None:
                features = torch.Size(model.event_shape).numel()
            if features is None:
                return _verdict(
                    False,
                    f"Self-check of {label}: FAILED. Pass test points x of shape (batch, D): the network has no "
                    "'features' or 'event_shape' attribute to size them from.",
                )
            generator = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, int(features), generator=generator, dtype=torch.float64)
        if order is None:
            order = getattr(model, "order", None)
        magnitude, order_t, strict_used = _autoregressive_dependencies(model, x, order, context, 0.0, strict)
        allowed = magnitude > 0
        if not strict_used:
            allowed.fill_diagonal_(False)
        used = int(allowed.sum())
        if used == 0:
            return _verdict(
                False,
                f"Self-check of {label}: FAILED. No output depends on any earlier input, so the check proves "
                "nothing: is the last layer zero-initialized? Build it with random weights (e.g. zero_last=False).",
            )
    except NotImplementedError as error:
        detail = f" ({error})" if str(error) else ""
        return _verdict(
            False,
            f"Self-check of {label}: not attempted yet: a method still raises NotImplementedError{detail}. "
            "Fill in the workspace cell above, run it, then run this cell again.",
        )
    except AssertionError as error:
        return _verdict(False, f"Self-check of {label}: FAILED. {error}")
    except Exception as error:  # the student's code may raise anything; report it instead of a traceback
        return _verdict(False, f"Self-check of {label}: FAILED. Calling it raised {type(error).__name__}: {error}")
    features = magnitude.shape[0]
    return _verdict(
        True,
        f"Self-check of {label}: passed. Autoregressive in the order {_order_text(order_t)}: no output depends on "
        f"an input at or after it, and {used} of the {features * (features - 1) // 2} allowed dependencies are "
        f"used (float64 Jacobians at {x.shape[0]} points).",
    )
