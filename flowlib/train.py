r"""Training a flow by maximum likelihood: the :class:`Trainer` every chapter uses.

A flow is fitted by minimizing the mean negative log-likelihood of the data,

.. math::

    \mathcal{L}(\theta) = -\frac{1}{B}\sum_{b=1}^{B} \log p_\theta(x_b),

which, up to the (constant) entropy of the data, is the KL divergence
:math:`\mathrm{KL}(p_{\text{data}} \,\|\, p_\theta)`. The :class:`Trainer` does
that with Adam on mini-batches drawn from a seeded generator, and takes care of
the rest: the device (:func:`resolve_device`), bf16 mixed precision on CUDA,
validation with early stopping, NaN detection, checkpoints, and several GPUs
under ``torchrun`` (DistributedDataParallel).

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

from __future__ import annotations

import contextlib
import math
import numbers
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["resolve_device", "Trainer"]

_CHECKPOINT_FORMAT = "flowlib.train/1"

BatchTransform = Callable[[Tensor, torch.Generator], Tensor]


# --------------------------------------------------------------------------- devices


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device`` into a usable device.

    ``"auto"`` picks CUDA if available, else Apple's MPS if available, else the
    CPU. An explicit device that this machine does not have is an error, not a
    silent fall-back to the CPU.

    Raises:
        TypeError: if ``device`` is neither a string nor a ``torch.device``.
        ValueError: for an unknown device string, an unsupported device type,
            or a device that is not available here.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, str):
        if device == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            resolved = torch.device(device)
        except RuntimeError as error:
            raise ValueError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from error
    elif isinstance(device, torch.device):
        resolved = device
    else:
        raise TypeError(f"device must be a string such as 'auto' or 'cuda:0', or a torch.device; got {device!r}")
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(resolved)!r} was requested but CUDA is not available here "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); use 'auto' or 'cpu'"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {str(resolved)!r} was requested but only {count} CUDA device(s) are visible")
        return resolved
    if resolved.type == "mps":
        if not _mps_available():
            raise ValueError("device 'mps' was requested but Apple's MPS backend is not available here")
        return resolved
    raise ValueError(f"device type {resolved.type!r} is not supported by the Trainer; use 'cpu', 'cuda' or 'mps'")


def _distributed_info() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from an initialized process group or torchrun's variables."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local_rank
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} is set but this torch has no torch.distributed support")
    return int(os.environ["RANK"]), world, local_rank


# --------------------------------------------------------------------------- argument checks


def _positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"Trainer: {name} must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _nonnegative_float(name: str, value: Any, strictly_positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"Trainer: {name} must be a finite number, got {value!r}")
    if value < 0 or (strictly_positive and value == 0):
        raise ValueError(f"Trainer: {name} must be {'> 0' if strictly_positive else '>= 0'}, got {value!r}")
    return float(value)


class _LogProb(nn.Module):
    """Wrap a model so that ``forward`` is its ``log_prob``: what DistributedDataParallel calls.

    ``Flow.forward`` already is ``log_prob``; the wrapper makes any module with a
    ``log_prob(x, context)`` method trainable under DDP, whose gradient hooks
    fire only through ``forward``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.model.log_prob(x, context)


# --------------------------------------------------------------------------- the trainer


