r"""The bijection contract and the objects built on it.

A normalizing flow models data :math:`x` as an invertible function of noise
:math:`z`. flowlib writes every layer in the *normalizing* direction, the one
used for training:

.. math::

    z = f(x), \qquad
    \log p_X(x) = \log p_Z(f(x)) + \log\left|\det \frac{\partial f(x)}{\partial x}\right| .

* ``forward(x, context=None) -> (z, logabsdet)`` maps data to noise and returns
  :math:`\log|\det \partial z / \partial x|`, one value per sample.
* ``inverse(z, context=None) -> (x, logabsdet)`` maps noise to data and returns
  :math:`\log|\det \partial x / \partial z|`.

``logabsdet`` always has shape ``(batch,)``, whatever the event shape (a vector
``(D,)`` or an image ``(C, H, W)``). Inputs have exactly one batch dimension:
``x.shape == (batch, *event_shape)``.

Example:
    >>> import torch
    >>> from flowlib import Flow, Compose, StandardNormal
    >>> from flowlib.bijections import ElementwiseAffine, Permutation
    >>> layer = Compose(ElementwiseAffine(torch.tensor([2.0, 0.5])), Permutation([1, 0]))
    >>> flow = Flow(StandardNormal(2), layer)
    >>> flow.log_prob(torch.zeros(3, 2)).shape
    torch.Size([3])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "Bijection",
    "Compose",
    "Inverse",
    "Flow",
    "as_event_shape",
    "as_float_tensor",
    "check_tensor",
    "check_input",
    "check_context",
    "set_input_checks",
    "input_checks_enabled",
    "full_precision",
]

_CHECKS = {"enabled": True}


def set_input_checks(enabled: bool) -> None:
    """Turn the input checks of every bijection and distribution on or off.

    The checks (event shape, dtype, NaN/Inf) cost one reduction over the input
    per call. They are on by default; benchmarks may turn them off.
    """
    _CHECKS["enabled"] = bool(enabled)


def input_checks_enabled() -> bool:
    """Whether :func:`set_input_checks` currently leaves the checks on."""
    return _CHECKS["enabled"]


def as_event_shape(shape: int | Iterable[int]) -> torch.Size:
    """Turn ``3`` or ``(3,)`` or ``(1, 8, 8)`` into a ``torch.Size``, checking it."""
    if isinstance(shape, int):
        shape = (shape,)
    try:
        size = torch.Size(int(s) for s in shape)
    except (TypeError, ValueError) as error:
        raise TypeError(f"event_shape must be an int or a sequence of ints, got {shape!r}") from error
    if len(size) == 0 or any(s < 1 for s in size):
        raise ValueError(f"event_shape must have at least one dimension, all >= 1, got {tuple(size)}")
    return size


def full_precision(x: Tensor) -> torch.autocast:
    """A context that turns autocast off on ``x``'s device.

    Under mixed precision the conditioner networks run in bfloat16, but a
    log-determinant summed in bfloat16 loses the likelihood: layers compute
    their transforms and log-dets inside ``with full_precision(x):`` in the
    input's own dtype.
    """
    return torch.autocast(device_type=x.device.type, enabled=False)


def _shape_text(event_shape: torch.Size | None, batch_name: str = "batch") -> str:
    if event_shape is None:
        return f"({batch_name}, *event_shape)"
    return f"({batch_name}, " + ", ".join(str(s) for s in event_shape) + ")"


def _reference_dtype(module: nn.Module) -> torch.dtype | None:
    for tensor in module.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    for tensor in module.buffers():
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def check_tensor(
    x: Any,
    owner: str,
    subject: str,
    event_shape: torch.Size | None = None,
    dtype: torch.dtype | None = None,
    *,
    values: bool = True,
    expected_by: str | None = None,
    batch_name: str = "batch",
) -> Tensor:
    """Return ``x`` if it is a batch of events of shape ``(batch, *event_shape)``; raise a clear error otherwise.

    The checks, in order: a ``torch.Tensor`` (else :class:`TypeError`), floating
    point (``TypeError``), of ``dtype`` if given (``TypeError``), of shape
    ``(batch, *event_shape)`` if ``event_shape`` is given, else with at least a
    batch dimension (``ValueError``), a non-empty batch (``ValueError``), no NaN
    or Inf (``ValueError``). With ``values=False`` the floating-point, dtype and
    NaN checks are skipped (raw data that a transform will turn into floats).
    Every message starts with ``owner`` and names ``subject``; a wrong shape is
    reported as ``"<subject> has shape ... but <expected_by> expects ..."``.

    Unlike :func:`check_input` this check always runs, whatever
    :func:`set_input_checks` says: the :class:`~flowlib.train.Trainer` checks its
    data with it once per ``fit``.

    Example:
        >>> check_tensor(torch.zeros(3, 2), "Trainer", "train", torch.Size([2])).shape
        torch.Size([3, 2])
        >>> check_tensor(torch.zeros(3, 5), "Trainer", "train", torch.Size([2]), expected_by="the flow", batch_name="n")
        Traceback (most recent call last):
        ...
        ValueError: Trainer: train has shape (3, 5) but the flow expects (n, 2)
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{owner}: {subject} must be a torch.Tensor of shape {_shape_text(event_shape, batch_name)}, "
            f"got {type(x).__name__} (convert it with torch.as_tensor(..., dtype=torch.float32))"
        )
    if values and not x.is_floating_point():
        raise TypeError(
            f"{owner}: {subject} must be floating point, got dtype {x.dtype}; "
            "convert it to a floating-point dtype with .float() or .double()"
        )
    if values and dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{owner}: {subject} has dtype {x.dtype} but the model's parameters are {dtype}; "
            f"convert one of them (x.to({dtype}) or model.to({x.dtype}))"
        )
    if event_shape is not None and (x.dim() != len(event_shape) + 1 or x.shape[1:] != event_shape):
        raise ValueError(
            f"{owner}: {subject} has shape {tuple(x.shape)} but {expected_by or owner} expects "
            + _shape_text(event_shape, batch_name)
            + (" (add a batch dimension with x.unsqueeze(0))" if tuple(x.shape) == tuple(event_shape) else "")
        )
    if x.dim() == 0:
        raise ValueError(
            f"{owner}: {subject} has no batch dimension (shape ()); expected {_shape_text(None, batch_name)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{owner}: {subject} is empty (shape {tuple(x.shape)})")
    if values:
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise ValueError(f"{owner}: {subject} contains NaN or Inf ({bad} of {x.numel()} values)")
    return x


