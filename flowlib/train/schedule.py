r"""The batch schedule: which training rows each step sees, and the random stream of the batch transform.

Every epoch draws a fresh permutation of the ``n`` training rows from a
``torch.Generator`` seeded with the Trainer's ``seed`` and cuts it into
``n // batch_size`` batches; the last ``n % batch_size`` indices of each
permutation are skipped (they are drawn in other epochs). A second generator,
seeded with ``seed + 1`` on the training device, feeds the ``train_transform``
(fresh dequantization noise for every batch, for instance).

All of this state is in :meth:`BatchSchedule.state_dict`, so that a run
continued from a checkpoint can see the same batches as an uninterrupted one.

Example:
    >>> schedule = BatchSchedule(seed=0)
    >>> schedule.start(num_samples=10, batch_size=4)   # 2 batches per epoch, 2 rows skipped
    >>> [schedule.next_indices().tolist() for _ in range(3)]
    [[4, 1, 7, 5], [3, 9, 0, 8], [3, 9, 4, 2]]
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

__all__ = ["BatchSchedule"]


class BatchSchedule:
    """The order of the training batches, one seeded permutation per epoch, and the transform's generator.

    Args:
        seed: seeds the permutations (``seed``) and the transform's generator (``seed + 1``).

    Attributes:
        generator: the CPU generator the permutations are drawn from.
        order: the current epoch's permutation (``None`` before the first batch of a fit).
        position: how many batches of ``order`` have been used.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._transform_generator: torch.Generator | None = None
        self.num_samples = 0
        self.batch_size = 0
        self.order: Tensor | None = None
        self.position = 0

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch: ``num_samples // batch_size``."""
        return self.num_samples // self.batch_size

    def start(self, num_samples: int, batch_size: int) -> None:
        """Begin a fit on ``num_samples`` rows in batches of ``batch_size``: its first batch opens a new epoch."""
        if not 1 <= batch_size <= num_samples:
            raise ValueError(f"BatchSchedule: need 1 <= batch_size <= num_samples, got {batch_size} and {num_samples}")
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.order, self.position = None, self.steps_per_epoch

    def next_indices(self) -> Tensor:
        """The row indices of the next batch (a CPU ``int64`` tensor of ``batch_size`` indices)."""
        if self.position >= self.steps_per_epoch:
            self.order, self.position = torch.randperm(self.num_samples, generator=self.generator), 0
        assert self.order is not None
        index = self.order[self.position * self.batch_size : (self.position + 1) * self.batch_size]
        self.position += 1
        return index

    def transform_generator(self, device: torch.device) -> torch.Generator:
        """The generator handed to ``train_transform``: created on ``device`` with ``seed + 1`` at first use."""
        if self._transform_generator is None:
            self._transform_generator = torch.Generator(device=device).manual_seed(self.seed + 1)
        return self._transform_generator

    def state_dict(self) -> dict[str, Any]:
        """Everything that decides the next batches: generator states, the current permutation and position."""
        return {
            "generator": self.generator.get_state(),
            "transform_generator": None if self._transform_generator is None else self._transform_generator.get_state(),
            "transform_device": None if self._transform_generator is None else self._transform_generator.device.type,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "order": self.order,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        """Restore what :meth:`state_dict` returned; the transform's generator is recreated on ``device``.

        A generator's state only fits a generator of the same kind: if the
        transform's generator was saved on another type of device (a CUDA run
        continued on the CPU), it starts again from ``seed + 1`` with a warning,
        and the transform's noise no longer matches that of an uninterrupted run.
        """
        device = torch.device(device if device is not None else "cpu")
        self.generator.set_state(state["generator"].cpu())
        self._transform_generator = None
        if state.get("transform_generator") is not None:
            saved_on = state.get("transform_device") or "cpu"
            generator = self.transform_generator(device)
            if saved_on == device.type:
                generator.set_state(state["transform_generator"].cpu())
            else:
                warnings.warn(
                    f"BatchSchedule: the transform's generator was saved on {saved_on!r} and cannot continue on "
                    f"{device.type!r}; it starts again from seed + 1, so the batch noise differs from an "
                    "uninterrupted run",
                    stacklevel=2,
                )
        self.num_samples, self.batch_size = int(state["num_samples"]), int(state["batch_size"])
        self.order = None if state["order"] is None else state["order"].cpu()
        self.position = int(state["position"])
