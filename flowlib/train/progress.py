r"""What a fit reports while it runs: the mean training loss between history entries, and a progress bar.

Example:
    >>> window = LossWindow()
    >>> window.add(3.0)
    >>> window.add(1.0)
    >>> window.mean_and_reset(), window.count
    (2.0, 0)
"""

from __future__ import annotations

from typing import Any

__all__ = ["LossWindow", "ProgressBar"]


class LossWindow:
    """The training losses since the last history entry; their mean is the entry's ``train_loss``."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, loss: float) -> None:
        """Add one step's mean loss."""
        self.total, self.count = self.total + loss, self.count + 1

    def mean_and_reset(self) -> float:
        """The mean of the losses added since the last call; start a new window."""
        mean = self.total / self.count
        self.total, self.count = 0.0, 0
        return mean

    def state_dict(self) -> dict[str, Any]:
        """The running sum and count (empty at the end of every fit)."""
        return {"total": self.total, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.total, self.count = float(state["total"]), int(state["count"])


class ProgressBar:
    """A ``tqdm.auto`` bar over the steps of a fit (tqdm is imported only when shown), or nothing.

    Args:
        total: the number of steps.
        show: draw the bar; with ``False`` every method does nothing.
        initial: steps already done (a resumed fit).
    """

    def __init__(self, total: int, show: bool, initial: int = 0) -> None:
        self._bar = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True)

    def step(self) -> None:
        """One more step done."""
        if self._bar is not None:
            self._bar.update(1)

    def show(self, entry: dict[str, Any]) -> None:
        """Show the losses of a history entry next to the bar."""
        if self._bar is not None:
            self._bar.set_postfix({k: round(v, 4) for k, v in entry.items() if k.endswith("loss") and v is not None})

    def close(self) -> None:
        """Close the bar (``contextlib.closing`` calls it)."""
        if self._bar is not None:
            self._bar.close()
