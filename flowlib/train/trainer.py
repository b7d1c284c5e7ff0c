r"""The :class:`Trainer`: fit a flow by maximum likelihood with Adam on mini-batches.

:meth:`Trainer.fit` is a short loop over named steps: check the arguments and
plan the run (:meth:`Trainer._plan_fit`), then for each step take the next
batch (:meth:`Trainer._next_batch`), take one optimizer step on it
(:meth:`Trainer._train_step`), and every ``eval_every`` steps record a history
entry (:meth:`Trainer._record`) and ask early stopping whether to go on
(:meth:`Trainer._should_stop`), and every ``checkpoint_every`` steps write
``last.pt``; at the end write ``last.pt`` and restore the best weights
(:meth:`Trainer._finish_fit`). A fit killed on the way continues from its last
checkpoint with :meth:`Trainer.load_checkpoint` and ``fit(..., resume=True)``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..checks import check_float, check_int
from ..core import check_context, check_tensor
from .checkpoint import read_checkpoint, remove_stale_temporaries, write_checkpoint
from .devices import autocast, float64_device, resolve_device, resolve_mixed_precision
from .distributed import check_same_data_on_all_ranks, process_info, setup_process, shard, wrap_model
from .early_stopping import EarlyStopping
from .progress import ProgressBar
from .resume import FitProgress
from .schedule import BatchSchedule

__all__ = ["Trainer", "BatchTransform"]

BatchTransform = Callable[[Tensor, torch.Generator], Tensor]
"""``train_transform(batch, generator) -> batch``: applied to each training batch on the device."""


@dataclass
class _FitPlan:
    """The checked arguments of one :meth:`Trainer.fit` call and the numbers derived from them."""

    train: Tensor
    train_context: Tensor | None
    val: Tensor | None
    val_context: Tensor | None
    transform: BatchTransform | None
    batch_size: int
    steps_per_epoch: int
    total_steps: int
    eval_every: int


class Trainer:
    r"""Fit a flow (any ``nn.Module`` with ``log_prob(x, context=None)``) by minimizing the mean NLL.

    The Trainer holds the model, an Adam optimizer and the training state
    (:attr:`step`, :attr:`history`, :attr:`best_val_loss`); :meth:`fit` trains
    on tensors and can be called again to train more. Its parts live in their
    own modules: the batch order in :class:`~flowlib.train.schedule.BatchSchedule`,
    the best validation loss in :class:`~flowlib.train.early_stopping.EarlyStopping`,
    devices in :mod:`~flowlib.train.devices`, DDP in
    :mod:`~flowlib.train.distributed`, files in :mod:`~flowlib.train.checkpoint`.

    **Batches.** Every epoch draws a fresh permutation of the training set from
    a ``torch.Generator`` seeded with ``seed`` and cuts it into
    ``len(train) // batch_size`` batches (the last ``len(train) % batch_size``
    indices of each permutation are skipped; they are drawn in other epochs).
    Two Trainers built alike, with the same ``seed`` and the same calls, give
    identical histories. The model's initialization is not the Trainer's: seed
    torch before building the model.

    **Loss.** ``-log_prob(x).float().sum() / B`` for a global batch of ``B``
    samples, computed in float32 outside any autocast region.

    **Mixed precision.** With ``mixed_precision=True`` (the default ``"auto"``
    turns it on for CUDA devices with bf16 support, off on CPU and MPS) the
    model's ``log_prob`` runs under ``torch.autocast("cuda", dtype=torch.bfloat16)``.
    The layers keep their log-determinants and the base log-probability in
    float32; the Trainer only reduces the result in float32. bf16 has float32's
    range, so no gradient scaling is needed.

    **Validation and early stopping.** Every ``eval_every`` optimizer steps
    (default: once per epoch), and once at the end of :meth:`fit`, a
    :attr:`history` entry is appended: ``step``, ``epoch`` (fractional epochs
    so far), ``train_loss`` (mean of the batch losses since the previous
    entry), ``val_loss`` (mean NLL of the whole validation set, or ``None``)
    and ``elapsed`` (seconds of :meth:`fit` so far). Each :meth:`fit` call
    tracks the best validation loss it sees (:attr:`best_val_loss`,
    :attr:`best_step`); with ``patience`` it stops after that many evaluations
    without improvement; at the end it restores the weights of the best
    evaluation (``restore_best``, default ``True``; the optimizer state is
    left as it is).

    **NaN and Inf.** If a training loss or the gradient norm is not finite the
    Trainer raises :class:`FloatingPointError` naming the step and epoch,
    *before* the optimizer step, so the weights are those before that step.

    **Several GPUs.** Run the same script with ``torchrun --nproc_per_node=N``
    (the variables ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` are then set). The
    Trainer initializes the process group if the script has not (backend
    ``"nccl"`` on CUDA, ``"gloo"`` on the CPU), puts the model on the GPU
    ``LOCAL_RANK`` (for ``device="auto"`` or ``"cuda"``) and wraps it in
    ``DistributedDataParallel``. ``batch_size`` is the **global** batch: every
    rank draws the same global batch indices from the shared seed and keeps
    the slice ``[rank::world_size]``; each rank's loss is its share of the
    *global* mean (sum over its slice times ``world_size / B``), so the
    averaged gradient equals that of one process with batch ``B``, even when
    ``B`` is not a multiple of ``N``. Losses are all-reduced, so every rank
    records the same history and makes the same early-stopping decision;
    validation is sharded the same way and all-reduced. Every rank must pass
    the same full data to :meth:`fit` (checked). Only rank 0 shows the
    progress bar and writes checkpoints. Before the first step, one no-grad
    forward pass on the first global batch runs on every rank, so layers
    with data-dependent initialization (actnorm) start identical everywhere.

    **Surviving a killed run.** With ``checkpoint_dir`` and ``checkpoint_every``
    the Trainer writes ``last.pt`` every ``checkpoint_every`` steps (atomically:
    a run killed while saving keeps the previous file). The checkpoint holds,
    besides the weights and Adam's state, everything that decides what comes
    next: the step, the history, the mean-loss window's partial sums, the batch
    schedule (generator states, current permutation and position, the
    transform's generator), early stopping (best loss and step, evaluations
    without improvement, best weights) and torch's global CPU random state. A
    new process builds the same model and Trainer, calls
    :meth:`load_checkpoint` and then :meth:`fit` with the same arguments and
    ``resume=True``: it does the remaining steps of the interrupted fit and
    ends with the weights and history of a run that was never interrupted, bit
    for bit on the CPU (apart from the wall-clock ``elapsed``).

    Args:
        flow: the model: a :class:`flowlib.Flow` or any ``nn.Module`` with
            ``log_prob(x, context=None) -> Tensor (batch,)``. It is moved to
            the device in place.
        lr: Adam's learning rate.
        weight_decay: Adam's L2 penalty.
        batch_size: global batch size; reduced to ``len(train)`` if larger.
        grad_clip: if given, clip the gradient's global 2-norm to this value.
        eval_every: optimizer steps between history entries (and validations);
            default one epoch.
        patience: stop after this many evaluations without a better
            validation loss (needs ``val``); ``None`` never stops early.
        restore_best: load the best-validation weights at the end of :meth:`fit`.
        device: see :func:`resolve_device`.
        mixed_precision: ``"auto"``, ``True`` (needs CUDA) or ``False``.
        seed: seeds the batch order (and the generator given to ``train_transform``).
        progress: show a ``tqdm`` progress bar (``tqdm.auto``, imported only then).
        checkpoint_dir: if given, :meth:`fit` writes ``best.pt`` there whenever
            the validation loss improves (unless ``save_best=False``), and
            ``last.pt`` when it ends (before the best weights are restored).
        eval_batch_size: batch size for :meth:`evaluate` (no gradients).
        ddp_kwargs: extra keyword arguments for ``DistributedDataParallel``
            (e.g. ``find_unused_parameters=True``).
        checkpoint_every: also write ``last.pt`` every this many steps (needs
            ``checkpoint_dir``); a killed fit continues from it (``resume=True``).
        save_best: write ``best.pt`` at each improvement (with ``checkpoint_dir``).
        metadata: a dict of plain values (strings, numbers, lists, dicts,
            tensors) stored in every checkpoint under ``"metadata"``, e.g. the
            configuration of the run, so that a program can check a checkpoint
            before resuming from it.

    Example:
        >>> import torch
        >>> from flowlib import Flow, StandardNormal
        >>> from flowlib.bijections import ElementwiseAffine
        >>> x = 3.0 + 0.5 * torch.randn(512, 1, generator=torch.Generator().manual_seed(0))
        >>> trainer = Trainer(Flow(StandardNormal(1), ElementwiseAffine(1.0)), lr=0.1, batch_size=128)
        >>> trainer = trainer.fit(x, steps=300)
        >>> round(trainer.evaluate(x), 1)   # the Gaussian optimum: 0.5 log(2 pi e 0.25) = 0.73
        0.7

        Continue a killed fit from its last checkpoint (here the "kill" is an
        exception raised in step 71, before its optimizer step):

        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> def make_trainer():
        ...     flow = Flow(StandardNormal(1), ElementwiseAffine(1.0))
        ...     return Trainer(flow, lr=0.1, batch_size=128, eval_every=20, device="cpu",
        ...                    checkpoint_dir=folder, checkpoint_every=25)
        >>> class Killed(Exception): ...
        >>> def kill_in_step_71(module, args, output):
        ...     if module.training and trainer.step == 70:
        ...         raise Killed
        >>> trainer = make_trainer()
        >>> hook = trainer.flow.bijection.register_forward_hook(kill_in_step_71)
        >>> try:
        ...     trainer.fit(x, x[:100], steps=120)
        ... except Killed:
        ...     print("killed after step", trainer.step)
        killed after step 70
        >>> resumed = make_trainer()
        >>> resumed.load_checkpoint(f"{folder}/last.pt")   # written after step 50
        >>> resumed.step
        50
        >>> resumed = resumed.fit(x, x[:100], steps=120, resume=True)
        >>> uninterrupted = make_trainer().fit(x, x[:100], steps=120)
        >>> [e["val_loss"] for e in resumed.history] == [e["val_loss"] for e in uninterrupted.history]
        True
    """

    def __init__(
        self,
        flow: nn.Module,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 256,
        grad_clip: float | None = None,
        eval_every: int | None = None,
        patience: int | None = None,
        restore_best: bool = True,
        device: str | torch.device = "auto",
        mixed_precision: bool | str = "auto",
        seed: int = 0,
        progress: bool = False,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        eval_batch_size: int = 4096,
        ddp_kwargs: dict[str, Any] | None = None,
        checkpoint_every: int | None = None,
        save_best: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(flow, nn.Module) or not callable(getattr(flow, "log_prob", None)):
            raise TypeError(
                f"Trainer: expected a flowlib Flow or an nn.Module with log_prob(x, context), got {type(flow).__name__}"
            )
        self.lr = check_float("Trainer: lr", lr, above=0.0)
        self.weight_decay = check_float("Trainer: weight_decay", weight_decay, minimum=0.0)
        self.batch_size = check_int("Trainer: batch_size", batch_size, minimum=1)
        self.grad_clip = check_float("Trainer: grad_clip", grad_clip, above=0.0, allow_none=True)
        self.eval_every = check_int("Trainer: eval_every", eval_every, minimum=1, allow_none=True)
        self.patience = check_int("Trainer: patience", patience, minimum=1, allow_none=True)
        self.eval_batch_size = check_int("Trainer: eval_batch_size", eval_batch_size, minimum=1)
        self.seed = check_int("Trainer: seed", seed)
        self.restore_best = bool(restore_best)
        self.progress = bool(progress)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoint_every = check_int("Trainer: checkpoint_every", checkpoint_every, minimum=1, allow_none=True)
        if self.checkpoint_every is not None and self.checkpoint_dir is None:
            raise ValueError("Trainer: checkpoint_every needs checkpoint_dir (the folder of last.pt)")
        self.save_best = bool(save_best)
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"Trainer: metadata must be a dict or None, got {type(metadata).__name__}")
        self.metadata = metadata

        self.rank, self.world_size, local_rank = process_info()
        self.distributed = self.world_size > 1
        self.device = resolve_device(device)
        if self.distributed:
            self.device = setup_process(self.device, local_rank)
        self.mixed_precision = resolve_mixed_precision(mixed_precision, self.device)

        self.flow = flow.to(self.device)
        self._params = [p for p in self.flow.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("Trainer: the model has no trainable parameters (requires_grad=True): nothing to fit")
        self._param_dtype = self._params[0].dtype
        self.optimizer = torch.optim.Adam(self._params, lr=self.lr, weight_decay=self.weight_decay)
        self._model = wrap_model(self.flow, self.device, self.distributed, ddp_kwargs)

        self.step = 0
        self.epoch = 0.0
        self.history: list[dict[str, Any]] = []
        self._elapsed = 0.0
        self._fit_started = 0.0
        self._schedule = BatchSchedule(self.seed)
        self._stopping = EarlyStopping(self.patience, keep_weights=self.restore_best)
        self._synced_init = not self.distributed
        self._progress: FitProgress | None = None  # the current or last fit
        self._loaded_fit: FitProgress | None = None  # a fit from load_checkpoint, for fit(resume=True)

    # ------------------------------------------------------------------ public API

    @property
    def is_main_process(self) -> bool:
        """``True`` on rank 0 (always, without DDP): the process that prints and saves."""
        return self.rank == 0

    @property
    def best_val_loss(self) -> float | None:
        """The lowest validation loss of the last :meth:`fit` (``None`` before one, or without ``val``)."""
        return self._stopping.best_loss

    @property
    def best_step(self) -> int | None:
        """The step of :attr:`best_val_loss`."""
        return self._stopping.best_step

    def fit(
        self,
        train: Tensor,
        val: Tensor | None = None,
        *,
        train_context: Tensor | None = None,
        val_context: Tensor | None = None,
        steps: int | None = None,
        epochs: int | None = None,
        train_transform: BatchTransform | None = None,
        resume: bool = False,
    ) -> Trainer:
        """Train for ``steps`` optimizer steps and/or ``epochs`` epochs (whichever ends first); return ``self``.

        Args:
            train: training data, shape ``(n, *flow.event_shape)``, the dtype of
                the model's parameters. Moved to the device.
            val: optional validation data of the same shape; needed for
                ``patience`` and best-weight restoring.
            train_context, val_context: conditioning inputs with the same first
                dimension as ``train`` / ``val`` (give both or neither).
            steps, epochs: the budget of this call (at least one of them).
            train_transform: optional ``f(batch, generator) -> batch`` applied to
                each training batch on the device before the model sees it, e.g.
                fresh dequantization noise per batch:
                ``lambda x, g: scaler.transform(dequantize(x, 17, generator=g))``.
                The generator lives on the device and is seeded from ``seed``.
                Validation data is not transformed (prepare it once, with fixed noise).
            resume: continue the fit saved in the checkpoint that
                :meth:`load_checkpoint` loaded (written during the fit by
                ``checkpoint_every``, or at its end), instead of starting a new
                one. Pass the same data and budget as the interrupted call:
                ``steps``/``epochs`` are the budget of the whole fit, so only
                the remaining steps are done (none if it had finished; the best
                weights are then restored as at its end).

        Raises:
            FloatingPointError: if a loss or gradient norm becomes NaN or Inf.
            ValueError: with ``resume=True``, if no fit was loaded or this call's
                data size, batch size, budget, ``eval_every``, ``patience`` or
                ``restore_best`` differ from the interrupted fit's.
        """
        plan = self._plan_fit(train, val, train_context, val_context, steps, epochs, train_transform)
        progress = self._begin_fit(plan, resume)
        losses = progress.window
        first = self.step - progress.start_step + 1
        last = plan.total_steps if not progress.finished else first - 1
        self.flow.train()
        bar = ProgressBar(plan.total_steps, self._shows_progress, initial=first - 1)
        with self._timed_fit(), contextlib.closing(bar):
            for done in range(first, last + 1):
                x, context = self._next_batch(plan, first=done == first)
                losses.add(self._train_step(x, context))
                self._count_step(plan.steps_per_epoch)
                bar.step()
                if self.step % plan.eval_every == 0 or done == plan.total_steps:
                    entry = self._record(plan, losses.mean_and_reset())
                    bar.show(entry)
                    if self._should_stop(entry["val_loss"]):
                        break
                if self.checkpoint_every is not None and self.step % self.checkpoint_every == 0 and done < last:
                    self.save_checkpoint(self._checkpoint_path("last.pt"))
        progress.finished = True
        self._finish_fit()
        return self

    @torch.no_grad()
    def evaluate(self, data: Tensor, context: Tensor | None = None) -> float:
        """Mean NLL (nats per sample) of ``data`` under the model, without gradients.

        Evaluated in batches of ``eval_batch_size`` and summed in float64. Under
        DDP every rank must call it: each evaluates the shard ``[rank::world_size]``
        and the sums are all-reduced.
        """
        data = self._check_data("data", data)
        context = check_context("Trainer", context, data.shape[0], name="context", subject="data")
        return self._mean_nll(data, context)

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write the model, optimizer and training state as a plain dict (rank 0 only; call it on every rank).

        The file loads with ``torch.load(path, weights_only=True)``: it holds
        state dicts, numbers, strings, lists and dicts only (see
        :mod:`flowlib.train.checkpoint`). It is written atomically, and during
        or after a fit it holds what ``fit(..., resume=True)`` needs.
        """
        if not self.is_main_process:
            return
        fit = None
        if self._progress is not None:
            fit = self._progress.state_dict()
            fit["stopping"] = self._stopping.state_dict()
            fit["rng"] = torch.get_rng_state()
        write_checkpoint(
            path,
            {
                "model": self.flow.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "elapsed": self._elapsed,
                "history": [dict(entry) for entry in self.history],
                "best_val_loss": self.best_val_loss,
                "best_step": self.best_step,
                "generator": self._schedule.generator.get_state(),
                "schedule": self._schedule.state_dict(),
                "fit": fit,
                "metadata": self.metadata,
            },
        )

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore what :meth:`save_checkpoint` wrote (with ``weights_only=True``) into this Trainer.

        The model must have the same architecture. Tensors go to this Trainer's
        device, so a checkpoint written on a GPU loads on a CPU. A checkpoint
        written during or at the end of a fit can then be continued with
        ``fit(..., resume=True)``; a plain :meth:`fit` starts a new fit from the
        loaded state instead. (Checkpoints of earlier flowlib versions restore
        the weights, optimizer, step, history, best loss and batch generator.)
        """
        state = read_checkpoint(path, self.device)
        self.flow.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.epoch = float(state["epoch"])
        self._elapsed = float(state["elapsed"])
        self.history = [dict(entry) for entry in state["history"]]
        if state.get("schedule") is not None:
            self._schedule.load_state_dict(state["schedule"], self.device)
        else:
            self._schedule.generator.set_state(state["generator"].cpu())
        self._stopping = EarlyStopping(self.patience, keep_weights=self.restore_best)
        self._loaded_fit = None
        if state.get("fit") is not None:
            self._loaded_fit = FitProgress.from_state_dict(state["fit"])
            self._stopping.load_state_dict(self._loaded_fit.extra["stopping"])
        else:
            self._stopping.best_loss, self._stopping.best_step = state["best_val_loss"], state["best_step"]
        self._progress = self._loaded_fit
        self._synced_init = True  # every rank loaded the same weights: nothing to synchronize

    def __repr__(self) -> str:
        best = "None" if self.best_val_loss is None else f"{self.best_val_loss:.4f}"
        dist_text = f", world_size={self.world_size}" if self.distributed else ""
        return f"Trainer(step={self.step}, device={self.device}{dist_text}, best_val_loss={best})"

    # ------------------------------------------------------------------ the steps of fit

    def _begin_fit(self, plan: _FitPlan, resume: bool) -> FitProgress:
        """Start a new fit (a new epoch, fresh early stopping), or take up the one :meth:`load_checkpoint` loaded."""
        if not isinstance(resume, bool):
            raise TypeError(f"Trainer.fit: resume must be True or False, got {type(resume).__name__}")
        if self.checkpoint_dir is not None and self.is_main_process:
            for name in ("last.pt", "best.pt"):
                remove_stale_temporaries(self._checkpoint_path(name))
        settings = {
            "total_steps": plan.total_steps,
            "num_samples": plan.train.shape[0],
            "batch_size": plan.batch_size,
            "eval_every": plan.eval_every,
            "patience": self.patience,
            "restore_best": self.restore_best,
        }
        if resume:
            progress = self._loaded_fit
            if progress is None:
                raise ValueError(
                    "Trainer.fit(resume=True): there is no fit to resume; first load a checkpoint written during or "
                    "after a fit with load_checkpoint(path) (Trainer(checkpoint_dir=..., checkpoint_every=N) writes "
                    "last.pt while it trains)"
                )
            progress.check_continues(**settings)
            torch.set_rng_state(progress.extra["rng"].cpu())
            progress.extra = {}  # the schedule and early stopping were restored by load_checkpoint
        else:
            self._schedule.start(plan.train.shape[0], plan.batch_size)
            self._stopping = EarlyStopping(self.patience, keep_weights=self.restore_best)
            progress = FitProgress(start_step=self.step, **settings)
        self._loaded_fit = None
        self._progress = progress
        return progress

    def _plan_fit(
        self,
        train: Any,
        val: Any,
        train_context: Any,
        val_context: Any,
        steps: Any,
        epochs: Any,
        transform: Any,
    ) -> _FitPlan:
        """Check the arguments of :meth:`fit`, move the training data to the device, work out the budget."""
        if train is None:
            raise ValueError(
                "Trainer.fit: no training data (train=None)"
                + ("; validation data alone cannot train a model" if val is not None else "")
            )
        if val is None and val_context is not None:
            raise ValueError("Trainer.fit: val_context was given without val")
        if val is not None and (train_context is None) != (val_context is None):
            raise ValueError(
                "Trainer.fit: give a context for both train and val or for neither "
                f"(train_context is {'set' if train_context is not None else 'None'}, "
                f"val_context is {'set' if val_context is not None else 'None'})"
            )
        if transform is not None and not callable(transform):
            raise TypeError(f"Trainer.fit: train_transform must be callable, got {type(transform).__name__}")
        train = self._check_data("train", train, values=transform is None)
        train_context = check_context("Trainer", train_context, train.shape[0], name="train_context", subject="train")
        if val is not None:
            val = self._check_data("val", val)
            val_context = check_context("Trainer", val_context, val.shape[0], name="val_context", subject="val")
        elif self.patience is not None:
            raise ValueError("Trainer.fit: patience (early stopping) needs validation data: pass val=...")
        steps = check_int("Trainer: steps", steps, minimum=1, allow_none=True)
        epochs = check_int("Trainer: epochs", epochs, minimum=1, allow_none=True)
        if steps is None and epochs is None:
            raise ValueError("Trainer.fit: give a budget: steps=... and/or epochs=...")

        n = train.shape[0]
        batch = min(self.batch_size, n)
        if batch < self.world_size:
            raise ValueError(
                f"Trainer.fit: the global batch ({batch}) must hold at least one sample per process "
                f"({self.world_size} processes)"
            )
        steps_per_epoch = n // batch
        total = min(steps if steps is not None else math.inf, epochs * steps_per_epoch if epochs else math.inf)
        if self.distributed:
            check_same_data_on_all_ranks(train, val, batch, self.seed, self.device)
        return _FitPlan(
            train=train.to(self.device),
            train_context=None if train_context is None else train_context.to(self.device),
            val=val,
            val_context=val_context,
            transform=transform,
            batch_size=batch,
            steps_per_epoch=steps_per_epoch,
            total_steps=int(total),
            eval_every=self.eval_every or steps_per_epoch,
        )

    def _next_batch(self, plan: _FitPlan, first: bool) -> tuple[Tensor, Tensor | None]:
        """The next global batch, selected by the schedule, on the device, through ``train_transform``."""
        index = self._schedule.next_indices().to(self.device)
        x = plan.train.index_select(0, index)
        context = None if plan.train_context is None else plan.train_context.index_select(0, index)
        if plan.transform is not None:
            rows = x.shape[0]
            x = plan.transform(x, self._schedule.transform_generator(self.device))
            if first:
                self._check_transformed(x, rows)
        return x, context

    def _train_step(self, x: Tensor, context: Tensor | None) -> float:
        """One optimizer step on the global batch ``(x, context)``; return its mean loss (nats per sample).

        Under DDP this rank computes the loss of its shard only, as its share of
        the global mean; DDP averages the gradients. A non-finite loss or
        gradient norm raises before the optimizer step.
        """
        batch = x.shape[0]
        if not self._synced_init:
            # Layers with data-dependent initialization (actnorm) see the same global batch on every rank.
            with torch.no_grad(), autocast(self.mixed_precision):
                self.flow.log_prob(x, context)
            self._synced_init = True
        if self.distributed:
            x, context = shard(x, self.rank, self.world_size), shard(context, self.rank, self.world_size)
        with autocast(self.mixed_precision):
            log_p = self._model(x, context)
        self._check_log_prob(log_p, x.shape[0])
        nll_sum = -log_p.float().sum()
        loss = nll_sum * (self.world_size / batch)  # this rank's share of the global mean
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        logged = -self._float64(log_p.detach()).sum()
        if self.distributed:
            dist.all_reduce(logged)  # gradients were averaged by DDP during backward
        grad_norm = self._clip_gradients(logged)
        mean_loss, norm = torch.stack([logged / batch, self._float64(grad_norm)]).tolist()
        if not math.isfinite(mean_loss):
            raise FloatingPointError(self._nan_message(f"the training loss is {mean_loss}"))
        if not math.isfinite(norm):
            raise FloatingPointError(self._nan_message(f"the gradient norm is {norm} (the loss is {mean_loss:.6g})"))
        self.optimizer.step()
        return mean_loss

    def _count_step(self, steps_per_epoch: int) -> None:
        self.step += 1
        self.epoch += 1.0 / steps_per_epoch

    def _record(self, plan: _FitPlan, train_loss: float) -> dict[str, Any]:
        """Evaluate the validation set (if any) and append a :attr:`history` entry; return it."""
        val_loss = None if plan.val is None else self._mean_nll(plan.val, plan.val_context)
        entry = {
            "step": self.step,
            "epoch": round(self.epoch, 6),
            "train_loss": train_loss,
            "val_loss": val_loss,
            "elapsed": self._elapsed + time.perf_counter() - self._fit_started,
        }
        self.history.append(entry)
        return entry

    def _should_stop(self, val_loss: float | None) -> bool:
        """Early stopping: track the best validation loss (writing ``best.pt``); ``True`` once patience runs out."""
        if val_loss is None:
            return False
        if not math.isfinite(val_loss):
            raise FloatingPointError(
                f"the validation loss is {val_loss} after step {self.step} "
                f"(epoch {max(1, math.ceil(self.epoch - 1e-9))}); "
                "check the validation data (NaN/Inf, values outside the model's support, same "
                "preprocessing as the training data)"
            )
        if self._stopping.update(val_loss, self.step, self.flow):
            if self.checkpoint_dir is not None and self.save_best:
                self.save_checkpoint(self._checkpoint_path("best.pt"))
            return False
        return self._stopping.should_stop

    def _finish_fit(self) -> None:
        """Write ``last.pt`` (with the final weights), then load the best weights back if they were kept."""
        if self.checkpoint_dir is not None:
            self.save_checkpoint(self._checkpoint_path("last.pt"))
        self._stopping.restore(self.flow)

    # ------------------------------------------------------------------ helpers

    def _checkpoint_path(self, name: str) -> Path:
        assert self.checkpoint_dir is not None
        return self.checkpoint_dir / name

    @property
    def _shows_progress(self) -> bool:
        return self.progress and self.is_main_process

    @contextlib.contextmanager
    def _timed_fit(self) -> Iterator[None]:
        """Count the seconds of a fit into :attr:`_elapsed`, even when it ends with an error."""
        self._fit_started = time.perf_counter()
        try:
            yield
        finally:
            self._elapsed += time.perf_counter() - self._fit_started

    @torch.no_grad()
    def _mean_nll(self, data: Tensor, context: Tensor | None) -> float:
        """The mean NLL of checked ``data`` (this rank's shard under DDP, all-reduced), in batches, in float64."""
        if self.distributed:
            data, context = shard(data, self.rank, self.world_size), shard(context, self.rank, self.world_size)
        totals = torch.zeros(2, dtype=torch.float64, device=float64_device(self.device))
        was_training = self.flow.training
        self.flow.eval()
        try:
            for start in range(0, data.shape[0], self.eval_batch_size):
                x = data[start : start + self.eval_batch_size].to(self.device)
                c = None if context is None else context[start : start + self.eval_batch_size].to(self.device)
                with autocast(self.mixed_precision):
                    log_p = self.flow.log_prob(x, c)
                self._check_log_prob(log_p, x.shape[0])
                totals[0] -= self._float64(log_p).sum()
                totals[1] += x.shape[0]
        finally:
            self.flow.train(was_training)
        if self.distributed:
            dist.all_reduce(totals)
        return float(totals[0] / totals[1])

    def _clip_gradients(self, reference: Tensor) -> Tensor:
        """Clip the gradients' global 2-norm to ``grad_clip`` if set; return the norm (before clipping)."""
        if self.grad_clip is not None:
            return torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
        norms = [torch.linalg.vector_norm(p.grad.detach()) for p in self._params if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(norms)) if norms else reference.new_zeros(())

    def _float64(self, t: Tensor) -> Tensor:
        return t.to(float64_device(self.device)).double()

    def _epoch_number(self) -> int:
        """1-based number of the epoch the next step belongs to."""
        return math.floor(self.epoch + 1e-9) + 1

    def _nan_message(self, what: str) -> str:
        clip = f"a smaller grad_clip (now {self.grad_clip})" if self.grad_clip else "gradient clipping (grad_clip=1.0)"
        return (
            f"{what} at step {self.step + 1} (epoch {self._epoch_number()}); training stopped before the "
            f"optimizer step, so the weights are those after step {self.step}. Remedies: a lower learning rate "
            f"(now lr={self.lr}), {clip}, or check the data (NaN/Inf, unstandardized scales, values outside the "
            "model's support)"
        )

    def _check_log_prob(self, log_p: Any, batch: int) -> None:
        if not isinstance(log_p, Tensor) or log_p.shape != (batch,):
            shape = tuple(log_p.shape) if isinstance(log_p, Tensor) else type(log_p).__name__
            raise ValueError(f"Trainer: log_prob must return one value per sample, shape ({batch},); got {shape}")

    def _check_data(self, name: str, x: Any, values: bool = True) -> Tensor:
        """:func:`flowlib.core.check_tensor` against the flow's event shape and parameter dtype.

        With ``values=False`` (raw data for a ``train_transform``) only that it
        is a non-empty tensor with a batch dimension.
        """
        event_shape = getattr(self.flow, "event_shape", None) if values else None
        return check_tensor(
            x,
            "Trainer",
            name,
            None if event_shape is None else torch.Size(event_shape),
            self._param_dtype,
            values=values,
            expected_by="the flow",
            batch_name="n",
        )

    def _check_transformed(self, x: Any, rows: int) -> None:
        if not isinstance(x, Tensor) or x.shape[0] != rows:
            raise ValueError(
                f"Trainer: train_transform must return a tensor with the batch's {rows} rows, got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        self._check_data("the output of train_transform", x)
