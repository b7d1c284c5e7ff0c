r"""The command line's models: build one by name, save a run's ``model.pt``, load it back.

``model.pt`` is a plain dict that loads with ``torch.load(path, weights_only=True)``:

* ``"config"``: ``model``, ``layers``, ``hidden``, ``data`` (a built-in set's
  name or the path of your data) and, since format 2, ``event_shape``,
  ``levels`` and ``seed``: enough to rebuild the architecture;
* ``"model"``: the weights (the best validation weights), a state dict;
* ``"preprocessing"`` (format 2): ``standardize`` (``mean``, ``std`` and
  ``logabsdet`` of the per-feature standardization of vectors, fitted on the
  training split) and ``levels`` (integer pixels were dequantized to
  :math:`v = (x + u)/L`), so that ``sample`` and ``evaluate`` work in the
  data's own units.

Files written before format 2 (``config`` with the first four keys only) load
with :func:`load_model` as before.

Example:
    >>> flow = build_model("realnvp", layers=2, hidden=8, data="data.csv", event_shape=(3,))
    >>> flow.event_shape
    torch.Size([3])
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import data as datasets
from ..core import Flow
from ..models import glow, maf, multiscale_realnvp, nice, realnvp, spline_flow
from ..train.checkpoint import atomic_save

__all__ = [
    "MODELS",
    "IMAGE_MODELS",
    "BUILT_IN_DATA",
    "MODEL_FILE_FORMAT",
    "Standardization",
    "SavedRun",
    "build_model",
    "load_model",
    "load_run",
    "save_run",
    "model_file",
]

MODELS = {
    "realnvp": "RealNVP: affine couplings with alternating halves (vectors: 2-D toy sets, your (N, D) data)",
    "spline": "neural spline flow: rational-quadratic spline couplings (vectors)",
    "nice": "NICE: additive couplings and a final scaling layer (vectors)",
    "multiscale": "multi-scale RealNVP with convolutional couplings (images: digits, your (N, C, H, W) images)",
    "glow": "Glow: actnorm, invertible 1x1 convolutions, affine couplings, learned priors (images)",
    "maf": "masked autoregressive flow: 5 MADE layers, orders alternating (vectors or images)",
}
IMAGE_MODELS = {"multiscale", "glow"}
BUILT_IN_DATA = (*sorted(datasets.TOY_DATASETS), "digits")
"""The data sets ``--data`` knows by name; anything else is a path to your own data."""
MODEL_FILE_FORMAT = "flowlib.cli/2"
IMAGE_MULTIPLE = 4
"""Image models need H and W divisible by this: two 2x2 squeezes (multiscale), 2**levels with 2 levels (glow)."""


@dataclass
class Standardization:
    r"""The per-feature standardization :math:`v = (x - \mu)/\sigma` of a run's vectors, as stored in ``model.pt``.

    ``logabsdet`` is :math:`\log|\det \partial v/\partial x| = -\sum_i\log\sigma_i`:
    the NLL of the data in its own units is the model's NLL minus it.
    """

    mean: Tensor
    std: Tensor
    logabsdet: float

    @classmethod
    def fit(cls, x: Tensor) -> Standardization:
        """Fit on training vectors ``(n, D)`` (:class:`flowlib.data.Standardizer`)."""
        scaler = datasets.Standardizer().fit(x)
        assert scaler.mean is not None and scaler.std is not None
        return cls(scaler.mean, scaler.std, scaler.logabsdet)

    def transform(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)

    def inverse(self, v: Tensor) -> Tensor:
        return v * self.std.to(v) + self.mean.to(v)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.cpu(), "std": self.std.cpu(), "logabsdet": self.logabsdet}


def _is_built_in(data: str) -> bool:
    return data in BUILT_IN_DATA


def build_model(
    name: str,
    layers: int | None = None,
    hidden: int = 128,
    data: str = "moons",
    seed: int = 0,
    *,
    event_shape: tuple[int, ...] | list[int] | None = None,
    standardize: tuple[Tensor, Tensor] | None = None,
) -> Flow:
    """Build a model of :data:`MODELS` by name, for ``data`` (a built-in set, or your data of ``event_shape``).

    ``event_shape`` is ``(D,)`` for vectors, ``(C, H, W)`` for images; the
    built-in sets know theirs (``(2,)``, digits ``(1, 8, 8)``). ``maf`` on
    images includes a fixed per-pixel standardization: ``standardize=(mean,
    std)``; on the digits it is fitted on the training split of ``seed``
    (dequantized once), so its ``log_prob`` is the density of the dequantized
    pixels :math:`v`, like the multi-scale model's. (When a state dict is
    loaded next, the stored statistics replace these.)
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    if event_shape is None:
        if not _is_built_in(data):
            raise ValueError(f"build_model: {data!r} is not a built-in data set; give its event_shape")
        event_shape = (1, 8, 8) if data == "digits" else (2,)
    shape = tuple(int(s) for s in event_shape)
    images = len(shape) == 3
    if name == "maf":
        return _maf(shape, layers, hidden, data, seed, standardize)
    if (name in IMAGE_MODELS) != images:
        raise ValueError(
            f"model {name!r} does not fit data {data!r} of shape {shape}: 'multiscale' and 'glow' are for images "
            "(digits, (N, C, H, W) arrays, folders of PNG images), the others for vectors ((N, D) tables)"
        )
    if images:
        c, h, w = shape
        if h % IMAGE_MULTIPLE or w % IMAGE_MULTIPLE:
            raise ValueError(
                f"model {name!r} needs images whose height and width are divisible by {IMAGE_MULTIPLE} (multiscale: "
                f"two 2x2 squeezes; glow: 2**levels with its 2 levels), got H={h}, W={w}; crop or pad the images"
            )
        if name == "glow":  # --layers is the number of steps per level (K)
            return glow(shape, hidden_channels=hidden, **({} if layers is None else {"steps": layers}))
        return multiscale_realnvp(shape, hidden_channels=hidden)
    if len(shape) != 1:
        raise ValueError(f"build_model: event_shape must be (D,) or (C, H, W), got {shape}")
    features = shape[0]
    if name == "realnvp":
        return realnvp(features, layers=layers or 8, hidden=(hidden, hidden))
    if name == "spline":
        return spline_flow(features, layers=layers or 5, hidden=(hidden, hidden))
    return nice(features, layers=layers or 4, hidden=(hidden, hidden))


