"""ActNorm's data-dependent initialization under torch.distributed, for tests/test_glow.py.

    python -m torch.distributed.run --nproc_per_node=2 --standalone tests/glow_ddp_script.py OUT_DIR

Every rank initializes the same ActNorm on a batch of its own: different
values, different offsets and scales per channel, and a different batch size.
Each writes its parameters to ``OUT_DIR/rank{RANK}.json``; the test checks that
they agree, and that they are the statistics of all ranks' batches together.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from flowlib.bijections import ActNorm

EVENT_SHAPE = (3, 2, 2)


def rank_batch(rank: int) -> torch.Tensor:
    """The batch rank ``rank`` sees: ``5 + 4 * rank`` images with rank-dependent channel statistics."""
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(5 + 4 * rank, *EVENT_SHAPE, generator=g, dtype=torch.float64)
    offsets = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64).reshape(3, 1, 1) * (1 + 3 * rank)
    return x * (1.0 + rank) + offsets


def run(rank: int) -> dict[str, object]:
    layer = ActNorm(EVENT_SHAPE).double()
    layer(rank_batch(rank))
    return {
        "rank": rank,
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "initialized": bool(layer.initialized),
        "loc": layer.loc.tolist(),
        "log_scale": layer.log_scale.tolist(),
    }


if __name__ == "__main__":
    dist.init_process_group("gloo")
    result = run(dist.get_rank())
    (Path(sys.argv[1]) / f"rank{result['rank']}.json").write_text(json.dumps(result))
    dist.destroy_process_group()
