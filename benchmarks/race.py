r"""Race flowlib against zuko, nflows and normflows on tasks A, B and C of the benchmark protocol.

Run from the repository root with the benchmark's own environment::

    benchmarks/.venv/bin/python benchmarks/race.py --task all          # A, B and C
    benchmarks/.venv/bin/python benchmarks/race.py --task A --quick    # 300-step smoke run
    benchmarks/.venv/bin/python benchmarks/race.py --task B            # the MAF on the digits, 3000 steps
    benchmarks/.venv/bin/python benchmarks/race.py --task all --seeds 0 1 2   # once per seed: median best NLL

The protocol (``shared/BENCHMARK-PROTOCOL.md``, summarized in ``benchmarks/README.md``):
two-moons data (``make_moons(20000, noise=0.05)`` train, 5000 fresh test samples,
standardized with the train mean/std), Adam with lr 1e-3, batch 512, 1500 steps,
standard normal base (not trainable), plain ReLU MLP conditioners with PyTorch's
default initialization, test NLL every 100 steps.

* Task A: 8 affine couplings on alternating halves, conditioner 1 -> 128 -> 128 -> 2 (136,208 parameters).
* Task C: 5 rational-quadratic spline couplings, 8 bins, bound 5, linear tails,
  conditioner 1 -> 128 -> 128 -> 23 (98,675 parameters).
* Task B (its own data and loop settings): a MAF of 5 MADE layers 64 -> 256 -> 256 -> 128
  (shift and log-scale per pixel), orders reversed between layers (576,640 parameters),
  on sklearn's 8x8 digits: 1500 train / 297 test images, v = (x + u) / 17 with fresh u per
  training batch and one fixed draw for the test set, standardized per pixel with the
  statistics of one dequantized draw of the training set; batch 256, 3000 steps; the test
  NLL is reported in bits/dim of the digits, and sampling in samples/s for n = 1000.
  Two floors: the five MLPs dense, and the same with MADE masks.

All contenders run in one process and are *interleaved*: every round trains each
of them for one window of 100 steps (the order rotates from round to round), then
evaluates its test NLL. Other jobs on the machine therefore slow all of them alike,
and the ratios are taken per round (paired) before the median. Throughput is the
median of the per-window rates after one warm-up window.

The *floor* is the same conditioner networks alone: forward, backward and Adam on
the same batch, with no masks, permutations, log-dets or base log-prob (loss: the
mean square of their outputs). What a library spends above the floor is its
bookkeeping. The floor is fast, so its windows are 200 steps (the window's 100
batches twice) to stay above the protocol's 0.5 s.

After training, *inference* is timed on the trained models, gradients off, the same
way as task B's sampling always was (interleaved rounds, each call repeated for at
least 0.5 s per round, median time of a call): ``log_prob`` of 10,000 points (the
test set twice) and ``sample(10_000)`` on tasks A and C, 5 rounds; ``log_prob`` of
1,000 test images (tiled) and ``sample(1000)`` on task B, 3 rounds.

With ``--seeds S1 S2 ...`` the whole race runs once per seed (data, batches,
initialization and test set all follow the seed), and the tables give the median
over the seeds of each model's best test NLL (and each seed's), while steps/s, the
paired ratios and the inference rates are medians over all seeds' rounds and calls.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HIDDEN = (128, 128)
BINS = 8
BOUND = 5.0
LR = 1e-3
BATCH = 512
WINDOW = 100  # steps per timing window, and between two test evaluations
THREADS = 2
N_TRAIN, N_TEST, NOISE = 20_000, 5_000, 0.05


@dataclass(frozen=True)
class Task:
    """One task of the protocol: ``layers`` couplings with ``per_dim`` conditioner outputs per transformed coordinate."""

    name: str
    description: str
    layers: int
    per_dim: int
    protocol_params: int

    @property
    def spline(self) -> bool:
        return self.per_dim != 2


TASKS = {
    "A": Task("A", "8 affine couplings (RealNVP), conditioner 1-128-128-2", 8, 2, 136_208),
    "B": Task("B", "MAF, 5 MADE layers 64-256-256-128, orders reversed between layers, on the digits", 5, 2, 576_640),
    "C": Task(
        "C", "5 RQ-spline couplings, 8 bins, bound 5, linear tails, conditioner 1-128-128-23", 5, 3 * BINS - 1, 98_675
    ),
}


class PlainMLP(nn.Sequential):
    """A ReLU MLP ``in -> 128 -> 128 -> out`` with PyTorch's default initialization.

    ``forward`` accepts (and ignores) a ``context`` argument because nflows and
    normflows call their conditioners as ``net(x, context)``.
    """

    def __init__(self, in_features: int, out_features: int, hidden: Sequence[int] = HIDDEN) -> None:
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        super().__init__(*layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:  # type: ignore[override]
        return super().forward(x)


LogProb = Callable[[Tensor], Tensor]
Sample = Callable[[int], Tensor]
Built = tuple[nn.Module, LogProb, str, Sample]  # (module holding the parameters, log_prob, note, sample(n))


# --------------------------------------------------------------------------- the models, one builder per library
# Each builder returns (module holding the parameters, log_prob function, note on how it matches the protocol,
# sample function: n -> (n, D) samples).
# Layer 0 (the first applied to the data) keeps x0 and transforms x1; layer 1 the other way round; and so on.


def build_flowlib(task: Task, default_init: bool = True) -> Built:
    """flowlib's own constructors (``models.realnvp`` / ``models.spline_flow``).

    flowlib starts every conditioner's last layer at zero (identity flow). The
    protocol asks for PyTorch's default initialization, so with ``default_init``
    the last ``nn.Linear`` of each conditioner is re-initialized with
    ``reset_parameters()``; the architecture is untouched.
    """
    from flowlib import models
    from flowlib.bijections import Coupling

    if task.spline:
        flow = models.spline_flow(2, layers=task.layers, hidden=HIDDEN, bins=BINS, bound=BOUND)
        note = "models.spline_flow(2, layers=5, hidden=(128, 128), bins=8, bound=5)"
    else:
        flow = models.realnvp(2, layers=task.layers, hidden=HIDDEN)
        note = "models.realnvp(2, layers=8, hidden=(128, 128)); log-scale soft-bounded to (-5, 5)"
    if default_init:
        for coupling in (m for m in flow.modules() if isinstance(m, Coupling)):
            [m for m in coupling.conditioner.modules() if isinstance(m, nn.Linear)][-1].reset_parameters()
        note += "; last layers re-initialized (PyTorch default)"
    else:
        note += "; flowlib's zero-initialized last layers (not the protocol)"
    return flow, flow.log_prob, note, flow.sample


def compiled(built: Built) -> Built:
    """The same flow with ``log_prob`` through ``flowlib.compiled.compile_log_prob`` (``torch.compile``; checks on,
    outside the compiled region). Not the default path: it agrees with it to float32 rounding, not bit for bit."""
    from flowlib.compiled import compile_log_prob

    flow, _, note, sample = built
    return flow, compile_log_prob(flow), note + "; log_prob through torch.compile (compile_log_prob)", sample


def build_zuko(task: Task) -> Built:
    """zuko: ``RealNVP`` for A; ``GeneralCouplingTransform`` with ``MonotonicRQSTransform`` for C.

    ``zuko.flows.NSF`` is autoregressive (MADE masks, dense masked weights), so C
    uses the general coupling transform with the spline as its univariate map.
    """
    import zuko

    if not task.spline:
        flow = zuko.flows.RealNVP(2, transforms=task.layers, hidden_features=HIDDEN)
        note = "flows.RealNVP(2, transforms=8, hidden_features=(128, 128)); log-scale soft-bounded by |log 1e-3|"
    else:
        couplings = [
            zuko.flows.GeneralCouplingTransform(
                2,
                mask=torch.arange(2) % 2 == i % 2,
                univariate=zuko.transforms.MonotonicRQSTransform,  # bound 5, identity (linear) tails
                shapes=[(BINS,), (BINS,), (BINS - 1,)],
                hidden_features=HIDDEN,
            )
            for i in range(task.layers)
        ]
        base = zuko.flows.UnconditionalDistribution(
            zuko.distributions.DiagNormal, torch.zeros(2), torch.ones(2), buffer=True
        )
        flow = zuko.flows.Flow(couplings, base)
        note = "flows.GeneralCouplingTransform(univariate=transforms.MonotonicRQSTransform, bins 8, bound 5)"
    return flow, lambda x: flow().log_prob(x), note, lambda n: flow().sample((n,))


def build_nflows(task: Task) -> Built:
    """nflows: ``AffineCouplingTransform`` / ``PiecewiseRationalQuadraticCouplingTransform`` in a ``Flow``."""
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.coupling import AffineCouplingTransform, PiecewiseRationalQuadraticCouplingTransform

    layers = []
    for i in range(task.layers):
        mask = torch.tensor([0, 1] if i % 2 == 0 else [1, 0])  # nflows: mask > 0 is transformed
        if task.spline:
            layers.append(
                PiecewiseRationalQuadraticCouplingTransform(
                    mask, PlainMLP, num_bins=BINS, tails="linear", tail_bound=BOUND
                )
            )
        else:
            layers.append(AffineCouplingTransform(mask, PlainMLP))
    flow = Flow(CompositeTransform(layers), StandardNormal([2]))
    note = (
        "PiecewiseRationalQuadraticCouplingTransform(tails='linear', tail_bound=5, num_bins=8)"
        if task.spline
        else "AffineCouplingTransform; its scale is sigmoid(s + 2) + 1e-3, i.e. in (0.001, 1.001)"
    )
    return flow, flow.log_prob, note, flow.sample


def build_normflows(task: Task) -> Built:
    """normflows: ``AffineCouplingBlock`` for A; ``PiecewiseRationalQuadraticCoupling`` for C.

    normflows' ready-made ``CoupledRationalQuadraticSpline`` hard-wires a
    ``ResidualNet`` conditioner and an extra unconditional spline on the kept half,
    so C uses the coupling it wraps, with a plain MLP, in a two-line adapter.
    normflows runs ``flows`` from last to first in ``log_prob``, hence the reversal.
    """
    import normflows as nf
    from normflows.flows.neural_spline.coupling import PiecewiseRationalQuadraticCoupling

    class SplineCoupling(nf.flows.Flow):
        """normflows' Flow convention: ``inverse`` is the data -> noise direction."""

        def __init__(self, keep_first: bool) -> None:
            super().__init__()
            mask = torch.tensor([0, 1] if keep_first else [1, 0])
            self.coupling = PiecewiseRationalQuadraticCoupling(
                mask, PlainMLP, num_bins=BINS, tails="linear", tail_bound=BOUND
            )

        def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
            x, log_det = self.coupling.inverse(z)
            return x, log_det.view(-1)

        def inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
            z, log_det = self.coupling(x)
            return z, log_det.view(-1)

    flows: list[nn.Module] = []
    for i in range(task.layers):
        keep_first = i % 2 == 0
        if task.spline:
            flows.append(SplineCoupling(keep_first))
        else:  # param_map output: [shift, log-scale] for the one transformed coordinate
            flows.append(
                nf.flows.AffineCouplingBlock(
                    PlainMLP(1, 2), scale_map="exp", split_mode="channel" if keep_first else "channel_inv"
                )
            )
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(2, trainable=False), flows[::-1])
    note = (
        "flows.neural_spline.coupling.PiecewiseRationalQuadraticCoupling(tails='linear', tail_bound=5)"
        if task.spline
        else "flows.AffineCouplingBlock(scale_map='exp'): unbounded log-scale"
    )
    return flow, flow.log_prob, note, lambda n: flow.sample(n)[0]