def _maf(
    shape: tuple[int, ...], layers: int | None, hidden: int, data: str, seed: int,
    standardize: tuple[Tensor, Tensor] | None,
) -> Flow:
    features = math.prod(shape)
    if len(shape) == 1:
        return maf(features, layers=layers or 5, hidden=(hidden, hidden))
    if standardize is None and data == "digits":
        train, _ = datasets.digits("train", seed=seed)
        scaler = datasets.Standardizer().fit(datasets.dequantize(train, 17, torch.Generator().manual_seed(seed)))
        assert scaler.mean is not None and scaler.std is not None
        standardize = (scaler.mean, scaler.std)
    if standardize is None:  # placeholders: a loaded state dict brings the statistics
        standardize = (torch.zeros(features), torch.ones(features))
    mean, std = (t.reshape(features) for t in standardize)
    return maf(features, layers=layers or 5, hidden=(hidden, hidden), event_shape=shape, standardize=(mean, std))


@dataclass
class SavedRun:
    """A trained model with what it needs to sample and score data in the data's own units.

    Attributes:
        flow: the model, on the CPU, in eval mode.
        config: ``model``, ``layers``, ``hidden``, ``data`` (and ``event_shape``, ``levels``, ``seed``).
        standardization: the vectors' standardization, or ``None`` (images; files before format 2).
        levels: integer pixels were dequantized from this many levels, or ``None``.
        path: the ``model.pt`` file.
    """

    flow: Flow
    config: dict[str, Any]
    standardization: Standardization | None
    levels: int | None
    path: Path

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.flow.event_shape)

    @property
    def is_images(self) -> bool:
        return len(self.event_shape) == 3


def model_file(run: str | os.PathLike[str]) -> Path:
    """``RUN/model.pt`` for a run folder, or ``run`` itself for a file; a clear error if it is missing."""
    path = Path(run)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ValueError(
            f"{path}: no such file; give a run folder written by 'python -m flowlib train' (or its model.pt)"
        )
    return path


def load_run(run: str | os.PathLike[str]) -> SavedRun:
    """Load a run folder's ``model.pt`` (or a ``model.pt`` path) with ``weights_only=True``."""
    path = model_file(run)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for a damaged or foreign file
        raise ValueError(f"{path}: cannot load it as a model file ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"{path}: not a model file written by 'python -m flowlib train'")
    config = dict(state["config"])
    preprocessing = state.get("preprocessing") or {}
    stats = preprocessing.get("standardize")
    standardize = None
    if config.get("model") == "maf" and config.get("event_shape") is not None and len(config["event_shape"]) == 3:
        features = math.prod(config["event_shape"])
        standardize = (torch.zeros(features), torch.ones(features))
    flow = build_model(
        config["model"], config["layers"], config["hidden"], config["data"], config.get("seed") or 0,
        event_shape=config.get("event_shape"), standardize=standardize,
    )
    flow.load_state_dict(state["model"])
    flow.eval()
    standardization = None if stats is None else Standardization(stats["mean"], stats["std"], float(stats["logabsdet"]))
    levels = preprocessing.get("levels", 17 if config["data"] == "digits" else None)
    return SavedRun(flow, config, standardization, levels, path)


def load_model(path: str | os.PathLike[str]) -> Flow:
    """Rebuild a model saved by ``python -m flowlib train`` and load its weights (``weights_only=True``).

    ``path`` is the run folder or its ``model.pt``. The model works on the data
    as the training saw it: standardized vectors, dequantized pixels in
    :math:`[0, 1)`; :func:`load_run` also gives the standardization.
    """
    return load_run(path).flow


def save_run(
    path: Path, config: dict[str, Any], flow: Flow, standardization: Standardization | None, levels: int | None
) -> None:
    """Write ``model.pt`` atomically: configuration, weights (on the CPU) and preprocessing."""
    model_state = {k: v.detach().cpu() for k, v in flow.state_dict().items()}
    preprocessing = {
        "standardize": None if standardization is None else standardization.state_dict(),
        "levels": levels,
    }
    atomic_save(
        {"format": MODEL_FILE_FORMAT, "config": config, "model": model_state, "preprocessing": preprocessing}, path
    )
