r"""Checkpoint files: a plain dict of state dicts, numbers and lists, loadable with ``weights_only=True``.

:meth:`Trainer.save_checkpoint <flowlib.train.Trainer.save_checkpoint>` writes
``{"format": CHECKPOINT_FORMAT, "model", "optimizer", "step", "epoch",
"elapsed", "history", "best_val_loss", "best_step", "generator"}``. The file is
written next to its destination and renamed, so a crash never leaves half a
checkpoint.

Example:
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run" / "last.pt"
    >>> write_checkpoint(path, {"step": 3, "weights": torch.ones(2)})
    >>> read_checkpoint(path, torch.device("cpu"))["step"]
    3
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_FORMAT", "write_checkpoint", "read_checkpoint"]

CHECKPOINT_FORMAT = "flowlib.train/1"
"""The ``"format"`` entry of every checkpoint; a file without it is not a Trainer checkpoint."""


def write_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Save ``{"format": CHECKPOINT_FORMAT, **state}`` to ``path`` atomically, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike[str], device: torch.device) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``, its tensors on ``device``.

    Raises:
        ValueError: if the file is not a dict with ``"format": CHECKPOINT_FORMAT``.
    """
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"Trainer.load_checkpoint: {path} is not a checkpoint written by Trainer.save_checkpoint")
    return state
