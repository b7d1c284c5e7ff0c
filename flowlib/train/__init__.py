r"""Training a flow by maximum likelihood: the :class:`Trainer` every chapter uses.

A flow is fitted by minimizing the mean negative log-likelihood of the data,

.. math::

    \mathcal{L}(\theta) = -\frac{1}{B}\sum_{b=1}^{B} \log p_\theta(x_b),

which, up to the (constant) entropy of the data, is the KL divergence
:math:`\mathrm{KL}(p_{\text{data}} \,\|\, p_\theta)`. The :class:`Trainer` does
that with Adam on mini-batches drawn from a seeded generator, and takes care of
the rest. One module per job:

* :mod:`~flowlib.train.trainer`: the :class:`Trainer` and its ``fit`` loop;
* :mod:`~flowlib.train.devices`: :func:`resolve_device`, bf16 mixed precision;
* :mod:`~flowlib.train.distributed`: several GPUs under ``torchrun`` (DDP);
* :mod:`~flowlib.train.schedule`: :class:`BatchSchedule`, the seeded batch order;
* :mod:`~flowlib.train.early_stopping`: :class:`EarlyStopping`, best loss and weights;
* :mod:`~flowlib.train.progress`: the mean loss between history entries, the progress bar;
* :mod:`~flowlib.train.checkpoint`: checkpoint files (``weights_only=True``), written atomically;
* :mod:`~flowlib.train.resume`: :class:`~flowlib.train.resume.FitProgress`, what a killed fit
  needs to continue exactly (``Trainer(checkpoint_every=N)``, ``fit(..., resume=True)``).

Example:
    >>> import torch
    >>> from flowlib import Flow, StandardNormal
    >>> from flowlib.bijections import Linear
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(1000, 2) * torch.tensor([2.0, 0.5]) + 1.0
    >>> trainer = Trainer(Flow(StandardNormal(2), Linear(2)), lr=0.05, batch_size=250, device="cpu")
    >>> trainer = trainer.fit(x[:800], val=x[800:], epochs=40)
    >>> len(trainer.history), sorted(trainer.history[0])   # one entry per epoch by default
    (40, ['elapsed', 'epoch', 'step', 'train_loss', 'val_loss'])
    >>> trainer.history[-1]["train_loss"] < trainer.history[0]["train_loss"]
    True
"""

from .checkpoint import CHECKPOINT_FORMAT
from .devices import resolve_device
from .early_stopping import EarlyStopping
from .schedule import BatchSchedule
from .trainer import BatchTransform, Trainer

__all__ = ["Trainer", "resolve_device", "BatchTransform", "BatchSchedule", "EarlyStopping", "CHECKPOINT_FORMAT"]
