r"""Flow families compared on the same data, under one training budget: the book's closing table.

Every model of a comparison gets the same data, the same number of Adam
steps, batch size, learning rate and seeds; :func:`compare_flows` then
measures, for each one, what the chapters measured one family at a time:

* the **test NLL**, nats per sample of the data the model saw (and bits per
  dimension for the digits, through :func:`flowlib.data.bits_per_dim`);
  an iResNet is evaluated with its exact log-determinant;
* the **parameter count**;
* the **time per training step** (the Trainer's clock, divided by the steps);
* the time of the two directions on ``n_timing`` points: the **normalizing
  direction** ``log_prob`` (data to noise, with the log-determinant) and the
  **generative direction** ``sample`` (noise to data).

A :class:`Contender` names a model, builds it, and says what each direction
costs by construction (one pass, :math:`D` sequential passes, fixed-point
iterations, a root find per layer): the measured times show what that means
on a given machine. :func:`moons_contenders` and :func:`digits_contenders`
are the models of the book's appendix, the configurations of the chapters
that train them; :func:`moons_data` and :func:`digits_data` prepare the two
data sets with their reference NLLs, and :func:`appendix_budget` holds the
two budgets (a CPU one, and a larger one for ``FLOWLIB_FULL=1``).

Example:
    >>> import torch
    >>> from flowlib.models import nice, realnvp
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> train, test = torch.randn(256, 2), torch.randn(64, 2)
    >>> contenders = [Contender("NICE", lambda: nice(2, layers=2, hidden=(8,))),
    ...               Contender("RealNVP", lambda: realnvp(2, layers=2, hidden=(8,)))]
    >>> rows = compare_flows(contenders, train, test, steps=5, batch_size=64, lr=1e-3, n_timing=32)
    >>> [row.name for row in rows], rows[0].parameters, rows[0].steps
    (['NICE', 'RealNVP'], 52, 5)
    >>> base_nll = -torch.distributions.Normal(0.0, 1.0).log_prob(test).sum(1).mean().item()
    >>> all(abs(row.test_nll - base_nll) < 0.05 for row in rows)   # N(0, I) data: the base is already right
    True
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .bijections import logdet_mode
from .checks import check_int
from .core import Flow
from .distributions import StandardNormal
from .data import Standardizer, bits_per_dim, dequantize, digits, moons, moons_log_prob
from .models import glow, iaf, iresnet, maf, multiscale_realnvp, nice, planar_flow, realnvp, spline_flow
from .train import BatchTransform, Trainer

__all__ = [
    "ComparisonData",
    "moons_data",
    "digits_data",
    "appendix_budget",
    "Contender",
    "ComparisonRow",
    "compare_flows",
    "median_seconds",
    "moons_contenders",
    "digits_contenders",
    "comparison_table",
    "cost_summary",
]

ONE_PASS = "one pass"


@dataclass(frozen=True)
class ComparisonData:
    """One data set of a comparison, as the models see it, with reference NLLs.

    Attributes:
        name: the name in the table.
        train: the training data (for images: integer pixels, dequantized per batch
            by ``train_transform``).
        val: validation data as the models see it, or ``None``.
        test: test data as the models see it.
        train_transform: applied to each training batch, or ``None``.
        levels: levels per dimension of discrete data (for bits/dim), or ``None``.
        references: NLLs (nats per sample, in the models' units) that need no
            training, by name: the true density, the base distribution, simple
            baselines.
        standardize: ``(mean, std)`` per feature of the training data, for
            models that standardize internally (the digits' MAF), or ``None``.
        true_log_prob: the true log-density in the models' units, where it is
            known (the moons), or ``None``.
    """

    name: str
    train: Tensor
    val: Tensor | None
    test: Tensor
    train_transform: BatchTransform | None
    levels: int | None
    references: dict[str, float]
    standardize: tuple[Tensor, Tensor] | None = None
    true_log_prob: Callable[[Tensor], Tensor] | None = None


def moons_data(n_train: int = 5000, n_test: int = 2000, noise: float = 0.05) -> ComparisonData:
    r"""Two moons, standardized with the training set's mean and standard deviation.

    Training points from seed 0, test points from seed 1 (chapter 7's split).
    References, in nats per standardized test point: ``"true density"``,
    the moons' own density (:func:`flowlib.data.moons_log_prob`) carried over
    to the standardized units with the standardization's log-determinant, the
    best any model can do on average; and ``"base N(0, I)"``, the NLL of the
    base distribution alone, which is where a model whose layers start at
    the identity begins.

    Example:
        >>> data = moons_data(n_train=500, n_test=200)
        >>> data.train.shape, data.test.shape, data.val is None
        (torch.Size([500, 2]), torch.Size([200, 2]), True)
        >>> data.references["true density"] < data.references["base N(0, I)"]
        True
        >>> nll = -data.true_log_prob(data.test.double()).mean().item()
        >>> abs(nll - data.references["true density"]) < 1e-5   # float32 rounding of the standardization
        True
    """
    raw_train, raw_test = moons(n_train, seed=0, noise=noise), moons(n_test, seed=1, noise=noise)
    scaler = Standardizer().fit(raw_train)
    test = scaler.transform(raw_test)
    true_nll = -moons_log_prob(raw_test.double(), noise=noise).mean().item() + scaler.logabsdet
    base_nll = -StandardNormal(2).double().log_prob(test.double()).mean().item()
    mean, std = scaler.mean.double(), scaler.std.double()

    def true_log_prob(v: Tensor) -> Tensor:
        """The moons' log-density at standardized points ``v``: that of the raw point, plus sum(log std)."""
        return moons_log_prob(v.double() * std + mean, noise=noise) + std.log().sum()

    return ComparisonData(
        name="moons", train=scaler.transform(raw_train), val=None, test=test, train_transform=None, levels=None,
        references={"true density": true_nll, "base N(0, I)": base_nll}, true_log_prob=true_log_prob,
    )  # fmt: skip


def _fresh_dequantization(batch: Tensor, generator: torch.Generator) -> Tensor:
    """Dequantize each training batch of digits with new noise."""
    return dequantize(batch, 17, generator=generator)


def digits_data() -> ComparisonData:
    r"""sklearn's 8x8 digits as chapters 4 to 6 use them, with two baselines.

    The split of :func:`flowlib.data.digits` (1,257 / 270 / 270 images);
    training batches dequantized afresh, :math:`v = (x + u)/17`; the
    validation and test images dequantized once, with chapter 4's fixed noise
    (a generator seeded with 4, validation first); ``standardize`` is the
    per-pixel mean and standard deviation of one dequantized draw of the
    training images (seed 5), as chapter 6's MAF uses it. References, in nats
    per image of :math:`v`: ``"uniform"``, the density 1 on :math:`[0, 1)^{64}`
    (0 nats, :math:`\log_2 17` bits/dim); ``"pixel histograms"``, every pixel
    its own histogram of the 17 values over the training images (add-one
    smoothing), a model with no dependence between pixels.

    Example:
        >>> data = digits_data()
        >>> data.train.shape, data.test.shape, data.levels
        (torch.Size([1257, 1, 8, 8]), torch.Size([270, 1, 8, 8]), 17)
        >>> bool(((data.test >= 0) & (data.test < 1)).all())
        True
        >>> round(bits_per_dim(data.references["pixel histograms"], 64, levels=17), 3)
        2.433
    """
    x_train, _ = digits("train")
    x_val, _ = digits("val")
    x_test, _ = digits("test")
    noise = torch.Generator().manual_seed(4)
    v_val = dequantize(x_val, 17, generator=noise)
    v_test = dequantize(x_test, 17, generator=noise)
    scaler = Standardizer().fit(dequantize(x_train, 17, generator=torch.Generator().manual_seed(5)))
    pixels = x_train.reshape(len(x_train), 64).long()
    counts = torch.ones(64, 17, dtype=torch.float64).scatter_add_(
        1, pixels.T, torch.ones(64, len(x_train), dtype=torch.float64)
    )
    log_freq = (counts / counts.sum(1, keepdim=True)).log()
    test_pixels = x_test.reshape(len(x_test), 64).long()
    histogram_nll = -log_freq.gather(1, test_pixels.T).sum(0).mean().item()  # nats per image, discrete
    return ComparisonData(
        name="digits", train=x_train, val=v_val, test=v_test, train_transform=_fresh_dequantization, levels=17,
        references={"uniform": 0.0, "pixel histograms": histogram_nll - 64 * math.log(17)},
        standardize=(scaler.mean.reshape(64), scaler.std.reshape(64)),
    )  # fmt: skip


_BUDGETS = {
    ("moons", False): {"steps": 300, "batch_size": 256, "lr": 5e-3},
    ("moons", True): {"steps": 3000, "batch_size": 256, "lr": 5e-3},
    ("digits", False): {"steps": 120, "batch_size": 128, "lr": 1e-3, "eval_every": 30},
    ("digits", True): {"steps": 3000, "batch_size": 128, "lr": 1e-3, "eval_every": 50, "patience": 10},
}


def appendix_budget(data: str, full: bool = False) -> dict[str, float]:
    """The appendix's common budget for ``data`` (``"moons"`` or ``"digits"``): keyword arguments of :func:`compare_flows`.

    The CPU budgets keep the appendix near a minute on two cores; ``full``
    gives ten times more steps (and, on the digits, early stopping on the
    validation NLL with chapter 4's patience).

    Example:
        >>> appendix_budget("moons")
        {'steps': 300, 'batch_size': 256, 'lr': 0.005}
    """
    if (data, bool(full)) not in _BUDGETS:
        raise ValueError(f"appendix_budget: data must be 'moons' or 'digits', got {data!r}")
    return dict(_BUDGETS[(data, bool(full))])


@dataclass(frozen=True)
class Contender:
    """A model in a comparison: its name, a builder, and what its two directions cost by construction.

    Attributes:
        name: the name in the table.
        build: a function of no arguments returning a fresh :class:`~flowlib.core.Flow`
            (called right after ``torch.manual_seed(seed)``).
        density_cost: what ``log_prob`` (the normalizing direction) costs, in words.
        sampling_cost: what ``sample`` (the generative direction) costs, in words.
    """

    name: str
    build: Callable[[], Flow]
    density_cost: str = ONE_PASS
    sampling_cost: str = ONE_PASS


@dataclass(frozen=True)
class ComparisonRow:
    """What :func:`compare_flows` measured for one :class:`Contender`.

    Attributes:
        name, density_cost, sampling_cost: copied from the contender.
        parameters: trainable parameters.
        test_nll: mean negative log-likelihood of the test set, nats per sample.
        bits_per_dim: the test NLL in bits per dimension of the discrete data
            (``None`` unless ``levels`` was given).
        steps: optimizer steps taken; best_step: the step whose weights were kept.
        step_seconds: training time per optimizer step (on the training device).
        density_seconds: time of ``log_prob`` on ``n_timing`` points (CPU, median).
        sampling_seconds: time of ``sample(n_timing)`` (CPU, median).
        flow: the trained model (on the CPU).
    """

    name: str
    parameters: int
    test_nll: float
    bits_per_dim: float | None
    steps: int
    best_step: int | None
    step_seconds: float
    density_seconds: float
    sampling_seconds: float
    density_cost: str
    sampling_cost: str
    flow: Flow


def median_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall-clock time of ``fn()`` over ``repeats`` calls, without gradients.

    Example:
        >>> median_seconds(lambda: sum(range(1000))) < 1.0
        True
    """
    repeats = check_int("median_seconds: repeats", repeats, minimum=1)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def _test_nll(flow: Flow, test: Tensor, batch_size: int = 1024) -> float:
    """Mean NLL in nats (float64 sum), with the exact log-determinant for residual blocks."""
    total = 0.0
    with logdet_mode(flow, "exact"):
        for start in range(0, len(test), batch_size):
            total -= flow.log_prob(test[start : start + batch_size]).double().sum().item()
    return total / len(test)


def compare_flows(
    contenders: Sequence[Contender],
    train: Tensor,
    test: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    val: Tensor | None = None,
    eval_every: int | None = None,
    patience: int | None = None,
    train_transform: BatchTransform | None = None,
    levels: int | None = None,
    n_timing: int = 1000,
    timing_repeats: int = 3,
    device: str = "cpu",
) -> list[ComparisonRow]:
    r"""Train every contender under one budget and measure it; one :class:`ComparisonRow` per contender.

    For each contender, in order: ``torch.manual_seed(seed)``, build the model,
    ``torch.manual_seed(seed)`` again (for estimators that draw from the
    global generator), then train it with a
    :class:`~flowlib.train.Trainer` (Adam with ``lr``, ``batch_size``,
    ``seed`` for the batch order, no weight decay, no gradient clipping) for
    ``steps`` steps; with ``val``, every ``eval_every`` steps the validation
    NLL is recorded, ``patience`` stops early, and the best weights are kept.
    The test set is used once, at the end. Timings are taken on the CPU
    (after training, the model is moved there), as the median of
    ``timing_repeats`` runs: ``log_prob`` of ``n_timing`` test points (the
    test set repeated if it is smaller) and ``sample(n_timing)``.

    Args:
        contenders: the models.
        train, test: the data, ``(n, *event_shape)``; ``test`` as the models
            see it (dequantized once, with fixed noise, for images).
        steps, batch_size, lr, seed: the common budget.
        val, eval_every, patience: optional validation and early stopping.
        train_transform: applied to each training batch (fresh dequantization).
        levels: for discrete data, the number of levels per dimension: the
            rows then carry bits per dimension (:func:`flowlib.data.bits_per_dim`).
        n_timing: points per timing.
        timing_repeats: runs per timing (the median is kept).
        device: the training device (``"cpu"``, ``"auto"``, ...).
    """
    steps = check_int("compare_flows: steps", steps, minimum=1)
    n_timing = check_int("compare_flows: n_timing", n_timing, minimum=1)
    names = [contender.name for contender in contenders]
    if not contenders or len(set(names)) != len(names):
        raise ValueError(f"compare_flows: expected contenders with distinct names, got {names}")
    repeats = math.ceil(n_timing / len(test))
    timing_points = test.repeat(repeats, *([1] * (test.dim() - 1)))[:n_timing]
    rows = []
    for contender in contenders:
        torch.manual_seed(seed)
        flow = contender.build()
        torch.manual_seed(seed)
        trainer = Trainer(
            flow, lr=lr, batch_size=batch_size, seed=seed, device=device, mixed_precision=False,
            eval_every=eval_every or steps, patience=patience,
        )  # fmt: skip
        trainer.fit(train, val=val, steps=steps, train_transform=train_transform)
        step_seconds = trainer.history[-1]["elapsed"] / trainer.step
        flow = flow.cpu().eval()
        test_nll = _test_nll(flow, test)
        bpd = None
        if levels is not None:
            bpd = float(bits_per_dim(test_nll, int(test[0].numel()), levels=levels))
        with logdet_mode(flow, "exact"):
            density_seconds = median_seconds(lambda: flow.log_prob(timing_points), timing_repeats)
        torch.manual_seed(seed)
        sampling_seconds = median_seconds(lambda: flow.sample(n_timing), timing_repeats)
        rows.append(
            ComparisonRow(
                name=contender.name,
                parameters=sum(p.numel() for p in flow.parameters() if p.requires_grad),
                test_nll=test_nll,
                bits_per_dim=bpd,
                steps=trainer.step,
                best_step=trainer.best_step,
                step_seconds=step_seconds,
                density_seconds=density_seconds,
                sampling_seconds=sampling_seconds,
                density_cost=contender.density_cost,
                sampling_cost=contender.sampling_cost,
                flow=flow,
            )
        )
    return rows


def moons_contenders(hidden: Sequence[int] = (64, 64)) -> list[Contender]:
    """The 2-D models of the appendix: every family the book trains on the moons.

    The couplings and autoregressive flows share the conditioner width
    ``hidden``; the iResNet and the planar flow are chapter 7's.

    Example:
        >>> [c.name for c in moons_contenders()]
        ['NICE', 'RealNVP', 'spline coupling', 'MAF', 'IAF', 'iResNet', 'planar']
    """
    hidden = tuple(hidden)
    return [
        Contender("NICE", lambda: nice(2, layers=4, hidden=hidden)),
        Contender("RealNVP", lambda: realnvp(2, layers=8, hidden=hidden)),
        Contender("spline coupling", lambda: spline_flow(2, layers=4, hidden=hidden)),
        Contender("MAF", lambda: maf(2, layers=5, hidden=hidden), sampling_cost="D passes per layer"),
        Contender("IAF", lambda: iaf(2, layers=5, hidden=hidden), density_cost="D passes per layer"),
        Contender(
            "iResNet",
            lambda: iresnet(2, blocks=8, hidden=(32,), kappa=0.97, activation="tanh", logdet="roulette",
                            n_terms=2, roulette_p=0.1),
            density_cost="log-det series",
            sampling_cost="fixed-point iterations",
        ),  # fmt: skip
        Contender("planar", lambda: planar_flow(2, layers=16), density_cost="a root find per layer"),
    ]


def digits_contenders(standardize: tuple[Tensor, Tensor], event_shape: Sequence[int] = (1, 8, 8)) -> list[Contender]:
    """The image models of the appendix: chapter 4's multi-scale RealNVP, chapter 5's Glow, chapter 6's MAF.

    ``standardize`` is the ``(mean, std)`` of the dequantized training pixels
    (one value per pixel) that the MAF puts in front of its layers, as in
    chapter 6; the image models start with a logit instead.

    Example:
        >>> import torch
        >>> [c.name for c in digits_contenders((torch.zeros(64), torch.ones(64)))]
        ['multi-scale RealNVP', 'Glow', 'MAF']
    """
    shape = tuple(event_shape)
    features = math.prod(shape)
    return [
        Contender("multi-scale RealNVP", lambda: multiscale_realnvp(shape, hidden_channels=64)),
        Contender("Glow", lambda: glow(shape, levels=2, steps=8, hidden_channels=96)),
        Contender(
            "MAF",
            lambda: maf(features, layers=5, hidden=(256, 256), event_shape=shape, standardize=standardize),
            sampling_cost="D passes per layer",
        ),
    ]


def comparison_table(rows_by_data: Mapping[str, Sequence[ComparisonRow]]) -> str:
    """One Markdown table of several comparisons: a row per model, under a heading row per data set.

    Columns: the model; the test NLL, in bits per dimension where the data
    are discrete and in nats otherwise; the parameters; the milliseconds of
    one training step, of ``log_prob`` on the timing points and of drawing
    as many samples (:func:`compare_flows`' ``n_timing``); and the direction
    that costs more than one pass, with its cost by construction
    (:func:`cost_summary`).

    Example:
        >>> import torch
        >>> from flowlib.models import nice
        >>> rows = compare_flows([Contender("NICE", lambda: nice(2, layers=2, hidden=(8,)))],
        ...                      torch.randn(128, 2), torch.randn(32, 2), steps=2, batch_size=64, lr=1e-3, n_timing=8)
        >>> table = comparison_table({"toy": rows}).splitlines()
        >>> table[0]
        '| model | test NLL | parameters | ms/step | log_prob, ms | sample, ms | cost |'
        >>> table[2].startswith("| **toy** |"), table[3].startswith("| NICE | ")
        (True, True)
    """
    header = ["model", "test NLL", "parameters", "ms/step", "log_prob, ms", "sample, ms", "cost"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * 5 + "---|"]
    for data_name, rows in rows_by_data.items():
        lines.append(f"| **{data_name}** |" + " |" * (len(header) - 1))
        for row in rows:
            score = f"{row.test_nll:.3f} nats" if row.bits_per_dim is None else f"{row.bits_per_dim:.3f} bits/dim"
            cells = [row.name, score, f"{row.parameters:,}"]
            cells += [_milliseconds(t) for t in (row.step_seconds, row.density_seconds, row.sampling_seconds)]
            cells.append(cost_summary(row.density_cost, row.sampling_cost))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_summary(density_cost: str, sampling_cost: str) -> str:
    """What the two directions cost, in one phrase: ``"one pass each way"``, or the direction(s) that cost more.

    Example:
        >>> cost_summary("one pass", "one pass")
        'one pass each way'
        >>> cost_summary("one pass", "D passes per layer")
        'sampling: D passes per layer'
    """
    if density_cost == sampling_cost == ONE_PASS:
        return "one pass each way"
    parts = [f"{direction}: {cost}" for direction, cost in (("density", density_cost), ("sampling", sampling_cost))
             if cost != ONE_PASS]  # fmt: skip
    return "; ".join(parts)


def _milliseconds(seconds: float) -> str:
    return f"{1e3 * seconds:.1f}" if seconds < 1 else f"{1e3 * seconds:,.0f}"