# --------------------------------------------------------------------------- contenders


@dataclass
class Contender:
    """A model in the race: how to train one window and how to evaluate it, and what it recorded."""

    name: str
    params: int
    note: str
    train_window: Callable[[Tensor], float]  # batches (steps, B, 2) -> last loss
    test_nll: Callable[[], float] | None  # None for the floor
    setup: Callable[[], None] = lambda: None  # run before each window and evaluation
    repeat: int = 1  # passes over each window's batches: the floor needs 2 for windows of >= 0.5 s
    log_prob: LogProb | None = None  # inference: log-density of a batch (None: not measured)
    sample: Sample | None = None  # inference: draw n samples (None: not measured)
    windows: list[tuple[int, float]] = field(default_factory=list)  # (steps, seconds) per timed window
    nll: list[tuple[int, float]] = field(default_factory=list)
    inference: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds per call (gradients off)
    failure: str | None = None


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def loop_trainer(module: nn.Module, loss_fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], float]:
    """The training loop every library shares: ``zero_grad``, loss, ``backward``, Adam step."""
    optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=LR)

    def window(batches: Tensor) -> float:
        loss = torch.zeros(())
        for x in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(x)
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    return window


def flow_contender(name: str, built: Built, test: Tensor, setup: Callable[[], None] = lambda: None) -> Contender:
    """A flow trained by the shared loop, evaluated on ``test``, with its ``log_prob`` and ``sample`` timed."""
    module, log_prob, note, sample = built

    @torch.no_grad()
    def test_nll() -> float:
        module.eval()
        value = float(-log_prob(test).double().mean())
        module.train()
        return value

    return Contender(
        name, count(module), note, loop_trainer(module, lambda x: -log_prob(x).mean()), test_nll, setup,
        log_prob=log_prob, sample=sample,
    )


