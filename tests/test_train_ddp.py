"""DistributedDataParallel: 2 CPU processes (gloo) with global batch B train like 1 process with batch B.

The runs are not bit-identical: under DDP each rank sums the NLL of its half of
the batch and the gradients are averaged by an all-reduce, so the float32
gradient is summed in a different order than in one process (a relative
difference of about 1e-7 per step, which Adam carries along). Validation losses
are summed in float64 and all-reduced. Hence a relative tolerance of 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from . import ddp_script

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        str(ROOT / "tests" / "ddp_script.py"), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout}\n{done.stderr}"
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    # every rank ends with the same weights and records the same (all-reduced) history
    assert ranks[0]["params"] == ranks[1]["params"]
    assert ranks[0]["history"] == ranks[1]["history"]

    single = ddp_script.run()
    assert single["world_size"] == 1
    distributed = ranks[0]
    assert len(distributed["history"]) == len(single["history"]) == ddp_script.STEPS // 10
    for one, two in zip(single["history"], distributed["history"]):
        assert one["step"] == two["step"] and one["epoch"] == two["epoch"]
        for key in ("train_loss", "val_loss"):
            assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), (key, one, two)
    assert distributed["best_val_loss"] == pytest.approx(single["best_val_loss"], rel=1e-5)
    for name, value in single["params"].items():
        torch.testing.assert_close(torch.tensor(distributed["params"][name]), torch.tensor(value), rtol=1e-4, atol=1e-5)
    # and training did something: the loss went down
    assert single["history"][-1]["val_loss"] < single["history"][0]["val_loss"] - 0.05
