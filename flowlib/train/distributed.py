r"""Several processes under ``torchrun``: ranks, process group, sharded batches, and DistributedDataParallel.

Every rank draws the same *global* batch from the shared seed and keeps the
slice ``[rank::world_size]`` (:func:`shard`); each rank's loss is its share of
the global mean, so that the gradient DDP averages equals that of one process
with the whole batch. Without ``torchrun`` everything here is the identity:
rank 0 of a world of 1.

Example:
    >>> import torch
    >>> shard(torch.arange(7), rank=1, world_size=2).tolist()
    [1, 3, 5]
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "ProcessInfo",
    "process_info",
    "setup_process",
    "shard",
    "check_same_data_on_all_ranks",
    "LogProb",
    "wrap_model",
]


class ProcessInfo(NamedTuple):
    """This process's place in a ``torchrun`` job: ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` alone."""

    rank: int
    world_size: int
    local_rank: int


def process_info() -> ProcessInfo:
    """``(rank, world_size, local_rank)`` from an initialized process group or torchrun's variables.

    Example:
        >>> process_info().world_size >= 1
        True
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return ProcessInfo(dist.get_rank(), dist.get_world_size(), local_rank)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessInfo(0, 1, 0)
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} is set but this torch has no torch.distributed support")
    return ProcessInfo(int(os.environ["RANK"]), world, local_rank)


def setup_process(device: torch.device, local_rank: int) -> torch.device:
    """Give this rank its device and join the process group; return the device.

    A CUDA device without an index becomes ``cuda:LOCAL_RANK`` and is made the
    current device. The process group is initialized unless the script did it
    (backend ``"nccl"`` on CUDA, ``"gloo"`` on the CPU).
    """
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shard(batch: Tensor | None, rank: int, world_size: int) -> Tensor | None:
    """This rank's rows of a global batch: ``batch[rank::world_size]`` (``None`` stays ``None``)."""
    return None if batch is None else batch[rank::world_size]


def check_same_data_on_all_ranks(
    train: Tensor, val: Tensor | None, batch_size: int, seed: int, device: torch.device
) -> None:
    """Raise :class:`ValueError` on every rank unless all ranks were given the same data, batch size and seed.

    Compares sizes and float64 sums, all-reduced with min and max.
    """
    summary = [float(train.shape[0]), float(batch_size), float(seed), float(train.double().sum())]
    summary += [0.0, 0.0] if val is None else [float(val.shape[0]), float(val.double().sum())]
    low = torch.tensor(summary, dtype=torch.float64, device=device)
    high = low.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise ValueError(
            "Trainer.fit: the processes were given different data, batch sizes or seeds; under torchrun every "
            "rank must pass the same full data set (the Trainer shards each global batch itself)"
        )


class LogProb(nn.Module):
    """Wrap a model so that ``forward`` is its ``log_prob``: what DistributedDataParallel calls.

    ``Flow.forward`` already is ``log_prob``; the wrapper makes any module with a
    ``log_prob(x, context)`` method trainable under DDP, whose gradient hooks
    fire only through ``forward``.

    Example:
        >>> from flowlib import Flow, StandardNormal
        >>> from flowlib.bijections import ElementwiseAffine
        >>> LogProb(Flow(StandardNormal(1), ElementwiseAffine(2.0)))(torch.zeros(3, 1)).shape
        torch.Size([3])
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.model.log_prob(x, context)


def wrap_model(
    model: nn.Module, device: torch.device, distributed: bool, ddp_kwargs: dict[str, Any] | None = None
) -> nn.Module:
    """The module the training step calls: :class:`LogProb` of ``model``, in DDP when ``distributed``."""
    wrapped: nn.Module = LogProb(model)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(wrapped, device_ids=device_ids, **(ddp_kwargs or {}))
    return wrapped
