"""A small training run for tests/test_train_ddp.py, run in one process and under torchrun.

    python -m torch.distributed.run --nproc_per_node=2 --standalone tests/ddp_script.py OUT_DIR

Each rank writes ``OUT_DIR/rank{RANK}.json`` with its history and final parameters.
The global batch (63) is deliberately not a multiple of the number of processes,
and a per-batch random transform is used, to check the Trainer's sharding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from flowlib import Compose, Flow, StandardNormal
from flowlib.bijections import ElementwiseAffine, Linear
from flowlib.train import Trainer

GLOBAL_BATCH = 63
STEPS = 120


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    a = torch.tensor([[1.5, 0.0], [0.9, 0.4]])
    b = torch.tensor([1.0, -2.0])
    train = torch.randn(1000, 2, generator=g) @ a.T + b
    val = torch.randn(301, 2, generator=g) @ a.T + b
    return train, val


def jitter(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fresh noise for every training batch, drawn from the Trainer's generator."""
    return x + 0.05 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def run() -> dict[str, Any]:
    train, val = make_data()
    flow = Flow(
        StandardNormal(2),
        Compose(Linear(2, generator=torch.Generator().manual_seed(0)), ElementwiseAffine(torch.ones(2))),
    )
    trainer = Trainer(flow, lr=0.02, batch_size=GLOBAL_BATCH, grad_clip=5.0, eval_every=10, device="cpu", seed=7)
    trainer.fit(train, val, steps=STEPS, train_transform=jitter)
    return {
        "rank": trainer.rank,
        "world_size": trainer.world_size,
        "history": [{k: v for k, v in entry.items() if k != "elapsed"} for entry in trainer.history],
        "best_val_loss": trainer.best_val_loss,
        "params": {name: p.detach().tolist() for name, p in flow.named_parameters()},
    }


if __name__ == "__main__":
    result = run()
    out = Path(sys.argv[1])
    (out / f"rank{result['rank']}.json").write_text(json.dumps(result))
    if dist.is_initialized():
        dist.destroy_process_group()