def floor_contender(task: Task) -> Contender:
    """The conditioner networks alone, each fed one column of the batch."""
    nets = nn.ModuleList(PlainMLP(1, task.per_dim) for _ in range(task.layers))

    def loss_fn(x: Tensor) -> Tensor:
        return sum(net(x[:, i % 2 : i % 2 + 1]).square().mean() for i, net in enumerate(nets))  # type: ignore[return-value]

    return Contender(
        "floor (conditioners only)",
        count(nets),
        f"{task.layers} x PlainMLP(1, {task.per_dim})",
        loop_trainer(nets, loss_fn),
        None,
        repeat=2,
    )


def flowlib_trainer_contender(task: Task, train: Tensor, test: Tensor, seed: int) -> Contender:
    """flowlib's ``Trainer.fit`` (its own batch order, NaN and gradient-norm checks), checks on."""
    from flowlib.train import Trainer

    flow, _, note, _ = build_flowlib(task)
    trainer = Trainer(flow, lr=LR, batch_size=BATCH, device="cpu", seed=seed, restore_best=False)

    def window(batches: Tensor) -> float:
        trainer.fit(train, steps=len(batches))
        return float(trainer.history[-1]["train_loss"])

    return Contender("flowlib Trainer.fit", count(flow), note, window, lambda: trainer.evaluate(test), _checks(True))


def _checks(enabled: bool) -> Callable[[], None]:
    def setup() -> None:
        from flowlib.core import set_input_checks

        set_input_checks(enabled)

    return setup


LIBRARIES = ("flowlib", "zuko", "nflows", "normflows")


def contenders(
    task: Task, libs: Sequence[str], train: Tensor, test: Tensor, seed: int, extras: bool
) -> list[Contender]:
    """Build every contender of a task, each right after ``torch.manual_seed(seed)``; a failing one is recorded."""
    makers: list[tuple[str, Callable[[], Contender]]] = [("floor (conditioners only)", lambda: floor_contender(task))]
    if "flowlib" in libs:
        makers += [
            (
                "flowlib (checks on)",
                lambda: flow_contender("flowlib (checks on)", build_flowlib(task), test, _checks(True)),
            ),
            (
                "flowlib (checks off)",
                lambda: flow_contender("flowlib (checks off)", build_flowlib(task), test, _checks(False)),
            ),
            ("flowlib Trainer.fit", lambda: flowlib_trainer_contender(task, train, test, seed)),
        ]
        if extras:
            makers.append(
                (
                    "flowlib zero-init",
                    lambda: flow_contender(
                        "flowlib zero-init (checks off)", build_flowlib(task, default_init=False), test, _checks(False)
                    ),
                )
            )
            makers.append(
                (
                    "flowlib compiled",
                    lambda: flow_contender(
                        "flowlib compiled (checks on)", compiled(build_flowlib(task)), test, _checks(True)
                    ),
                )
            )
    builders = {"zuko": build_zuko, "nflows": build_nflows, "normflows": build_normflows}

    def peer(lib: str) -> Callable[[], Contender]:
        return lambda: flow_contender(lib, builders[lib](task), test, _checks(True))

    makers += [(lib, peer(lib)) for lib in libs if lib in builders]
    out = []
    for name, make in makers:
        torch.manual_seed(seed)
        try:
            out.append(make())
        except Exception as error:  # noqa: BLE001 (a peer that does not build: report it and go on)
            out.append(Contender(name, 0, "", lambda b: math.nan, None, failure=f"build: {error!r}"))
    return out


# --------------------------------------------------------------------------- task B: a MAF on the digits

DIGITS_SPLIT = (1500, 0, 297)  # train, (no validation), test
LEVELS = 17
B_HIDDEN = (256, 256)
B_BATCH = 256
B_STEPS = 3000
SAMPLE_N = 1000


