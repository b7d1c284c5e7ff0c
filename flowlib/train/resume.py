r"""The progress of one :meth:`Trainer.fit <flowlib.train.Trainer.fit>` call, as a checkpoint stores it.

A fit that is killed and continued from its last checkpoint must see the same
batches, the same noise, the same early-stopping decisions and the same
history as one that never stopped. Everything that decides those, besides the
model and the optimizer, is in :class:`FitProgress`: where the fit started and
how long it runs, the mean-loss window's partial sums, the batch schedule
(generator states, current permutation and position), early stopping (best
loss and step, evaluations without improvement, best weights) and torch's
global CPU random state (for models that draw from it while training).

:meth:`FitProgress.check_continues` refuses to continue a fit with different
settings, naming each difference.

Example:
    >>> progress = FitProgress(start_step=0, total_steps=100, num_samples=1000, batch_size=50, eval_every=10,
    ...                        patience=3, restore_best=True)
    >>> progress.remaining(step=40)
    60
    >>> other = FitProgress.from_state_dict(progress.state_dict())
    >>> other.check_continues(total_steps=100, num_samples=1000, batch_size=50, eval_every=10, patience=3,
    ...                       restore_best=True)
    >>> other.check_continues(total_steps=200, num_samples=1000, batch_size=50, eval_every=10, patience=3,
    ...                       restore_best=True)
    Traceback (most recent call last):
    ...
    ValueError: Trainer.fit(resume=True): the checkpoint's fit had total_steps=100, this call has 200; ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .progress import LossWindow

__all__ = ["FitProgress"]

_SETTINGS = ("total_steps", "num_samples", "batch_size", "eval_every", "patience", "restore_best")


@dataclass
class FitProgress:
    """Where a fit is: its first step, its budget and settings, the loss window, and whether it ended.

    The schedule, early-stopping and random states are kept by the Trainer and
    added to :meth:`state_dict` by it; :attr:`extra` carries them on the way back.

    Attributes:
        start_step: the Trainer's ``step`` when the fit began.
        total_steps: the fit's budget in steps (``steps`` and ``epochs`` worked out).
        num_samples, batch_size, eval_every, patience, restore_best: the settings
            that decide the batches and the history; a resumed fit must have the same.
        window: the training losses since the last history entry.
        finished: the fit ran to its end (its budget, or early stopping).
        extra: the rest of a loaded checkpoint's ``"fit"`` entry (schedule, stopping, rng).
    """

    start_step: int
    total_steps: int
    num_samples: int
    batch_size: int
    eval_every: int
    patience: int | None
    restore_best: bool
    window: LossWindow = field(default_factory=LossWindow)
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def remaining(self, step: int) -> int:
        """Steps left when the Trainer is at ``step`` (0 once the fit has finished)."""
        return 0 if self.finished else max(0, self.start_step + self.total_steps - step)

    def check_continues(self, **settings: Any) -> None:
        """Raise :class:`ValueError` unless ``settings`` (``total_steps``, ``num_samples``, ``batch_size``,
        ``eval_every``, ``patience``, ``restore_best``) equal this fit's, naming every difference."""
        differences = [
            f"the checkpoint's fit had {name}={getattr(self, name)!r}, this call has {settings[name]!r}"
            for name in _SETTINGS
            if settings[name] != getattr(self, name)
        ]
        if differences:
            raise ValueError(
                "Trainer.fit(resume=True): " + "; ".join(differences) + "; resume with the same data, batch size, "
                "steps/epochs, eval_every, patience and restore_best as the interrupted fit"
            )

    def state_dict(self) -> dict[str, Any]:
        """Numbers and the window's sums (the Trainer adds ``schedule``, ``stopping`` and ``rng``)."""
        state = {name: getattr(self, name) for name in ("start_step", *_SETTINGS, "finished")}
        state["window"] = self.window.state_dict()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FitProgress:
        """Rebuild from :meth:`state_dict` (plus any extra entries, kept in :attr:`extra`)."""
        known = {"start_step", *_SETTINGS, "finished", "window"}
        progress = cls(
            start_step=int(state["start_step"]),
            total_steps=int(state["total_steps"]),
            num_samples=int(state["num_samples"]),
            batch_size=int(state["batch_size"]),
            eval_every=int(state["eval_every"]),
            patience=None if state["patience"] is None else int(state["patience"]),
            restore_best=bool(state["restore_best"]),
            finished=bool(state["finished"]),
            extra={k: v for k, v in state.items() if k not in known},
        )
        progress.window.load_state_dict(state["window"])
        return progress

