r"""Prove that a change to flowlib leaves its arithmetic bit-identical: dump the outputs, change, dump, compare.

A speed-up of flowlib is only acceptable if every number it computes stays the same to the last bit
(the chapters pin flowlib's float arithmetic through nbval). This script records, for the race's
flowlib models (tasks A, B and C, the race's initialization) and for a small model of every family
that goes through the code paths a speed-up may touch (half, alternating, checkerboard and channel
masks, a context, splines, Glow, MAF and IAF, NICE), with the input checks on:

* ``log_prob`` of a fixed batch, the loss (mean NLL) and the gradient of every parameter;
* the bijection's ``inverse`` of fixed noise (sampling without the random draw) and its log-det;
* ``sample(n)`` after ``torch.manual_seed``;
* every parameter after 20 Adam steps on fixed batches (A, B and C), and the losses on the way.

Run it with the old and the new flowlib and compare (``torch.equal`` on every tensor)::

    PYTHONPATH=old-flowlib benchmarks/.venv/bin/python benchmarks/bit_identity.py dump before.pt
    benchmarks/.venv/bin/python benchmarks/bit_identity.py dump after.pt
    benchmarks/.venv/bin/python benchmarks/bit_identity.py compare before.pt after.pt

(``old-flowlib/`` holding a copy of the old ``flowlib/`` package). One torch thread (``--threads``); a few seconds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import race  # noqa: E402  (the race's models and data)

TRAIN_STEPS = 20


def small_models() -> dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]]:
    """Small flows of every family a speed-up may touch: name -> (builder, event shape, context features)."""
    from flowlib import models

    return {
        "nice-4": (lambda: models.nice(4, layers=4, hidden=(16,)), (4,), 0),
        "realnvp-5-alternating": (lambda: models.realnvp(5, layers=4, hidden=(16,), mask="alternating"), (5,), 0),
        "realnvp-3-context": (lambda: models.realnvp(3, layers=4, hidden=(16,), context_features=2), (3,), 2),
        "spline-3": (lambda: models.spline_flow(3, layers=3, hidden=(16,)), (3,), 0),
        "spline-4-alternating": (lambda: models.spline_flow(4, layers=2, hidden=(16,), mask="alternating"), (4,), 0),
        "multiscale-realnvp": (lambda: models.multiscale_realnvp((1, 8, 8), hidden_channels=8), (1, 8, 8), 0),
        "glow": (lambda: models.glow((1, 8, 8), levels=2, steps=2, hidden_channels=8), (1, 8, 8), 0),
        "maf-6": (lambda: models.maf(6, layers=3, hidden=(16,)), (6,), 0),
        "maf-6-spline": (lambda: models.maf(6, layers=2, hidden=(16,), transform="spline"), (6,), 0),
        "iaf-6": (lambda: models.iaf(6, layers=2, hidden=(16,)), (6,), 0),
    }


def randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Give every parameter small random values (zero-initialized last layers would hide most of the arithmetic)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def record(name: str, flow: nn.Module, x: Tensor, context: Tensor | None, out: dict[str, Tensor]) -> None:
    """log_prob, loss, gradients, inverse of fixed noise and a seeded sample of ``flow``, under ``name/...``."""
    flow.zero_grad(set_to_none=True)
    kwargs = {} if context is None else {"context": context}
    log_prob = flow.log_prob(x, **kwargs)
    loss = -log_prob.mean()
    loss.backward()
    out[f"{name}/log_prob"] = log_prob.detach()
    out[f"{name}/loss"] = loss.detach()
    for key, p in flow.named_parameters():
        if p.grad is not None:
            out[f"{name}/grad/{key}"] = p.grad.detach().clone()
    with torch.no_grad():
        shape = (x.shape[0], *flow.bijection.output_event_shape)
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        inverse, logdet = flow.bijection.inverse(noise, context)
        out[f"{name}/inverse"], out[f"{name}/inverse_logdet"] = inverse, logdet
        torch.manual_seed(2)
        out[f"{name}/sample"] = flow.sample(x.shape[0], **kwargs) if context is None else flow.sample(context=context)


def dump(path: Path, threads: int = 1) -> None:
    torch.set_num_threads(threads)
    out: dict[str, Tensor] = {}
    generator = torch.Generator().manual_seed(0)
    for name, (build, shape, context_features) in small_models().items():
        torch.manual_seed(0)
        flow = build()
        randomize(flow, generator)
        x = torch.randn((32, *shape), generator=generator)
        if len(shape) == 3:
            x = torch.rand((32, *shape), generator=generator)  # images in [0, 1)
        context = torch.randn(32, context_features, generator=generator) if context_features else None
        record(name, flow, x, context, out)
    for task_name in ("A", "B", "C"):
        task = race.TASKS[task_name]
        torch.manual_seed(0)
        if task_name == "B":
            digits = race.digits_data(0)
            flow, *_ = race.build_flowlib_maf()
            batches = race.digits_batches(digits, race.WINDOW, 0)(0)[:TRAIN_STEPS]
        else:
            train, _ = race.moons_data(0)
            flow, *_ = race.build_flowlib(task)
            batches = race.batch_plan(train, TRAIN_STEPS, 0)
        name = f"race-{task_name}"
        record(name, flow, batches[0], None, out)
        optimizer = torch.optim.Adam(flow.parameters(), lr=race.LR)
        losses = []
        for x in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = -flow.log_prob(x).mean()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        out[f"{name}/train_losses"] = torch.stack(losses)
        for key, p in flow.named_parameters():
            out[f"{name}/trained/{key}"] = p.detach().clone()
        record(f"{name}-trained", flow, batches[-1], None, out)
    torch.save(out, path)
    print(f"{len(out)} tensors written to {path}")


def compare(before: Path, after: Path) -> int:
    old, new = torch.load(before), torch.load(after)
    missing = sorted(set(old) ^ set(new))
    differ = [key for key in sorted(set(old) & set(new)) if not torch.equal(old[key], new[key])]
    for key in missing:
        print(f"only in one file: {key}")
    for key in differ:
        print(f"differs: {key} (max abs difference {(old[key] - new[key]).abs().max().item():.3g})")
    print(f"{len(set(old) & set(new))} tensors compared with torch.equal: {len(differ)} differ, {len(missing)} missing")
    return 1 if differ or missing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("dump")
    one.add_argument("path", type=Path)
    one.add_argument("--threads", type=int, default=1, help="torch threads (the race runs with 2)")
    both = sub.add_parser("compare")
    both.add_argument("before", type=Path)
    both.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "dump":
        dump(args.path, args.threads)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    raise SystemExit(main())