class Trainer:
    r"""Fit a flow (any ``nn.Module`` with ``log_prob(x, context=None)``) by minimizing the mean NLL.

    The Trainer holds the model, an Adam optimizer and the training state
    (:attr:`step`, :attr:`history`, :attr:`best_val_loss`); :meth:`fit` trains
    on tensors and can be called again to train more.

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
            the validation loss improves, and ``last.pt`` when it ends (before
            the best weights are restored).
        eval_batch_size: batch size for :meth:`evaluate` (no gradients).
        ddp_kwargs: extra keyword arguments for ``DistributedDataParallel``
            (e.g. ``find_unused_parameters=True``).

    Example:
        >>> import torch
        >>> from flowlib import Flow, StandardNormal
        >>> from flowlib.bijections import ElementwiseAffine
        >>> x = 3.0 + 0.5 * torch.randn(512, 1, generator=torch.Generator().manual_seed(0))
        >>> trainer = Trainer(Flow(StandardNormal(1), ElementwiseAffine(1.0)), lr=0.1, batch_size=128)
        >>> trainer = trainer.fit(x, steps=300)
        >>> round(trainer.evaluate(x), 1)   # the Gaussian optimum: 0.5 log(2 pi e 0.25) = 0.73
        0.7
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
    ) -> None:
        if not isinstance(flow, nn.Module) or not callable(getattr(flow, "log_prob", None)):
            raise TypeError(
                f"Trainer: expected a flowlib Flow or an nn.Module with log_prob(x, context), got {type(flow).__name__}"
            )
        self.lr = _nonnegative_float("lr", lr, strictly_positive=True)
        self.weight_decay = _nonnegative_float("weight_decay", weight_decay)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.grad_clip = None if grad_clip is None else _nonnegative_float("grad_clip", grad_clip, True)
        self.eval_every = _positive_int("eval_every", eval_every, allow_none=True)
        self.patience = _positive_int("patience", patience, allow_none=True)
        self.eval_batch_size = _positive_int("eval_batch_size", eval_batch_size)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"Trainer: seed must be an int, got {seed!r}")
        self.seed = int(seed)
        self.restore_best = bool(restore_best)
        self.progress = bool(progress)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)

        self.rank, self.world_size, local_rank = _distributed_info()
        self.distributed = self.world_size > 1
        resolved = resolve_device(device)
        if self.distributed and resolved.type == "cuda" and resolved.index is None:
            resolved = torch.device("cuda", local_rank)
        if self.distributed and resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        self.device = resolved
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")

        if mixed_precision == "auto":
            self.mixed_precision = resolved.type == "cuda" and torch.cuda.is_bf16_supported()
        elif mixed_precision is True:
            if resolved.type != "cuda":
                raise ValueError(
                    f"Trainer: mixed_precision=True needs a CUDA device (bf16 autocast), but the device is "
                    f"{resolved}; use mixed_precision='auto' or False"
                )
            self.mixed_precision = True
        elif mixed_precision is False:
            self.mixed_precision = False
        else:
            raise ValueError(f"Trainer: mixed_precision must be 'auto', True or False, got {mixed_precision!r}")

        self.flow = flow.to(resolved)
        self._params = [p for p in self.flow.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("Trainer: the model has no trainable parameters (requires_grad=True): nothing to fit")
        self._param_dtype = self._params[0].dtype
        self.optimizer = torch.optim.Adam(self._params, lr=self.lr, weight_decay=self.weight_decay)
        model: nn.Module = _LogProb(self.flow)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [resolved.index] if resolved.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=device_ids, **(ddp_kwargs or {}))
        self._model = model

        self.step = 0
        self.epoch = 0.0
        self.history: list[dict[str, Any]] = []
        self.best_val_loss: float | None = None
        self.best_step: int | None = None
        self._elapsed = 0.0
        self._generator = torch.Generator().manual_seed(self.seed)
        self._transform_generator: torch.Generator | None = None
        self._synced_init = not self.distributed

    # ------------------------------------------------------------------ public API

    @property
    def is_main_process(self) -> bool:
        """``True`` on rank 0 (always, without DDP): the process that prints and saves."""
        return self.rank == 0

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

        Raises:
            FloatingPointError: if a loss or gradient norm becomes NaN or Inf.
        """
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
        if train_transform is not None and not callable(train_transform):
            raise TypeError(f"Trainer.fit: train_transform must be callable, got {type(train_transform).__name__}")
        train = self._check_data("train", train, check_shape=train_transform is None)
        train_context = self._check_context("train_context", train_context, train)
        if val is not None:
            val = self._check_data("val", val)
            val_context = self._check_context("val_context", val_context, val)
        elif self.patience is not None:
            raise ValueError("Trainer.fit: patience (early stopping) needs validation data: pass val=...")
        steps = _positive_int("steps", steps, allow_none=True)
        epochs = _positive_int("epochs", epochs, allow_none=True)
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
        total = int(total)
        eval_every = self.eval_every or steps_per_epoch
        if self.distributed:
            self._check_same_data_on_all_ranks(train, val, batch)

        train = train.to(self.device)
        train_context = None if train_context is None else train_context.to(self.device)
        if train_transform is not None and self._transform_generator is None:
            self._transform_generator = torch.Generator(device=self.device).manual_seed(self.seed + 1)

        best_state: dict[str, Tensor] | None = None
        best, best_step, bad_evals = math.inf, None, 0
        self.best_val_loss, self.best_step = None, None
        window_sum, window_count = 0.0, 0
        start = time.perf_counter()
        bar = None
        if self.progress and self.is_main_process:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="training", unit="step", dynamic_ncols=True)
        order, position = None, steps_per_epoch
        self.flow.train()
        try:
            for done in range(1, total + 1):
                if position >= steps_per_epoch:
                    order, position = torch.randperm(n, generator=self._generator), 0
                index = order[position * batch : (position + 1) * batch]
                position += 1
                loss = self._train_step(train, train_context, index, train_transform, steps_per_epoch, done == 1)
                window_sum, window_count = window_sum + loss, window_count + 1
                if bar is not None:
                    bar.update(1)
                if self.step % eval_every != 0 and done != total:
                    continue
                val_loss = None if val is None else self.evaluate(val, val_context)
                entry = {
                    "step": self.step,
                    "epoch": round(self.epoch, 6),
                    "train_loss": window_sum / window_count,
                    "val_loss": val_loss,
                    "elapsed": self._elapsed + time.perf_counter() - start,
                }
                self.history.append(entry)
                window_sum, window_count = 0.0, 0
                if bar is not None:
                    bar.set_postfix({k: round(v, 4) for k, v in entry.items() if k.endswith("loss") and v is not None})
                if val_loss is None:
                    continue
                if not math.isfinite(val_loss):
                    raise FloatingPointError(
                        f"the validation loss is {val_loss} after step {self.step} "
                        f"(epoch {max(1, math.ceil(self.epoch - 1e-9))}); "
                        "check the validation data (NaN/Inf, values outside the model's support, same "
                        "preprocessing as the training data)"
                    )
                if val_loss < best:
                    best, best_step, bad_evals = val_loss, self.step, 0
                    self.best_val_loss, self.best_step = best, best_step
                    if self.restore_best:
                        best_state = {k: v.detach().clone() for k, v in self.flow.state_dict().items()}
                    if self.checkpoint_dir is not None:
                        self.save_checkpoint(self.checkpoint_dir / "best.pt")
                else:
                    bad_evals += 1
                    if self.patience is not None and bad_evals >= self.patience:
                        break
        finally:
            self._elapsed += time.perf_counter() - start
            if bar is not None:
                bar.close()
        if self.checkpoint_dir is not None:
            self.save_checkpoint(self.checkpoint_dir / "last.pt")
        if best_state is not None:
            self.flow.load_state_dict(best_state)
        return self

    @torch.no_grad()
    def evaluate(self, data: Tensor, context: Tensor | None = None) -> float:
        """Mean NLL (nats per sample) of ``data`` under the model, without gradients.

        Evaluated in batches of ``eval_batch_size`` and summed in float64. Under
        DDP every rank must call it: each evaluates the shard ``[rank::world_size]``
        and the sums are all-reduced.
        """
        data = self._check_data("data", data)
        context = self._check_context("context", context, data)
        if self.distributed:
            data = data[self.rank :: self.world_size]
            context = None if context is None else context[self.rank :: self.world_size]
        totals = torch.zeros(2, dtype=torch.float64, device=self._sum_device)
        was_training = self.flow.training
        self.flow.eval()
        try:
            for start in range(0, data.shape[0], self.eval_batch_size):
                x = data[start : start + self.eval_batch_size].to(self.device)
                c = None if context is None else context[start : start + self.eval_batch_size].to(self.device)
                with self._autocast():
                    log_p = self.flow.log_prob(x, c)
                self._check_log_prob(log_p, x.shape[0])
                totals[0] -= self._float64(log_p).sum()
                totals[1] += x.shape[0]
        finally:
            self.flow.train(was_training)
        if self.distributed:
            dist.all_reduce(totals)
        return float(totals[0] / totals[1])

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write the model, optimizer and training state as a plain dict (rank 0 only; call it on every rank).

        The file loads with ``torch.load(path, weights_only=True)``: it holds
        state dicts, numbers, strings, lists and dicts only.
        """
        if not self.is_main_process:
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": _CHECKPOINT_FORMAT,
            "model": self.flow.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "elapsed": self._elapsed,
            "history": [dict(entry) for entry in self.history],
            "best_val_loss": self.best_val_loss,
            "best_step": self.best_step,
            "generator": self._generator.get_state(),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore what :meth:`save_checkpoint` wrote (with ``weights_only=True``) into this Trainer.

        The model must have the same architecture. Tensors go to this Trainer's
        device, so a checkpoint written on a GPU loads on a CPU.
        """
        state = torch.load(path, map_location=self.device, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"Trainer.load_checkpoint: {path} is not a checkpoint written by Trainer.save_checkpoint")
        self.flow.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.epoch = float(state["epoch"])
        self._elapsed = float(state["elapsed"])
        self.history = [dict(entry) for entry in state["history"]]
        self.best_val_loss = state["best_val_loss"]
        self.best_step = state["best_step"]
        self._generator.set_state(state["generator"].cpu())

    def __repr__(self) -> str:
        best = "None" if self.best_val_loss is None else f"{self.best_val_loss:.4f}"
        dist_text = f", world_size={self.world_size}" if self.distributed else ""
        return f"Trainer(step={self.step}, device={self.device}{dist_text}, best_val_loss={best})"

    # ------------------------------------------------------------------ internals

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.mixed_precision:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def _sum_device(self) -> torch.device:
        # MPS has no float64: losses are summed on the CPU there.
        return torch.device("cpu") if self.device.type == "mps" else self.device

    def _float64(self, t: Tensor) -> Tensor:
        return t.to(self._sum_device).double()

    def _epoch_number(self) -> int:
        """1-based number of the epoch the next step belongs to."""
        return math.floor(self.epoch + 1e-9) + 1

    def _train_step(
        self,
        data: Tensor,
        context: Tensor | None,
        index: Tensor,
        transform: BatchTransform | None,
        steps_per_epoch: int,
        first_of_fit: bool,
    ) -> float:
        index = index.to(self.device)
        x = data.index_select(0, index)
        c = None if context is None else context.index_select(0, index)
        batch = x.shape[0]
        if transform is not None:
            x = transform(x, self._transform_generator)
            if first_of_fit:
                self._check_transformed(x, batch)
        if not self._synced_init:
            # Layers with data-dependent initialization (actnorm) see the same global batch on every rank.
            with torch.no_grad(), self._autocast():
                self.flow.log_prob(x, c)
            self._synced_init = True
        if self.distributed:
            x = x[self.rank :: self.world_size]
            c = None if c is None else c[self.rank :: self.world_size]
        with self._autocast():
            log_p = self._model(x, c)
        self._check_log_prob(log_p, x.shape[0])
        nll_sum = -log_p.float().sum()
        loss = nll_sum * (self.world_size / batch)  # this rank's share of the global mean
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        logged = -self._float64(log_p.detach()).sum()
        if self.distributed:
            dist.all_reduce(logged)  # gradients were averaged by DDP during backward
        if self.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
        else:
            grads = [p.grad.detach() for p in self._params if p.grad is not None]
            norms = [torch.linalg.vector_norm(g) for g in grads]
            grad_norm = torch.linalg.vector_norm(torch.stack(norms)) if norms else logged.new_zeros(())
        mean_loss, norm = torch.stack([logged / batch, self._float64(grad_norm)]).tolist()
        if not math.isfinite(mean_loss):
            raise FloatingPointError(self._nan_message(f"the training loss is {mean_loss}"))
        if not math.isfinite(norm):
            raise FloatingPointError(self._nan_message(f"the gradient norm is {norm} (the loss is {mean_loss:.6g})"))
        self.optimizer.step()
        self.step += 1
        self.epoch += 1.0 / steps_per_epoch
        return mean_loss

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

    def _check_data(self, name: str, x: Any, check_shape: bool = True) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(
                f"Trainer: {name} must be a torch.Tensor of shape (n, *event_shape), got {type(x).__name__}"
                " (convert it with torch.as_tensor(..., dtype=torch.float32))"
            )
        if x.dim() == 0 or x.shape[0] == 0:
            raise ValueError(f"Trainer: {name} is empty (shape {tuple(x.shape)})")
        if not check_shape:
            return x
        if not x.is_floating_point():
            raise TypeError(f"Trainer: {name} must be floating point, got dtype {x.dtype}; convert it with .float()")
        event_shape = getattr(self.flow, "event_shape", None)
        if event_shape is not None and tuple(x.shape[1:]) != tuple(event_shape):
            expected = "(n, " + ", ".join(str(s) for s in event_shape) + ")"
            raise ValueError(f"Trainer: {name} has shape {tuple(x.shape)} but the flow expects {expected}")
        if x.dtype != self._param_dtype:
            raise TypeError(
                f"Trainer: {name} has dtype {x.dtype} but the model's parameters are {self._param_dtype}; "
                f"convert one of them (x.to({self._param_dtype}) or flow.to({x.dtype}))"
            )
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            raise ValueError(f"Trainer: {name} contains NaN or Inf ({int((~finite).sum())} of {x.numel()} values)")
        return x

    def _check_context(self, name: str, context: Any, data: Tensor) -> Tensor | None:
        if context is None:
            return None
        if not isinstance(context, Tensor):
            raise TypeError(f"Trainer: {name} must be a torch.Tensor or None, got {type(context).__name__}")
        if context.dim() == 0 or context.shape[0] != data.shape[0]:
            raise ValueError(
                f"Trainer: {name} must have one row per sample ({data.shape[0]}), got shape {tuple(context.shape)}"
            )
        return context

    def _check_transformed(self, x: Any, batch: int) -> None:
        if not isinstance(x, Tensor) or x.shape[0] != batch:
            raise ValueError(
                f"Trainer: train_transform must return a tensor with the batch's {batch} rows, got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        self._check_data("the output of train_transform", x)

    def _check_same_data_on_all_ranks(self, train: Tensor, val: Tensor | None, batch: int) -> None:
        summary = [float(train.shape[0]), float(batch), float(self.seed), float(train.double().sum())]
        summary += [0.0, 0.0] if val is None else [float(val.shape[0]), float(val.double().sum())]
        low = torch.tensor(summary, dtype=torch.float64, device=self.device)
        high = low.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise ValueError(
                "Trainer.fit: the processes were given different data, batch sizes or seeds; under torchrun every "
                "rank must pass the same full data set (the Trainer shards each global batch itself)"
            )