class MaskedPlainMLP(nn.Module):
    """The masked floor: a ReLU MLP ``64 -> 256 -> 256 -> 128`` whose weights are multiplied by MADE masks.

    Degrees as in every MADE (inputs 1..D in the order, hidden units 1..D-1 in turn); the weight is
    multiplied by its 0/1 mask on every forward pass, as masked layers do. PyTorch's default initialization.
    """

    def __init__(self, features: int, per_dim: int, hidden: Sequence[int], reverse: bool) -> None:
        super().__init__()
        inputs = torch.arange(1, features + 1).flip(0) if reverse else torch.arange(1, features + 1)
        degrees = [inputs] + [1 + torch.arange(h) % (features - 1) for h in hidden]
        masks = [cur[:, None] >= prev[None, :] for prev, cur in itertools.pairwise(degrees)]
        masks.append(inputs.repeat(per_dim)[:, None] > degrees[-1][None, :])
        sizes = [features, *hidden, features * per_dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        for i, mask in enumerate(masks):
            self.register_buffer(f"mask{i}", mask.float())

    def forward(self, x: Tensor) -> Tensor:
        for i, linear in enumerate(self.linears):
            x = nn.functional.linear(x, linear.weight * getattr(self, f"mask{i}"), linear.bias)
            if i < len(self.linears) - 1:
                x = torch.relu(x)
        return x


@dataclass
class Digits:
    """Task B's data: integer training images (for fresh noise per batch) and the standardized test set."""

    train: Tensor  # (1500, 64), integer pixel values 0..16 as floats
    test: Tensor  # (297, 64), dequantized once and standardized
    mean: Tensor
    std: Tensor
    logabsdet: float  # of the standardization, per image (-sum log std)

    def standardize(self, x_int: Tensor, generator: torch.Generator) -> Tensor:
        from flowlib.data import dequantize

        return (dequantize(x_int, LEVELS, generator) - self.mean) / self.std

    def bits_per_dim(self, nll_standardized: float) -> float:
        """bits/dim of the digits = (NLL of v + 64 ln 17) / (64 ln 2), NLL of v = NLL of the standardized v - logabsdet."""
        from flowlib.data import bits_per_dim

        return bits_per_dim(nll_standardized, 64, levels=LEVELS, extra_logdet=self.logabsdet)


def digits_data(seed: int) -> Digits:
    from flowlib.data import Standardizer, dequantize, digits

    train, _ = digits("train", seed=seed, sizes=DIGITS_SPLIT)
    test, _ = digits("test", seed=seed, sizes=DIGITS_SPLIT)
    train, test = train.reshape(len(train), 64), test.reshape(len(test), 64)
    generator = torch.Generator().manual_seed(seed)
    scaler = Standardizer().fit(dequantize(train, LEVELS, generator))
    test_v = scaler.transform(dequantize(test, LEVELS, generator))
    return Digits(train, test_v, scaler.mean, scaler.std, scaler.logabsdet)


def digits_batches(data: Digits, steps: int, seed: int) -> Callable[[int], Tensor]:
    """Window ``r``'s batches (WINDOW, 256, 64): epochs of a seeded permutation, fresh noise seeded per window."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = data.train.shape[0] // B_BATCH
    epochs = math.ceil(steps / per_epoch)
    order = torch.cat(
        [torch.randperm(data.train.shape[0], generator=generator)[: per_epoch * B_BATCH] for _ in range(epochs)]
    )[: steps * B_BATCH].reshape(steps, B_BATCH)

    def window(r: int) -> Tensor:
        noise = torch.Generator().manual_seed(10_000 * (seed + 1) + r)
        return data.standardize(data.train[order[r * WINDOW : (r + 1) * WINDOW]], noise).contiguous()

    return window


def build_flowlib_maf(default_init: bool = True) -> Built:
    """``models.maf(64, layers=5, hidden=(256, 256))``: MADE orders alternate (= reversals between layers)."""
    from flowlib import models
    from flowlib.nets import MADE

    flow = models.maf(64, layers=5, hidden=B_HIDDEN)
    note = "models.maf(64, layers=5, hidden=(256, 256)); log-scale soft-bounded to (-5, 5); incremental sampler"
    if default_init:
        for made in (m for m in flow.modules() if isinstance(m, MADE)):
            made.layers[-1].reset_parameters()
        note += "; last layers re-initialized (PyTorch default)"
    else:
        note += "; flowlib's zero-initialized last layers (not the protocol)"
    return flow, flow.log_prob, note, flow.sample


def build_flowlib_spline_maf() -> Built:
    """Not the protocol's model (``--extras``): 8-bin spline transformers, hidden 128, flowlib's zero init."""
    from flowlib import models

    flow = models.maf(64, layers=5, hidden=(128, 128), transform="spline", bins=8, bound=5.0)
    note = "models.maf(64, layers=5, hidden=(128, 128), transform='spline', bins=8, bound=5): NOT the protocol's model"
    return flow, flow.log_prob, note, flow.sample


def build_zuko_maf() -> Built:
    import zuko

    flow = zuko.flows.MAF(64, transforms=5, hidden_features=B_HIDDEN)
    note = "flows.MAF(64, transforms=5, hidden_features=(256, 256)); orders alternate; D-pass inverse"
    return flow, lambda x: flow().log_prob(x), note, lambda n: flow().sample((n,))


def build_nflows_maf() -> Built:
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    layers: list[nn.Module] = []
    for i in range(5):
        if i:
            layers.append(ReversePermutation(64))
        layers.append(
            MaskedAffineAutoregressiveTransform(64, B_HIDDEN[0], num_blocks=1, use_residual_blocks=False)
        )
    flow = Flow(CompositeTransform(layers), StandardNormal([64]))
    note = (
        "MaskedAffineAutoregressiveTransform(64, 256, num_blocks=1, use_residual_blocks=False) x 5, "
        "ReversePermutation between; scale softplus(s) + 1e-3; D-pass inverse"
    )
    return flow, flow.log_prob, note, flow.sample


def build_normflows_maf() -> Built:
    """normflows' ``MaskedAffineAutoregressive`` computes its MADE pass in ``forward``, which normflows uses
    for sampling; wrapped in ``flows.Reverse`` it is a MAF (one pass for ``log_prob``)."""
    import normflows as nf

    class Flip(nf.flows.Flow):
        def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
            return z.flip(1), z.new_zeros(z.shape[0])

        def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
            return z.flip(1), z.new_zeros(z.shape[0])

    flows: list[nn.Module] = []
    for i in range(5):
        if i:
            flows.append(Flip())
        flows.append(
            nf.flows.Reverse(
                nf.flows.MaskedAffineAutoregressive(64, B_HIDDEN[0], num_blocks=1, use_residual_blocks=False)
            )
        )
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(64, trainable=False), flows)
    note = (
        "flows.Reverse(flows.MaskedAffineAutoregressive(64, 256, num_blocks=1, use_residual_blocks=False)) x 5, "
        "flips between; scale sigmoid(s + 2) + 1e-3; D-pass inverse"
    )
    return flow, flow.log_prob, note, lambda n: flow.sample(n)[0]


def floor_contender_b(masked: bool) -> Contender:
    if masked:
        nets = nn.ModuleList(MaskedPlainMLP(64, 2, B_HIDDEN, reverse=i % 2 == 1) for i in range(5))
        name, note = "floor masked (MADEs only)", "5 x MaskedPlainMLP(64, 256, 256, 128)"
    else:
        nets = nn.ModuleList(PlainMLP(64, 128, B_HIDDEN) for _ in range(5))
        name, note = "floor dense (MLPs only)", "5 x PlainMLP(64, 256, 256, 128)"

    def loss_fn(x: Tensor) -> Tensor:
        return sum(net(x).square().mean() for net in nets)  # type: ignore[return-value]

    return Contender(name, count(nets), note, loop_trainer(nets, loss_fn), None)


def flowlib_trainer_contender_b(data: Digits, seed: int) -> Contender:
    from flowlib.train import Trainer

    flow, _, note, sample = build_flowlib_maf()
    trainer = Trainer(flow, lr=LR, batch_size=B_BATCH, device="cpu", seed=seed, restore_best=False)

    def window(batches: Tensor) -> float:
        trainer.fit(data.train, steps=len(batches), train_transform=data.standardize)
        return float(trainer.history[-1]["train_loss"])

    return Contender(
        "flowlib Trainer.fit", count(flow), note, window, lambda: trainer.evaluate(data.test), _checks(True),
        sample=sample,
    )


def contenders_b(libs: Sequence[str], data: Digits, seed: int, extras: bool) -> list[Contender]:
    makers: list[tuple[str, Callable[[], Contender]]] = [
        ("floor masked (MADEs only)", lambda: floor_contender_b(masked=True)),
        ("floor dense (MLPs only)", lambda: floor_contender_b(masked=False)),
    ]
    if "flowlib" in libs:
        makers += [
            ("flowlib (checks on)", lambda: flow_contender("flowlib (checks on)", build_flowlib_maf(), data.test,
                                                          _checks(True))),
            ("flowlib (checks off)", lambda: flow_contender("flowlib (checks off)", build_flowlib_maf(), data.test,
                                                           _checks(False))),
            ("flowlib Trainer.fit", lambda: flowlib_trainer_contender_b(data, seed)),
        ]
        if extras:
            makers.append(
                ("flowlib zero-init", lambda: flow_contender(
                    "flowlib zero-init (checks off)", build_flowlib_maf(default_init=False), data.test,
                    _checks(False)))
            )
            makers.append(
                ("flowlib compiled", lambda: flow_contender(
                    "flowlib compiled (checks on)", compiled(build_flowlib_maf()), data.test, _checks(True)))
            )
            makers.append(
                ("flowlib spline MAF", lambda: flow_contender(
                    "flowlib spline MAF (not the protocol)", build_flowlib_spline_maf(), data.test,
                    _checks(False)))
            )
    builders = {"zuko": build_zuko_maf, "nflows": build_nflows_maf, "normflows": build_normflows_maf}

    def peer(lib: str) -> Callable[[], Contender]:
        return lambda: flow_contender(lib, builders[lib](), data.test, _checks(True))

    makers += [(lib, peer(lib)) for lib in libs if lib in builders]
    out = []
    for name, make in makers:
        torch.manual_seed(seed)
        try:
            out.append(make())
        except Exception as error:  # noqa: BLE001
            out.append(Contender(name, 0, "", lambda b: math.nan, None, failure=f"build: {error!r}"))
    return out


INFER_N = 10_000  # tasks A and C: points per log_prob call and samples per sample call
INFER_ROUNDS = 5  # tasks A and C; task B keeps 3 rounds of n = SAMPLE_N
INFER_KINDS = ("log_prob", "sample")


def inference_points(test: Tensor, n: int) -> Tensor:
    """``n`` points for timing ``log_prob``: the test set repeated (A, C: 5000 points twice; B: 297 images, tiled)."""
    return test.repeat(math.ceil(n / test.shape[0]), 1)[:n].contiguous()


def measure_inference(
    racers: list[Contender], points: Tensor, rounds: int, log: Callable[[str], None], min_seconds: float = 0.5
) -> None:
    """Time ``log_prob(points)`` and ``sample(len(points))`` of every contender that has them, gradients off.

    As task B's sampling always was: ``rounds`` interleaved rounds (the starting contender rotates),
    and in each round each contender repeats the call until it has run for ``min_seconds``; every
    call's time is kept (``Contender.inference``), and the rate is n / the median time of a call.
    Each contender's ``setup`` runs first (the input checks on or off), and the sampler is seeded
    by the round. The output is checked (shape, finite) so that a fast wrong answer cannot win.
    """
    n = points.shape[0]
    for r in range(rounds):
        for kind in INFER_KINDS:
            timed = [c for c in racers if getattr(c, kind) is not None and not c.failure]
            shift = r % max(len(timed), 1)
            for c in timed[shift:] + timed[:shift]:
                call: Callable[[], Tensor] = (
                    (lambda c=c: c.log_prob(points)) if kind == "log_prob" else (lambda c=c: c.sample(n))
                )
                expected = (n,) if kind == "log_prob" else (n, *points.shape[1:])
                c.setup()
                torch.manual_seed(r)
                seconds = c.inference.setdefault(kind, [])
                spent, calls = 0.0, 0
                try:
                    with torch.no_grad():
                        while calls == 0 or spent < min_seconds:
                            calls += 1
                            start = time.perf_counter()
                            out = call()
                            elapsed = time.perf_counter() - start
                            seconds.append(elapsed)
                            spent += elapsed
                    if tuple(out.shape) != expected or not bool(torch.isfinite(out).all()):
                        raise FloatingPointError(f"{kind} gave shape {tuple(out.shape)} or non-finite values")
                except Exception as error:  # noqa: BLE001
                    c.failure = f"{kind}: {error!r}"[:300]
            rates = ", ".join(f"{c.name} {n / c.inference[kind][-1]:,.0f}" for c in timed if c.inference.get(kind))
            log(f"  inference round {r + 1}/{rounds}, {kind}({n}) samples/s: {rates}")


# --------------------------------------------------------------------------- the race


def moons_data(seed: int) -> tuple[Tensor, Tensor]:
    """Standardized train (20000) and test (5000, fresh: another seed) sets of two moons."""
    from flowlib.data import Standardizer, moons

    train, test = moons(N_TRAIN, seed=seed, noise=NOISE), moons(N_TEST, seed=seed + 1, noise=NOISE)
    scaler = Standardizer().fit(train)
    return scaler.transform(train), scaler.transform(test)


def batch_plan(train: Tensor, steps: int, seed: int) -> Tensor:
    """The batches all loop-trained contenders see: epochs of a seeded permutation, remainder dropped."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = train.shape[0] // BATCH
    epochs = math.ceil(steps / per_epoch)
    order = torch.cat([torch.randperm(train.shape[0], generator=generator)[: per_epoch * BATCH] for _ in range(epochs)])
    return train[order[: steps * BATCH]].reshape(steps, BATCH, -1).contiguous()


def race(task: Task, libs: Sequence[str], steps: int, seed: int, extras: bool, log: Callable[[str], None]) -> dict:
    digits = None
    if task.name == "B":
        digits = digits_data(seed)
        window_batches = digits_batches(digits, steps, seed)
        racers = contenders_b(libs, digits, seed, extras)
    else:
        train, test = moons_data(seed)
        batches = batch_plan(train, steps, seed)
        racers = contenders(task, libs, train, test, seed, extras)

        def window_batches(r: int) -> Tensor:
            return batches[r * WINDOW : (r + 1) * WINDOW]

    for c in racers:
        status = f"FAILED ({c.failure})" if c.failure else f"{c.params:>7,}  {c.note}"
        log(f"  {c.name:<30} params {status}  [protocol {task.protocol_params:,}]")
    rounds = math.ceil(steps / WINDOW)
    loads = []  # the 1-minute load average after each round: other jobs show up here
    for r in range(rounds):
        block = window_batches(r)
        shift = r % len(racers)
        for c in racers[shift:] + racers[:shift]:
            if c.failure:
                continue
            c.setup()
            try:
                start = time.perf_counter()
                for _ in range(c.repeat):
                    loss = c.train_window(block)
                c.windows.append((len(block) * c.repeat, time.perf_counter() - start))
                if not math.isfinite(loss):
                    raise FloatingPointError(f"training loss {loss}")
                if c.test_nll is not None:
                    c.nll.append((r * WINDOW + len(block), c.test_nll()))
            except Exception as error:  # noqa: BLE001 (a diverging or crashing model: report it and go on)
                c.failure = f"step <= {(r + 1) * WINDOW}: {error!r}"[:300]
        rates = ", ".join(
            f"{c.name} {n / t:.0f}" for c in racers if c.windows and not c.failure for n, t in c.windows[-1:]
        )
        loads.append(round(os.getloadavg()[0], 2))
        log(f"  round {r + 1}/{rounds} (step {min((r + 1) * WINDOW, steps)}), load {loads[-1]:.2f}, steps/s: {rates}")
    if digits is not None:
        points, infer_rounds = inference_points(digits.test, SAMPLE_N), 3
    else:
        points, infer_rounds = inference_points(test, INFER_N), INFER_ROUNDS
    measure_inference(racers, points, infer_rounds, log)
    result = summarize(task, racers, steps, digits)
    result.update(seed=seed, inference_n=points.shape[0], inference_rounds=infer_rounds, load_1min_per_round=loads)
    return result


def paired_ratios(windows: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]) -> list[float]:
    """Per timed round (after the warm-up one): time per step / the reference's in the same round."""
    return [(t / n) / (t_ref / n_ref) for (n, t), (n_ref, t_ref) in list(zip(windows, reference))[1:]]