def check_input(module: nn.Module, x: Tensor, event_shape: torch.Size, name: str = "input") -> None:
    """Raise a clear error unless ``x`` is a finite float tensor of shape ``(batch, *event_shape)``.

    Used by every bijection and base distribution before it touches ``x``: it is
    :func:`check_tensor` with the module's class as the owner and the dtype of its
    parameters, and a no-op when :func:`set_input_checks` turned the checks off.

    Example:
        >>> from flowlib.bijections import Linear
        >>> check_input(Linear(2), torch.zeros(3), torch.Size([2]))
        Traceback (most recent call last):
        ...
        ValueError: Linear: the input has shape (3,) but Linear expects (batch, 2)
    """
    if not _CHECKS["enabled"]:
        return
    check_tensor(x, type(module).__name__, f"the {name}", event_shape, _reference_dtype(module))


def check_context(
    owner: str, context: Any, batch: int, *, name: str = "context", subject: str = "the input"
) -> Tensor | None:
    """Return ``context`` if it is ``None`` or a tensor with one row per sample of a batch of ``batch``.

    Raises :class:`TypeError` for anything but a tensor or ``None`` and
    :class:`ValueError` for a wrong first dimension. Always runs; bijections
    call it only while :func:`set_input_checks` leaves the checks on.

    Example:
        >>> check_context("Linear", torch.zeros(4, 5), 3)
        Traceback (most recent call last):
        ...
        ValueError: Linear: context must have one row per sample (3), the same batch size as the input, got shape (4, 5)
    """
    if context is None:
        return None
    if not isinstance(context, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor or None, got {type(context).__name__}")
    if context.dim() == 0 or context.shape[0] != batch:
        raise ValueError(
            f"{owner}: {name} must have one row per sample ({batch}), the same batch size as {subject}, "
            f"got shape {tuple(context.shape)}"
        )
    return context


_INIT_DEPTH = "_bijection_init_depth"
_CHECKS_EVENT_SHAPE = "_checks_event_shape"


def _require_event_shape(layer: nn.Module) -> None:
    """After the outermost ``__init__`` of a bijection: ``event_shape`` must be set and a valid shape."""
    name = type(layer).__name__
    try:
        shape = layer.event_shape
    except AttributeError:
        raise TypeError(
            f"{name}.__init__ did not set self.event_shape; a flowlib Bijection must set it to the shape of one "
            "input sample, e.g. self.event_shape = torch.Size([dim]) (or (C, H, W) for images), after "
            "super().__init__()"
        ) from None
    try:
        size = as_event_shape(shape)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: self.event_shape must be the shape of one input sample; {error}") from error
    if "event_shape" in layer.__dict__ and not isinstance(shape, torch.Size):
        layer.__dict__["event_shape"] = size


def _checking_event_shape(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a bijection's ``__init__``: when the outermost ``__init__`` returns, require ``event_shape``."""

    @functools.wraps(init)
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        state = self.__dict__
        depth = state.get(_INIT_DEPTH, 0)
        state[_INIT_DEPTH] = depth + 1
        try:
            init(self, *args, **kwargs)
        finally:
            if depth:
                state[_INIT_DEPTH] = depth
            else:
                state.pop(_INIT_DEPTH, None)
        if depth == 0:
            _require_event_shape(self)

    setattr(__init__, _CHECKS_EVENT_SHAPE, True)
    return __init__


class Bijection(nn.Module):
    r"""An invertible, differentiable map with a tractable log-determinant.

    Subclasses set ``self.event_shape`` (the shape of one sample in the data
    space) in ``__init__`` and implement :meth:`_forward` and :meth:`_inverse`,
    each returning ``(output, logabsdet)`` with ``logabsdet`` of shape
    ``(batch,)``. The public :meth:`forward` and :meth:`inverse` check the input
    first, so a wrong shape, dtype or a NaN gives a clear error instead of a
    failure deep inside torch; :class:`Compose`, :class:`Inverse` and
    :class:`FactorOut <flowlib.bijections.FactorOut>` call the private methods of
    their parts directly, so that a composition checks its input once.

    The contract guards itself. A subclass that overrides ``forward`` or
    ``inverse`` (the plain PyTorch way) is a :class:`TypeError` when the class
    is created, and one whose ``__init__`` leaves ``event_shape`` unset is a
    ``TypeError`` when it is constructed; both messages name the fix.

    A layer that changes the shape of its input (a squeeze) overrides
    :attr:`output_event_shape`.

    Example:
        >>> import torch
        >>> class Cube(Bijection):
        ...     "z = x^3 + x element-wise (the inverse, _inverse, is left out here)."
        ...     def __init__(self, dim: int) -> None:
        ...         super().__init__()
        ...         self.event_shape = torch.Size([dim])
        ...     def _forward(self, x, context):
        ...         return x**3 + x, torch.log(3 * x**2 + 1).sum(dim=1)
        >>> Cube(2)(torch.zeros(4, 2))[1].tolist()
        [0.0, 0.0, 0.0, 0.0]
        >>> class Plain(Bijection):  # doctest: +ELLIPSIS
        ...     def forward(self, x, context=None):
        ...         return x, x.new_zeros(x.shape[0])
        Traceback (most recent call last):
        ...
        TypeError: Plain overrides forward(); ...

    Attributes:
        event_shape: shape of one input sample of :meth:`forward`.
        logdet_is_exact: ``False`` for layers whose log-determinant is a
            stochastic estimate (residual flows); such layers say so here and in
            their docstring.
    """

    event_shape: torch.Size
    logdet_is_exact: bool = True

    def __init__(self) -> None:
        super().__init__()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        overridden = [name for name in ("forward", "inverse") if name in vars(cls)]
        if overridden:
            raise TypeError(
                f"{cls.__name__} overrides {' and '.join(f'{name}()' for name in overridden)}; a flowlib "
                "Bijection keeps forward() and inverse(), which check the input and call the methods you write "
                "(Compose and Inverse call those of their parts directly). Implement _forward(self, x, context) -> "
                "(z, logabsdet) and _inverse(self, z, context) -> (x, logabsdet) instead, and set "
                "self.event_shape in __init__"
            )
        if "__init__" in vars(cls):
            cls.__init__ = _checking_event_shape(vars(cls)["__init__"])  # type: ignore[method-assign]

    @property
    def output_event_shape(self) -> torch.Size:
        """Shape of one sample of :meth:`forward`'s output (the noise space)."""
        return self.event_shape

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data to noise: return ``(z, log|det dz/dx|)``."""
        check_input(self, x, self.event_shape)
        if _CHECKS["enabled"]:
            check_context(type(self).__name__, context, x.shape[0])
        return self._forward(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Noise to data: return ``(x, log|det dx/dz|)``."""
        check_input(self, z, self.output_event_shape)
        if _CHECKS["enabled"]:
            check_context(type(self).__name__, context, z.shape[0])
        return self._inverse(z, context)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _forward")

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} does not implement _inverse")

    def extra_repr(self) -> str:
        return f"event_shape={tuple(self.event_shape)}"


Bijection.__init__ = _checking_event_shape(Bijection.__init__)  # type: ignore[method-assign]


class Compose(Bijection):
    r"""Run bijections one after another; their log-determinants add.

    For :math:`f = f_K \circ \dots \circ f_1`, the chain rule and
    :math:`\det(AB) = \det A \det B` give

    .. math::

        \log\left|\det \frac{\partial f}{\partial x}\right|
        = \sum_{k=1}^{K} \log\left|\det \frac{\partial f_k}{\partial h_{k-1}}\right|,
        \qquad h_0 = x,\; h_k = f_k(h_{k-1}).

    ``forward`` runs ``layers[0]`` first; ``inverse`` runs them in reverse order.
    The shapes of neighbouring layers are checked when the composition is built.

    Example:
        >>> import torch
        >>> from flowlib.bijections import ElementwiseAffine
        >>> f = Compose(ElementwiseAffine(torch.tensor([2.0])), ElementwiseAffine(torch.tensor([3.0])))
        >>> z, ladj = f(torch.ones(1, 1))
        >>> z.item(), round(ladj.item(), 4)  # 6 = 3 * 2, log 6 = log 2 + log 3
        (6.0, 1.7918)
    """

    def __init__(self, *layers: Bijection) -> None:
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        if not layers:
            raise ValueError("Compose needs at least one bijection")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Bijection):
                raise TypeError(f"Compose: layer {i} is a {type(layer).__name__}, not a flowlib Bijection")
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
            if a.output_event_shape != b.event_shape:
                raise ValueError(
                    f"Compose: layer {i} ({type(a).__name__}) outputs events of shape "
                    f"{tuple(a.output_event_shape)} but layer {i + 1} ({type(b).__name__}) expects "
                    f"{tuple(b.event_shape)}"
                )
        self.layers = nn.ModuleList(layers)
        self.event_shape = layers[0].event_shape

    @property
    def output_event_shape(self) -> torch.Size:
        return self.layers[-1].output_event_shape

    @property
    def logdet_is_exact(self) -> bool:  # type: ignore[override]
        """Exact only if every layer's log-determinant is (read live: a layer may switch its mode)."""
        return all(layer.logdet_is_exact for layer in self.layers)

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        total = None
        for layer in self.layers:
            x, ladj = layer._forward(x, context)
            total = ladj if total is None else total + ladj
        return x, total

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        total = None
        for layer in reversed(self.layers):
            z, ladj = layer._inverse(z, context)
            total = ladj if total is None else total + ladj
        return z, total

    def forward_trajectory(self, x: Tensor, context: Tensor | None = None) -> list[Tensor]:
        """Return ``[x, f_1(x), f_2(f_1(x)), ..., z]``: the data as it flows through each layer."""
        check_input(self, x, self.event_shape)
        states = [x]
        for layer in self.layers:
            x, _ = layer._forward(x, context)
            states.append(x)
        return states

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Bijection:
        return self.layers[index]

    def extra_repr(self) -> str:
        return ""


