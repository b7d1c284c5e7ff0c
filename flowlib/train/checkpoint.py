r"""Checkpoint files: a plain dict of state dicts, numbers and lists, loadable with ``weights_only=True``.

:meth:`Trainer.save_checkpoint <flowlib.train.Trainer.save_checkpoint>` writes
``{"format": CHECKPOINT_FORMAT, "model", "optimizer", "step", "epoch",
"elapsed", "history", "best_val_loss", "best_step", "generator", "schedule",
"fit", "metadata"}``; ``"fit"`` holds what a killed fit needs to continue
exactly where it was (see :mod:`flowlib.train.resume`). Files written before
``"schedule"``, ``"fit"`` and ``"metadata"`` existed still load.

**Atomic writes.** :func:`atomic_save` writes to a hidden temporary file in
the destination's folder (``.last.pt.<random>.tmp``), flushes it to the disk
(``fsync``), then renames it over the destination (``os.replace``, atomic on
POSIX and Windows) and syncs the folder. A process killed during a save leaves
the previous file whole and, at worst, a temporary file whose name never ends
in ``.pt``; :func:`remove_stale_temporaries` deletes those at the next start.

Example:
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run" / "last.pt"
    >>> write_checkpoint(path, {"step": 3, "weights": torch.ones(2)})
    >>> read_checkpoint(path, torch.device("cpu"))["step"]
    3
    >>> sorted(p.name for p in path.parent.iterdir())   # no temporary file is left behind
    ['last.pt']
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "write_checkpoint",
    "read_checkpoint",
    "atomic_save",
    "atomic_write_text",
    "remove_stale_temporaries",
]

CHECKPOINT_FORMAT = "flowlib.train/1"
"""The ``"format"`` entry of every checkpoint; a file without it is not a Trainer checkpoint.

Version 1 gained the optional entries ``"schedule"``, ``"fit"`` and
``"metadata"``; readers of either vintage ignore entries they do not know, so
the string did not change.
"""

_TMP_SUFFIX = ".tmp"


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: str | os.PathLike[str], write: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = path.parent / f"{_temporary_prefix(path)}{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}"
    # O_EXCL: never write into someone else's file; mode 0o666 less the umask, like any new file
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _sync_folder(path.parent)


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` atomically: temporary file in the same folder, ``fsync``, ``os.replace``.

    Example:
        >>> import tempfile, pathlib, torch
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.pt"
        >>> atomic_save({"w": torch.zeros(1)}, path)
        >>> torch.load(path, weights_only=True)["w"].tolist()
        [0.0]
    """
    _atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, like :func:`atomic_save`."""
    _atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed saves of ``path`` left in its folder; return them.

    Only names of the form ``.{name}.<random>.tmp`` (this module's) and
    ``{name}.tmp`` (earlier flowlib versions) are touched.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / ".last.pt.k2j4.tmp").write_bytes(b"half a checkpoint")
        >>> [p.name for p in remove_stale_temporaries(folder / "last.pt")], list(folder.iterdir())
        (['.last.pt.k2j4.tmp'], [])
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(_temporary_prefix(path) + "*" + _TMP_SUFFIX))
    legacy = path.with_name(path.name + _TMP_SUFFIX)
    if legacy.is_file():
        stale.append(legacy)
    removed = []
    for tmp in stale:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def write_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Save ``{"format": CHECKPOINT_FORMAT, **state}`` to ``path`` (:func:`atomic_save`), creating its folder."""
    atomic_save({"format": CHECKPOINT_FORMAT, **state}, path)


def read_checkpoint(path: str | os.PathLike[str], device: torch.device) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``, its tensors on ``device``.

    Raises:
        ValueError: if the file is not a dict with ``"format": CHECKPOINT_FORMAT``.
    """
    state = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"Trainer.load_checkpoint: {path} is not a checkpoint written by Trainer.save_checkpoint")
    return state