def paired_ratio(windows: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]) -> float | None:
    """Median over the timed rounds (after the warm-up one) of time per step / the reference's in the same round."""
    pairs = paired_ratios(windows, reference)
    return statistics.median(pairs) if pairs else None


def summarize(task: Task, racers: list[Contender], steps: int, digits: Digits | None = None) -> dict:
    """One seed's results: a row per contender (rates, paired ratios, NLL curve, inference rates, raw times)."""
    len_points = SAMPLE_N if digits is not None else INFER_N
    floor = racers[0]
    dense = next((c for c in racers if c.name.startswith("floor dense")), None)
    flowlib = next((c for c in racers if c.name == "flowlib (checks on)"), None)
    rows = []
    for c in racers:
        timed = c.windows[1:]
        rates = [n / t for n, t in timed]
        best = min(c.nll, key=lambda e: e[1]) if c.nll else None
        rows.append(
            {
                "library": c.name,
                "params": c.params,
                "protocol_params": task.protocol_params,
                "note": c.note,
                "steps_per_s": statistics.median(rates) if rates else None,
                "steps_per_s_min_max": [min(rates), max(rates)] if rates else None,
                "timed_windows": len(timed),
                "disturbed_windows": sum(rate < statistics.median(rates) / 2 for rate in rates),
                "shortest_window_s": min(t for _, t in timed) if timed else None,
                "x_floor": paired_ratio(c.windows, floor.windows) if not floor.failure else None,
                "x_flowlib": paired_ratio(c.windows, flowlib.windows) if flowlib and not flowlib.failure else None,
                "best_test_nll": best[1] if best else None,
                "best_step": best[0] if best else None,
                "final_test_nll": c.nll[-1][1] if c.nll else None,
                "test_nll_curve": c.nll,
                "x_dense_floor": paired_ratio(c.windows, dense.windows) if dense and not dense.failure else None,
                "best_test_bits_per_dim": digits.bits_per_dim(best[1]) if digits is not None and best else None,
                **{
                    f"{kind}_per_s": (
                        len_points / statistics.median(c.inference[kind]) if c.inference.get(kind) else None
                    )
                    for kind in INFER_KINDS
                },
                "inference_seconds": {kind: [round(t, 6) for t in ts] for kind, ts in c.inference.items()},
                "windows_steps_seconds": [(n, round(t, 6)) for n, t in c.windows],
                "failure": c.failure,
            }
        )
    result = {"task": task.name, "model": task.description, "steps": steps, "rows": rows}
    if digits is not None:
        result["units"] = "test NLL in nats per image of the standardized v; bits/dim of the digits (protocol B)"
        result["standardization_logabsdet"] = digits.logabsdet
    return result


