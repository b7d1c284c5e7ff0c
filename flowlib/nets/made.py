r"""MADE: one network whose outputs respect an autoregressive order, by masking its weights.

An autoregressive layer needs, for every coordinate :math:`i`, parameters
:math:`\theta_i` that depend on the input only through the coordinates that come
before :math:`i` in some order. :math:`D` separate networks would do, at
:math:`D` times the cost. MADE {Germain et al., 2015} computes all
:math:`\theta_i` with one fully connected network in which some weights are
forced to zero by fixed binary masks.

**Degrees.** Every input coordinate gets its position in the order,
:math:`m(x_i) \in \{1, \dots, D\}`. Every hidden unit :math:`u` gets a degree
:math:`m(u) \in \{1, \dots, D-1\}` (or :math:`\{0, \dots, D-1\}` with a context:
a unit of degree 0 sees only the context). A weight from unit :math:`v` of the
previous layer to a *hidden* unit :math:`u` is kept iff :math:`m(u) \ge m(v)`;
a weight to an *output* of coordinate :math:`i` is kept iff
:math:`m(x_i) > m(v)`. By induction over the layers, a hidden unit of degree
:math:`d` depends on the inputs of degree :math:`\le d` only, so
:math:`\theta_i` depends on the inputs of degree :math:`< m(x_i)`: the
coordinates before :math:`i`.

The same fact makes the sequential direction cheap (:class:`IncrementalMADE`):
when the coordinates of degree :math:`\le d` are known, every unit of degree
:math:`d` can be computed, once, and never needs recomputing.

Example:
    >>> import torch
    >>> made = MADE(3, outputs_per_feature=1, hidden=(4,), zero_last=False)
    >>> [d.tolist() for d in made.degrees()]          # inputs, then the hidden units
    [[1, 2, 3], [1, 2, 1, 2]]
    >>> made.layers[0].mask.int().tolist()            # hidden u reads x_i iff m(u) >= m(x_i)
    [[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0]]
    >>> made.layers[1].mask.int().tolist()            # theta_i reads u iff m(x_i) > m(u)
    [[0, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mlp import zero_init

__all__ = ["MaskedLinear", "MADE", "IncrementalMADE", "made_degrees", "made_masks", "autoregressive_order"]


def autoregressive_order(
    features: int, order: str | Sequence[int] | Tensor = "natural", generator: torch.Generator | None = None
) -> Tensor:
    """The order of the coordinates as a permutation: ``order[p]`` is the coordinate at position ``p``.

    ``"natural"`` is ``0, 1, ..., D-1``, ``"reversed"`` is ``D-1, ..., 0``,
    ``"random"`` a uniformly random permutation (reproducible with
    ``generator``); a sequence must hold each of ``0 .. D-1`` once.

    Example:
        >>> autoregressive_order(4, "reversed").tolist()
        [3, 2, 1, 0]
    """
    if isinstance(features, bool) or not isinstance(features, int) or features < 1:
        raise ValueError(f"the number of features must be an int >= 1, got {features!r}")
    if isinstance(order, str):
        if order == "natural":
            return torch.arange(features)
        if order == "reversed":
            return torch.arange(features - 1, -1, -1)
        if order == "random":
            return torch.randperm(features, generator=generator)
        raise ValueError(f"order must be 'natural', 'reversed', 'random' or a permutation, got {order!r}")
    perm = torch.as_tensor(order)
    if perm.dim() != 1 or perm.is_floating_point() or perm.is_complex():
        raise ValueError(f"order must be a 1-D sequence of ints, got {order!r}")
    perm = perm.long().cpu()
    if perm.numel() != features or not torch.equal(torch.sort(perm).values, torch.arange(features)):
        raise ValueError(f"order must hold each of 0..{features - 1} exactly once, got {perm.tolist()}")
    return perm.clone()


def made_degrees(order: Tensor, hidden: Sequence[int], context: bool = False) -> list[Tensor]:
    r"""The degrees of a MADE's inputs and hidden units: ``[m(x), m(h_1), ..., m(h_L)]``.

    Inputs: ``m(x_i)`` = position of :math:`i` in ``order``, plus one. Hidden
    units: the degrees ``1 .. D-1`` (``0 .. D-1`` with a ``context``) in turn,
    ``1, 2, ..., D-1, 1, 2, ...``, so that every degree has about the same number
    of units; a layer narrower than :math:`D-1` leaves the highest degrees out,
    and the last coordinates then see fewer inputs.

    Example:
        >>> [d.tolist() for d in made_degrees(torch.tensor([2, 0, 1]), hidden=(5,))]
        [[2, 3, 1], [1, 2, 1, 2, 1]]
    """
    features = order.numel()
    inputs = torch.empty(features, dtype=torch.long)
    inputs[order] = torch.arange(1, features + 1)
    low = 0 if context else 1
    count = max(features - 1 - low + 1, 1)
    degrees = [inputs]
    for width in hidden:
        degrees.append(low + torch.arange(int(width)) % count)
    return degrees


def made_masks(degrees: Sequence[Tensor], outputs_per_feature: int) -> list[Tensor]:
    r"""The boolean masks of a MADE with the given degrees, one ``(out, in)`` mask per layer.

    A hidden unit :math:`u` reads :math:`v` iff :math:`m(u) \ge m(v)`; the
    outputs of coordinate :math:`i` read :math:`v` iff :math:`m(x_i) > m(v)`.
    The output rows are parameter-major: row ``j * D + i`` is parameter ``j``
    of coordinate ``i``.

    Example:
        >>> masks = made_masks(made_degrees(torch.arange(2), hidden=(2,)), outputs_per_feature=1)
        >>> [m.int().tolist() for m in masks]
        [[[1, 0], [1, 0]], [[0, 0], [1, 1]]]
    """
    masks = []
    for previous, current in zip(degrees[:-1], degrees[1:]):
        masks.append(current[:, None] >= previous[None, :])
    outputs = degrees[0].repeat(outputs_per_feature)
    masks.append(outputs[:, None] > degrees[-1][None, :])
    return masks


class MaskedLinear(nn.Linear):
    r"""A linear layer whose weight is multiplied by a fixed 0/1 mask: :math:`y = (W \odot M) x + b`.

    The mask is a buffer (saved with the weights, moved with ``.to``), stored
    in the weight's dtype so that the product costs one multiplication. A
    masked weight gets zero gradient, so it never influences the output, however
    it is initialized or updated.

    Args:
        in_features, out_features: sizes, as for ``nn.Linear``.
        mask: ``(out_features, in_features)``, boolean or 0/1; ``True`` keeps a weight.
        bias: whether to add a bias (never masked).

    Example:
        >>> layer = MaskedLinear(2, 2, torch.tensor([[True, False], [True, True]]))
        >>> with torch.no_grad():
        ...     _ = layer.weight.fill_(1.0), layer.bias.zero_()
        >>> layer(torch.tensor([[1.0, 10.0]])).tolist()   # the first output ignores x_2
        [[1.0, 11.0]]
    """

    mask: Tensor

    def __init__(self, in_features: int, out_features: int, mask: Tensor, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != (out_features, in_features):
            raise ValueError(
                f"MaskedLinear: the mask must have shape (out_features, in_features) = "
                f"{(out_features, in_features)}, got {tuple(mask.shape)}"
            )
        if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("MaskedLinear: the mask must be boolean or hold only 0 and 1")
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def masked_weight(self) -> Tensor:
        r""":math:`W \odot M`, the weight the layer actually uses."""
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:
        kept = int(self.mask.sum())
        return f"{super().extra_repr()}, kept={kept}/{self.mask.numel()}"


class MADE(nn.Module):
    r"""A masked autoencoder for distribution estimation: :math:`\theta_i(x_{<i})` for every :math:`i` in one pass.

    Maps ``x`` of shape ``(batch, D)`` to ``(batch, D, k)``: ``k`` parameters
    for each coordinate (a shift and a log-scale, or a spline's widths,
    heights and slopes), where the parameters of coordinate ``order[p]`` depend
    on ``x[:, order[:p]]`` only. See the module docstring for the degrees and
    masks; :func:`flowlib.testing.check_autoregressive` verifies the property
    through the Jacobian.

    Args:
        features: :math:`D`.
        outputs_per_feature: :math:`k`.
        hidden: widths of the hidden layers (``()``: a masked linear map).
        order: ``"natural"``, ``"reversed"``, ``"random"`` or a permutation
            (see :func:`autoregressive_order`); stored as the buffer ``order``.
        context_features: size of an optional context vector (a conditional
            MADE). The context has degree 0: an unmasked linear layer adds it
            to the first layer, and every output may depend on it.
        residual: pre-activation residual connections between hidden layers of
            equal width, :math:`h_{l+1} = h_l + W_l\,\sigma(h_l)`. All hidden
            units of a residual MADE share one set of degrees, so the skip
            connections respect the order.
        activation: the hidden non-linearity (a module class).
        zero_last: start the output layer at zero (default ``True``): an
            autoregressive layer built on it starts as the identity.
        generator: for ``order="random"``.

    Example:
        >>> made = MADE(4, outputs_per_feature=2, hidden=(16, 16), order="reversed", zero_last=False)
        >>> x = torch.randn(3, 4)
        >>> y = x.clone(); y[:, 0] += 1.0                 # change the LAST coordinate in the order
        >>> torch.equal(made(x)[:, 1:], made(y)[:, 1:])   # nothing before it in the order moves
        True
    """

    order: Tensor
    input_degrees: Tensor

    def __init__(
        self,
        features: int,
        outputs_per_feature: int = 2,
        hidden: Sequence[int] = (128, 128),
        order: str | Sequence[int] | Tensor = "natural",
        context_features: int = 0,
        residual: bool = False,
        activation: type[nn.Module] = nn.ReLU,
        zero_last: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if isinstance(outputs_per_feature, bool) or int(outputs_per_feature) < 1:
            raise ValueError(f"MADE: outputs_per_feature must be >= 1, got {outputs_per_feature!r}")
        if any(h < 1 for h in hidden):
            raise ValueError(f"MADE: every hidden width must be >= 1, got {hidden}")
        if int(context_features) < 0:
            raise ValueError(f"MADE: context_features must be >= 0, got {context_features}")
        if residual and (len(set(hidden)) > 1 or not hidden):
            raise ValueError(f"MADE: residual=True needs hidden layers of one width, got {hidden}")
        order_t = autoregressive_order(features, order, generator)
        self.features = int(features)
        self.outputs_per_feature = int(outputs_per_feature)
        self.hidden = hidden
        self.context_features = int(context_features)
        self.residual = bool(residual)
        degrees = made_degrees(order_t, hidden, context=self.context_features > 0)
        self.register_buffer("order", order_t)
        self.register_buffer("input_degrees", degrees[0])
        for index, values in enumerate(degrees[1:], start=1):
            self.register_buffer(f"hidden_degrees_{index}", values)
        sizes = [self.features, *hidden, self.features * self.outputs_per_feature]
        masks = made_masks(degrees, self.outputs_per_feature)
        self.layers = nn.ModuleList(MaskedLinear(a, b, m) for a, b, m in zip(sizes[:-1], sizes[1:], masks))
        self.context_layer = nn.Linear(self.context_features, sizes[1]) if self.context_features else None
        self.activation = activation()
        if zero_last:
            zero_init(self.layers[-1])

    def degrees(self) -> list[Tensor]:
        """``[m(x), m(h_1), ..., m(h_L)]``: the degrees of the inputs and of each hidden layer's units."""
        return [self.input_degrees] + [getattr(self, f"hidden_degrees_{i}") for i in range(1, len(self.hidden) + 1)]

    def _first(self, x: Tensor, context: Tensor | None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"MADE: expected an input of shape (batch, {self.features}), got {tuple(x.shape)}")
        h = self.layers[0](x)
        if self.context_layer is not None:
            if context is None:
                raise ValueError(f"MADE: this network expects a context of {self.context_features} features")
            h = h + self.context_layer(context.reshape(context.shape[0], -1).to(h.dtype))
        return h

    def flat_forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """The output layer as it is computed: ``(batch, k * D)``, parameter-major (``[:, j * D + i]``)."""
        h = self._first(x, context)
        if self.residual:
            for layer in self.layers[1:-1]:
                h = h + layer(self.activation(h))
            return self.layers[-1](self.activation(h))
        for layer in self.layers[1:]:
            h = layer(self.activation(h))
        return h

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``(batch, D)`` to ``(batch, D, k)``; the parameters of coordinate ``i`` are ``[:, i, :]``."""
        h = self.flat_forward(x, context)
        return h.view(x.shape[0], self.outputs_per_feature, self.features).transpose(1, 2)

    def extra_repr(self) -> str:
        return (
            f"features={self.features}, outputs_per_feature={self.outputs_per_feature}, hidden={self.hidden}, "
            f"order={self.order.tolist() if self.features <= 8 else '...'}, residual={self.residual}"
        )


class _Rows:
    """The rows computed so far of a ``(units, batch)`` matrix whose units are sorted by degree.

    Without autograd the rows go into one preallocated buffer; with autograd
    (an in-place write would invalidate tensors saved for the backward pass)
    they are kept as blocks and concatenated when read.
    """

    def __init__(self, units: int, like: Tensor, batch: int, in_place: bool) -> None:
        self.in_place = in_place
        self.count = 0
        self.buffer = like.new_empty(units, batch) if in_place else like.new_empty(0, batch)
        self.blocks: list[Tensor] = []

    def append(self, block: Tensor) -> None:
        if self.in_place:
            self.buffer[self.count : self.count + block.shape[0]].copy_(block)
        else:
            self.blocks.append(block)
        self.count += block.shape[0]

    def first(self, count: int) -> Tensor:
        """The first ``count`` rows; they must be all the rows computed so far."""
        if count != self.count:
            raise RuntimeError(f"IncrementalMADE: {count} rows are needed but {self.count} are known")
        if self.in_place or count == 0:
            return self.buffer[:count]
        if len(self.blocks) > 1:
            self.blocks = [torch.cat(self.blocks)]
        return self.blocks[0]


class IncrementalMADE:
    r"""Evaluate a :class:`MADE` one position at a time, computing each hidden unit exactly once.

    The sequential direction of an autoregressive layer finds the coordinates
    in order: coordinate ``order[p]`` needs its parameters :math:`\theta`, which
    depend on the coordinates at positions ``< p``, just found. Running the whole
    MADE again at every position costs :math:`D` full passes. But a hidden unit
    of degree :math:`d` depends only on the inputs of degree :math:`\le d`: once
    the coordinates of degree :math:`\le p` (positions ``< p``) are known, the
    units of degree :math:`p` of every layer can be computed, they never change
    again, and the parameters of position ``p`` read only units of degree
    :math:`\le p`. This class sorts each layer's units by degree and, at each
    step, computes just the new block of units and the ``k`` outputs of one
    coordinate.

    **Cost.** Every masked weight is used once per sample, as in *one* forward
    pass of the MADE (about :math:`P` multiply-adds for :math:`P` weights, instead
    of :math:`D \cdot P` for :math:`D` passes), spread over :math:`D` sequential
    steps of :math:`L + 1` small matrix products (:math:`L` hidden layers). The
    steps cannot run in parallel, so for small batches the time is set by the
    :math:`D (L + 1)` kernel calls rather than by the arithmetic.

    Usage, in the loop of an autoregressive inverse::

        runner = IncrementalMADE(made, reference=z, context=context)
        for p in range(D):
            params = runner.next_params()   # (batch, k): theta of coordinate made.order[p]
            value = ...                     # coordinate made.order[p], from params
            runner.feed(value)              # (batch,)

    The results equal those of the full MADE up to rounding (the sums are
    grouped differently). With autograd enabled and something requiring a
    gradient, blocks are concatenated instead of written in place, so that the
    result is differentiable.

    Args:
        made: the network.
        reference: a ``(batch, D)`` tensor whose batch size, dtype and device the
            computation uses (the input of the inverse).
        context: the MADE's context, if it has one.

    Example:
        >>> made = MADE(3, outputs_per_feature=2, hidden=(8, 8), zero_last=False).double()
        >>> x = torch.randn(4, 3, dtype=torch.float64)
        >>> runner = IncrementalMADE(made, reference=x)
        >>> rows = []
        >>> for p in range(3):
        ...     rows.append(runner.next_params())
        ...     runner.feed(x[:, made.order[p]])
        >>> torch.allclose(torch.stack(rows, 1), made(x)[:, made.order], atol=1e-12)
        True
    """

    def __init__(self, made: MADE, reference: Tensor, context: Tensor | None = None) -> None:
        if not isinstance(made, MADE):
            raise TypeError(f"IncrementalMADE expects a MADE, got {type(made).__name__}")
        batch, dtype = reference.shape[0], reference.dtype
        features, k = made.features, made.outputs_per_feature
        grad = torch.is_grad_enabled() and (
            reference.requires_grad
            or any(p.requires_grad for p in made.parameters())
            or (context is not None and context.requires_grad)
        )
        degrees = made.degrees()
        # each layer's units sorted by degree; the inputs sorted by position in the order
        sorts = [made.order] + [torch.argsort(d, stable=True) for d in degrees[1:]]
        # below[l][j]: how many units of layer l (0 = the inputs) have a degree < j
        self.below = []
        for d in degrees:
            counts = torch.bincount(d, minlength=features + 1)
            self.below.append([0] + counts.cumsum(0).tolist())
        layers = list(made.layers)
        weights = [layer.masked_weight().to(dtype)[sorts[i + 1]][:, sorts[i]] for i, layer in enumerate(layers[:-1])]
        biases = [layer.bias.to(dtype)[sorts[i + 1]].unsqueeze(1) for i, layer in enumerate(layers[:-1])]
        last = layers[-1]
        out_weight = last.masked_weight().to(dtype).view(k, features, -1)[:, made.order][:, :, sorts[-1]]
        out_weight = out_weight.transpose(0, 1).contiguous()  # (D, k, units), by position
        out_bias = last.bias.to(dtype).view(k, features)[:, made.order].t().unsqueeze(2)  # (D, k, 1)
        if made.context_layer is not None:  # the context's share of the first layer, added to its biases
            if context is None:
                raise ValueError(f"MADE: this network expects a context of {made.context_features} features")
            term = made.context_layer(context.reshape(batch, -1).to(dtype)).to(dtype)
            if weights:
                biases[0] = biases[0] + term.t()[sorts[1]]  # (units, batch)
            else:
                out_bias = out_bias + term.view(batch, k, features)[:, :, made.order].permute(2, 1, 0)
        # the work of each position, sliced once: for every hidden layer with units of degree p,
        # (layer, rows read from the layer below, weight block, bias block); then the outputs of position p
        self.plan = []
        for p in range(features):
            blocks = []
            for i, weight in enumerate(weights):
                low, high = self.below[i + 1][p], self.below[i + 1][p + 1]
                reads = self.below[i][p + 1]  # the units below of degree <= p
                if high > low:
                    blocks.append((i, reads, weight[low:high, :reads], biases[i][low:high]))
            reads = self.below[len(weights)][p + 1]  # the outputs of position p read degrees <= p
            self.plan.append((blocks, reads, out_weight[p, :, :reads], out_bias[p]))
        self.rows = [_Rows(len(d), reference, batch, in_place=not grad) for d in degrees]
        self.activation = made.activation
        self.residual = made.residual
        self.features = features
        self.batch = batch
        self.dtype = dtype
        self.position = 0

    def next_params(self) -> Tensor:
        """The ``(batch, k)`` parameters of the coordinate at the next position, ``made.order[position]``."""
        if self.position >= self.features:
            raise RuntimeError("IncrementalMADE: every position has been computed")
        blocks, reads, out_weight, out_bias = self.plan[self.position]
        skip = None
        for layer, below, weight, bias in blocks:  # the new units of degree p, layer by layer
            pre = torch.addmm(bias, weight, self.rows[layer].first(below))
            if self.residual and skip is not None:
                pre = skip + pre
            skip = pre
            self.rows[layer + 1].append(self.activation(pre))
        return torch.addmm(out_bias, out_weight, self.rows[-1].first(reads)).t()

    def feed(self, value: Tensor) -> None:
        """Give the value of the coordinate at the current position, shape ``(batch,)``; move to the next."""
        self.rows[0].append(value.reshape(1, self.batch))
        self.position += 1
