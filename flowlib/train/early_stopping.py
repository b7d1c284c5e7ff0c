r"""Early stopping: the best validation loss of a fit, the evaluations since it, and its weights.

Example:
    >>> from torch import nn
    >>> model = nn.Linear(1, 1)
    >>> stopping = EarlyStopping(patience=2)
    >>> [stopping.update(loss, step, model) for step, loss in enumerate([3.0, 2.0, 2.5, 2.1], start=1)]
    [True, True, False, False]
    >>> stopping.best_loss, stopping.best_step, stopping.should_stop
    (2.0, 2, True)
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Track the lowest validation loss, stop after ``patience`` evaluations without a lower one.

    :meth:`update` is called with each validation loss. A strictly lower loss
    is an improvement: it becomes :attr:`best_loss` (at :attr:`best_step`), the
    count of evaluations without improvement starts again at 0, and with
    ``keep_weights`` a copy of the model's ``state_dict`` is kept, which
    :meth:`restore` loads back at the end. :attr:`should_stop` turns ``True``
    after ``patience`` evaluations in a row without improvement (never with
    ``patience=None``).

    Args:
        patience: evaluations without improvement before stopping, or ``None``.
        keep_weights: keep a copy of the best weights for :meth:`restore`.
    """

    def __init__(self, patience: int | None = None, keep_weights: bool = True) -> None:
        self.patience = patience
        self.keep_weights = keep_weights
        self.reset()

    def reset(self) -> None:
        """Forget everything: the start of a new fit."""
        self.best_loss: float | None = None
        self.best_step: int | None = None
        self.bad_evaluations = 0
        self.best_weights: dict[str, Tensor] | None = None

    def update(self, loss: float, step: int, model: nn.Module) -> bool:
        """Record the validation loss of ``step``; return whether it improved on the best so far."""
        if self.best_loss is not None and not loss < self.best_loss:
            self.bad_evaluations += 1
            return False
        self.best_loss, self.best_step, self.bad_evaluations = loss, step, 0
        if self.keep_weights:
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return True

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` evaluations in a row brought no improvement."""
        return self.patience is not None and self.bad_evaluations >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the kept best weights into ``model`` (nothing if none were kept) and release the copy."""
        if self.best_weights is not None:
            model.load_state_dict(self.best_weights)
            self.best_weights = None

    def state_dict(self) -> dict[str, Any]:
        """The tracker's state: best loss and step, evaluations without improvement, the kept weights."""
        return {
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "bad_evaluations": self.bad_evaluations,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.best_loss, self.best_step = state["best_loss"], state["best_step"]
        self.bad_evaluations = int(state["bad_evaluations"])
        self.best_weights = state["best_weights"]