# --------------------------------------------------------------------------- reporting


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


PEERS = ("zuko", "nflows", "normflows")


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def combine(per_seed: list[dict]) -> dict:
    """One task over several seeds: a row per contender, from the per-seed results (``race``'s dicts).

    * best test NLL (and bits/dim on B): the median over the seeds of each seed's best, each seed's kept;
    * training steps/s: the median over all seeds' timed windows; the paired ratios (÷ floor, ÷ dense
      floor, ÷ flowlib): the median over all seeds' timed rounds of the per-round ratio;
    * log_prob and sample samples/s: n / the median time of a call, over all seeds' calls.
    """
    first = per_seed[0]

    def reference(result: dict, match: Callable[[str], bool]) -> dict | None:
        row = next((row for row in result["rows"] if match(row["library"])), None)
        return row if row is not None and row["steps_per_s"] is not None else None

    references = {
        "x_floor": lambda name: name == first["rows"][0]["library"],
        "x_dense_floor": lambda name: name.startswith("floor dense"),
        "x_flowlib": lambda name: name == "flowlib (checks on)",
    }
    rows = []
    for name in [row["library"] for row in first["rows"]]:
        own = [next(row for row in result["rows"] if row["library"] == name) for result in per_seed]
        windows = [w for row in own for w in row["windows_steps_seconds"][1:]]
        combined: dict[str, Any] = {
            "library": name,
            "params": own[0]["params"],
            "note": own[0]["note"],
            "steps_per_s": _median([n / t for n, t in windows]),
            "timed_windows": sum(row["timed_windows"] for row in own),
            "disturbed_windows": sum(row["disturbed_windows"] for row in own),
            "shortest_window_s": min(
                (row["shortest_window_s"] for row in own if row["shortest_window_s"]), default=None
            ),
        }
        for key, match in references.items():
            pairs: list[float] = []
            for result, row in zip(per_seed, own):
                ref = reference(result, match)
                if ref is not None and row["steps_per_s"] is not None:
                    pairs += paired_ratios(row["windows_steps_seconds"], ref["windows_steps_seconds"])
            combined[key] = statistics.median(pairs) if pairs else None
        combined["best_test_nll"] = _median([row["best_test_nll"] for row in own])
        combined["best_test_nll_per_seed"] = [
            [result["seed"], row["best_test_nll"], row["best_step"]] for result, row in zip(per_seed, own)
        ]
        if first["task"] == "B":
            combined["best_test_bits_per_dim"] = _median([row["best_test_bits_per_dim"] for row in own])
            combined["best_test_bits_per_dim_per_seed"] = [
                [result["seed"], row["best_test_bits_per_dim"], row["best_step"]] for result, row in zip(per_seed, own)
            ]
        for kind in INFER_KINDS:
            calls = [t for row in own for t in row["inference_seconds"].get(kind, [])]
            combined[f"{kind}_per_s"] = first["inference_n"] / statistics.median(calls) if calls else None
        failures = [f"seed {result['seed']}: {row['failure']}" for result, row in zip(per_seed, own) if row["failure"]]
        combined["failure"] = "; ".join(failures) or None
        rows.append(combined)
    return {
        "task": first["task"],
        "model": first["model"],
        "steps": first["steps"],
        "seeds": [result["seed"] for result in per_seed],
        "inference_n": first["inference_n"],
        "inference_rounds": first["inference_rounds"],
        "rows": rows,
        "per_seed": per_seed,
    }