class Inverse(Bijection):
    """Swap the two directions of a bijection.

    Inverse(f).forward runs f.inverse and the other way round.
    Use it to write a layer in the generative direction:
    the flow x = 0.75 z + 1 of chapter 1 is
    Inverse(ElementwiseAffine(0.75, 1.0)),
    whose forward computes z = (x - 1) / 0.75.
    """

    def __init__(self, bijection: Bijection) -> None:
        super().__init__()
        if not isinstance(bijection, Bijection):
            raise TypeError(f"Inverse expects a flowlib Bijection, got {type(bijection).__name__}")
        self.bijection = bijection
        self.event_shape = bijection.output_event_shape

    @property
    def output_event_shape(self) -> torch.Size:
        return self.bijection.event_shape

    @property
    def logdet_is_exact(self) -> bool:  # type: ignore[override]
        """That of the wrapped bijection."""
        return self.bijection.logdet_is_exact

    def _forward(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.bijection._inverse(x, context)

    def _inverse(self, z: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.bijection._forward(z, context)

    def extra_repr(self) -> str:
        return ""


class Flow(nn.Module):
    r"""A normalizing flow: a base distribution and a bijection from data to noise.

    .. math::

        \log p(x) = \log p_Z(f(x)) + \log\left|\det \frac{\partial f}{\partial x}\right|,
        \qquad x = f^{-1}(z),\; z \sim p_Z .

    Args:
        base: a distribution over the noise space with ``log_prob`` and
            ``rsample`` (see :mod:`flowlib.distributions`).
        bijection: the map from data to noise.

    Example:
        >>> import torch
        >>> from flowlib import Flow, StandardNormal, Inverse
        >>> from flowlib.bijections import ElementwiseAffine
        >>> flow = Flow(StandardNormal(1), Inverse(ElementwiseAffine(0.75, 1.0)))  # x = 0.75 z + 1
        >>> round(flow.log_prob(torch.tensor([[1.0]])).item(), 4)  # log N(1; 1, 0.75^2)
        -0.6313
    """

    def __init__(self, base: nn.Module, bijection: Bijection) -> None:
        super().__init__()
        if not isinstance(bijection, Bijection):
            raise TypeError(f"Flow expects a flowlib Bijection, got {type(bijection).__name__}")
        base_shape = getattr(base, "event_shape", None)
        if base_shape is not None and torch.Size(base_shape) != bijection.output_event_shape:
            raise ValueError(
                f"Flow: the bijection outputs events of shape {tuple(bijection.output_event_shape)} "
                f"but the base distribution has event shape {tuple(base_shape)}"
            )
        self.base = base
        self.bijection = bijection

    @property
    def event_shape(self) -> torch.Size:
        """Shape of one data sample."""
        return self.bijection.event_shape

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Exact log-density of each sample of ``x``; shape ``(batch,)``."""
        z, ladj = self.bijection(x, context)
        return self.base.log_prob(z) + ladj

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Same as :meth:`log_prob`, so that ``flow(x)`` works under DDP."""
        return self.log_prob(x, context)

    def _num_samples(self, n: int | None, context: Tensor | None) -> int:
        if context is not None:
            if n is not None and n != context.shape[0]:
                raise ValueError(f"Flow: n={n} but the context has batch size {context.shape[0]}; give one")
            return int(context.shape[0])
        if n is None or int(n) < 1:
            raise ValueError(f"Flow: the number of samples must be a positive int, got {n!r}")
        return int(n)

    def rsample_and_log_prob(self, n: int | None = None, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``n`` differentiable samples and their log-densities in one pass.

        ``log p(x) = log p_Z(z) - log|det dx/dz|``: no inverse is needed, which
        is what variational inference uses.
        """
        z = self.base.rsample((self._num_samples(n, context),))
        x, ladj = self.bijection.inverse(z, context)
        return x, self.base.log_prob(z) - ladj

    def rsample(self, n: int | None = None, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """Draw ``n`` samples through which gradients flow to the parameters.

        ``temperature`` :math:`T` scales the base distribution's standard
        deviation (Glow's temperature sampling): :math:`T < 1` gives smoother,
        more typical samples at the price of diversity. The base must accept a
        ``temperature`` argument in ``rsample`` (flowlib's bases do).
        """
        count = self._num_samples(n, context)
        z = self.base.rsample((count,)) if temperature == 1.0 else self.base.rsample((count,), temperature=temperature)
        x, _ = self.bijection.inverse(z, context)
        return x

    @torch.no_grad()
    def sample(self, n: int | None = None, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """Draw ``n`` samples (no gradients). With a ``context``, one per context row; see :meth:`rsample`."""
        return self.rsample(n, context, temperature)


def as_float_tensor(value: float | Sequence[float] | Tensor, reference: Tensor | None = None) -> Tensor:
    """Turn a number, list or tensor into a floating-point tensor, for the constructors of layers.

    A floating tensor is returned as it is; an integer tensor becomes the
    default dtype; a number or list gets ``reference``'s dtype if given, else
    the default dtype (float32 unless changed).

    Example:
        >>> as_float_tensor([1, 2]).dtype, as_float_tensor(2.0, torch.zeros(1, dtype=torch.float64)).dtype
        (torch.float32, torch.float64)
    """
    if isinstance(value, Tensor):
        return value if value.is_floating_point() else value.to(torch.get_default_dtype())
    dtype = reference.dtype if reference is not None else torch.get_default_dtype()
    return torch.as_tensor(value, dtype=dtype)
