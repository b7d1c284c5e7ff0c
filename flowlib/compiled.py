r"""``torch.compile`` for a flow's log-density, with the input checks kept outside the compiled region.

:func:`compile_log_prob` returns a function that computes the same
:math:`\log p(x) = \log p_Z(f(x)) + \log|\det \partial f / \partial x|` as
``flow.log_prob``, through ``torch.compile``. It is differentiable, so a
training step is simply ``loss = -log_prob(x).mean(); loss.backward()``.

Two guarantees hold:

* **The checks still raise.** The input's shape, dtype and NaN/Inf check
  (and the context's batch) run eagerly, before the compiled region, with the
  same messages as ``flow.log_prob``; inside it the per-layer checks are off
  (they read a tensor's value, which would break the graph). A NaN *produced*
  inside the flow is not caught there; the :class:`~flowlib.train.Trainer`
  still stops on a non-finite loss.
* **The same numbers to float32 rounding.** The compiler fuses and reorders
  element-wise operations, so results agree with the eager ones to rounding
  (a few ulps), not bit for bit; the book's notebooks therefore use the eager
  path.

The first call compiles (seconds to a minute, on a CPU it needs a C++
compiler); a new input shape or dtype may compile again. Use it for long
training runs and benchmarks, where the per-step fixed cost of Python and
dispatch dominates small models.

Example:
    >>> import torch
    >>> from flowlib.models import realnvp
    >>> flow = realnvp(2, layers=2, hidden=(8,))
    >>> log_prob = compile_log_prob(flow)
    >>> x = torch.randn(16, 2)
    >>> torch.allclose(log_prob(x), flow.log_prob(x), atol=1e-5)  # doctest: +SKIP
    True
    >>> log_prob(torch.full((4, 2), float("nan")))
    Traceback (most recent call last):
    ...
    ValueError: Compose: the input contains NaN or Inf (8 of 8 values)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .core import Flow, check_context, check_input, input_checks_enabled, set_input_checks

__all__ = ["compile_log_prob"]


def compile_log_prob(flow: Flow, **compile_options: Any) -> Callable[..., Tensor]:
    """``flow.log_prob`` through ``torch.compile``, its input checked eagerly first.

    Args:
        flow: the flow whose ``log_prob`` to compile; its parameters stay shared,
            so training the flow trains the compiled function too.
        compile_options: passed to ``torch.compile`` (``mode``, ``dynamic``, ...).

    Returns:
        ``log_prob(x, context=None)`` with shape ``(batch,)``.
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"compile_log_prob expects a flowlib Flow, got {type(flow).__name__}")
    compiled = torch.compile(flow.log_prob, **compile_options)

    def log_prob(x: Tensor, context: Tensor | None = None) -> Tensor:
        checks = input_checks_enabled()
        if checks:
            check_input(flow.bijection, x, flow.event_shape)
            check_context(type(flow.bijection).__name__, context, x.shape[0])
        set_input_checks(False)  # inside the compiled region only: a value check would break the graph
        try:
            return compiled(x, context)
        finally:
            set_input_checks(checks)

    return log_prob