def _best_text(row: dict, key: str, seeds: int) -> str:
    """``1.214 (1300)`` for one seed; ``**1.203** (1.214@1300, 1.203@900, 1.190@1500)`` (median, then each seed)."""
    per_seed = row[f"{key}_per_seed"]
    if seeds == 1:
        _, value, step = per_seed[0]
        return "—" if value is None else f"{value:.3f} ({step})"
    median = row[key]
    each = ", ".join("—" if value is None else f"{value:.3f}@{step}" for _, value, step in per_seed)
    return f"**{_fmt(median, '.3f')}** ({each})"


def _versus(row: dict, kind: str, fastest: float | None) -> str:
    speed = row[f"{kind}_per_s"]
    return f"{speed / fastest:.2f}×" if speed and fastest else "—"


def table(result: dict) -> str:
    """The markdown table of one task over its seeds (``combine``'s dict)."""
    b = result["task"] == "B"
    seeds = result["seeds"]
    peers = [row for row in result["rows"] if row["library"] in PEERS]
    fastest = {
        kind: max((row[f"{kind}_per_s"] for row in peers if row[f"{kind}_per_s"]), default=None)
        for kind in INFER_KINDS
    }
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
    nll = "best test bits/dim" if b else "best test NLL"
    nll_head = f"{nll} (step)" if len(seeds) == 1 else f"{nll}: **median** (each seed @ step)"
    n = result["inference_n"]
    lines = [
        f"Task {result['task']}: {result['model']}, {result['steps']} steps, {seed_text}",
        "",
        "| library | params | train steps/s | ÷ floor"
        + (" (masked) | ÷ dense floor" if b else "")
        + f" | ÷ flowlib | {nll_head} | log_prob/s (n = {n:,}) | × fastest peer"
        + f" | sample/s (n = {n:,}) | × fastest peer |",
        "|---|" + "---:|" * (10 if b else 9),
    ]
    for row in result["rows"]:
        if row["failure"] and row["steps_per_s"] is None:
            lines.append(f"| {row['library']} | — | failed: {row['failure']} |" + " |" * (8 if b else 7))
            continue
        best = _best_text(row, "best_test_bits_per_dim" if b else "best_test_nll", len(seeds))
        if row["library"].startswith("floor"):
            best = "—"
        if row["failure"]:
            best += f" (failed: {row['failure']})"
        lines.append(
            f"| {row['library']} | {row['params']:,} | {_fmt(row['steps_per_s'], '.1f')} | "
            f"{_fmt(row['x_floor'], '.2f')}× | "
            + (f"{_fmt(row['x_dense_floor'], '.2f')}× | " if b else "")
            + f"{_fmt(row['x_flowlib'], '.2f')}× | {best} | "
            f"{_fmt(row['log_prob_per_s'], ',.0f')} | {_versus(row, 'log_prob', fastest['log_prob'])} | "
            f"{_fmt(row['sample_per_s'], ',.0f')} | {_versus(row, 'sample', fastest['sample'])} |"
        )
    shortest = min((row["shortest_window_s"] for row in result["rows"] if row["shortest_window_s"]), default=None)
    timed = max((row["timed_windows"] for row in result["rows"]), default=0)
    disturbed = sum(row["disturbed_windows"] for row in result["rows"])
    lines += [
        "",
        f"{timed} timed windows per model after one warm-up window per seed"
        + (" (the ratios and steps/s are medians over all seeds' rounds)" if len(seeds) > 1 else "")
        + f"; shortest window {_fmt(shortest, '.2f')} s"
        + (" (the protocol asks for >= 0.5 s)" if shortest and shortest < 0.5 else "")
        + f"; {disturbed} of {timed * len(result['rows'])} windows ran at less than half their model's median"
        + (" (other load): rerun on a quieter machine or with --threads 1" if disturbed > timed else "")
        + f". Inference: n / the median time of a call of log_prob(n points) or sample(n), gradients off, "
        f"{result['inference_rounds']} interleaved rounds per seed, each call repeated for >= 0.5 s per round; "
        "× fastest peer: rate ÷ the fastest peer's (above 1 = faster).",
    ]
    return "\n".join(lines)


def flowlib_commit() -> str:
    """The repository's commit, with ``+dirty`` when flowlib/ has uncommitted changes (results depend on them)."""
    import subprocess

    def git(*words: str) -> subprocess.CompletedProcess[str]:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(["git", *words], cwd=root, capture_output=True, text=True, check=False)

    try:
        head, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "flowlib")
    except OSError:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("flowlib", "zuko", "nflows", "normflows", "numpy", "scikit-learn"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["A", "B", "C", "all"], default="all")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps per model (default: the protocol's, 1500; B 3000)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 steps, results to *-quick files")
    parser.add_argument("--libs", default=",".join(LIBRARIES), help="comma-separated subset of " + ",".join(LIBRARIES))
    parser.add_argument(
        "--extras", action="store_true", help="also race flowlib with its own zero-initialized last layers, flowlib through torch.compile (compile_log_prob), and on B a spline MAF"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help=f"torch threads (protocol: {THREADS}; 1 is far steadier when other jobs share the CPUs)",
    )
    parser.add_argument("--seed", type=int, default=None, help="one seed (default 0); see --seeds")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, metavar="S",
        help="race once per seed; the tables give the median best test NLL over the seeds (and each seed's)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--note", default="", help="free text stored with the results (e.g. what else was running)")
    args = parser.parse_args(argv)
    steps = 300 if args.quick else args.steps
    if steps is not None and steps < 2 * WINDOW:
        parser.error(f"--steps must be at least {2 * WINDOW} (one warm-up and one timed window)")
    if args.seed is not None and args.seeds is not None:
        parser.error("give --seed or --seeds, not both")
    seeds = args.seeds if args.seeds is not None else [0 if args.seed is None else args.seed]
    if len(set(seeds)) != len(seeds):
        parser.error(f"--seeds repeats a seed: {seeds}")
    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(libs) - set(LIBRARIES)
    if unknown:
        parser.error(f"unknown libraries {sorted(unknown)}; choose from {LIBRARIES}")

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    started = datetime.datetime.now().astimezone()
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "versions": versions(),
        "flowlib_commit": flowlib_commit(),
        "torch_threads": torch.get_num_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "cpu_count": os.cpu_count(),
        "machine": f"{platform.system()} {platform.machine()} {platform.processor()}".strip(),
        "seeds": seeds,
        "batch": BATCH,
        "window_steps": WINDOW,
        "note": args.note,
    }
    print(
        f"race: {meta['date']}, torch {torch.__version__}, {args.threads} threads, load average {load_start[0]:.2f}",
        flush=True,
    )
    results = []
    for name in ["A", "B", "C"] if args.task == "all" else [args.task]:
        task_steps = steps if steps is not None else (B_STEPS if name == "B" else 1500)
        per_seed = []
        for seed in seeds:
            print(f"task {name}, seed {seed}: {TASKS[name].description}", flush=True)
            per_seed.append(race(TASKS[name], libs, task_steps, seed, args.extras, lambda s: print(s, flush=True)))
        results.append(combine(per_seed))
    load_end = os.getloadavg()
    meta["elapsed_s"] = round((datetime.datetime.now().astimezone() - started).total_seconds(), 1)
    meta["load_average_1min_start_end"] = [round(load_start[0], 2), round(load_end[0], 2)]
    during = [load for r in results for one in r["per_seed"] for load in one["load_1min_per_round"]]
    meta["load_average_1min_during"] = {"median": _median(during), "max": max(during, default=None)}
    # The race's own threads count in the load average while it runs (and for a minute after): judge other
    # jobs by the load before it started and by how far the load during the rounds exceeds its own threads.
    busy = load_start[0] > 0.5 or (max(during, default=0.0) > args.threads + 0.5)
    meta["machine_load"] = (
        "other jobs were using the CPU during this run (1-min load average above 0.5 before the race, or above "
        f"{args.threads} threads + 0.5 during it): absolute steps/s are depressed and noisy; the paired ratios "
        "are the figures to compare"
        if busy
        else f"the machine was otherwise idle (load below 0.5 before the race and below {args.threads} threads "
        "+ 0.5 during it)"
    )

    header = "\n".join(
        [
            (
                f"Date {meta['date']}; flowlib at commit {meta['flowlib_commit']}; "
                f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs; "
                f"zuko {meta['versions']['zuko']}, nflows {meta['versions']['nflows']}, "
                f"normflows {meta['versions']['normflows']}; {meta['elapsed_s']} s in all."
            ),
            f"Seeds {', '.join(map(str, seeds))}. Load average (1 min) at start/end: "
            f"{load_start[0]:.2f}/{load_end[0]:.2f}, after each round: median "
            f"{_fmt(meta['load_average_1min_during']['median'], '.2f')}, max "
            f"{_fmt(meta['load_average_1min_during']['max'], '.2f')} (the race itself adds about "
            f"{args.threads}): {meta['machine_load']}.",
            *([f"Note: {args.note}"] if args.note else []),
        ]
    )
    report = header + "\n\n" + "\n\n".join(table(r) for r in results) + "\n"
    print("\n" + report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = (
        f"race-{args.task}"
        + ("" if args.threads == THREADS else f"-{args.threads}thread")
        + ("-quick" if args.quick else "")
        + ("" if seeds == [0] else "-seed" + ("s" if len(seeds) > 1 else "") + "-".join(map(str, seeds)))
    )
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(f"# flowlib race: `{meta['command']}`\n\n{report}")
    print(f"written: {args.out / (stem + '.json')}, {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
