r"""Where training runs and in which precision: device choice, bf16 autocast, and where losses are summed.

Example:
    >>> resolve_device("cpu"), resolve_mixed_precision("auto", torch.device("cpu"))
    (device(type='cpu'), False)
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["resolve_device", "mps_available", "resolve_mixed_precision", "autocast", "float64_device"]


def mps_available() -> bool:
    """Whether Apple's MPS backend exists in this torch build and is usable on this machine."""
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
            if mps_available():
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
        if not mps_available():
            raise ValueError("device 'mps' was requested but Apple's MPS backend is not available here")
        return resolved
    raise ValueError(f"device type {resolved.type!r} is not supported by the Trainer; use 'cpu', 'cuda' or 'mps'")


def resolve_mixed_precision(mixed_precision: bool | str, device: torch.device) -> bool:
    """Whether to run the model under bf16 autocast: ``"auto"`` (on for CUDA with bf16), ``True`` or ``False``.

    Raises:
        ValueError: for ``True`` on a device other than CUDA, or a value other
            than ``"auto"``, ``True`` and ``False``.

    Example:
        >>> resolve_mixed_precision(False, torch.device("cpu"))
        False
    """
    if mixed_precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    if mixed_precision is True:
        if device.type != "cuda":
            raise ValueError(
                f"Trainer: mixed_precision=True needs a CUDA device (bf16 autocast), but the device is "
                f"{device}; use mixed_precision='auto' or False"
            )
        return True
    if mixed_precision is False:
        return False
    raise ValueError(f"Trainer: mixed_precision must be 'auto', True or False, got {mixed_precision!r}")


def autocast(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast("cuda", dtype=torch.bfloat16)`` if ``enabled``, else a context that does nothing.

    Layers compute their transforms and log-determinants in full precision
    inside it (:func:`flowlib.core.full_precision`); only the conditioner
    networks run in bf16.
    """
    if enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def float64_device(device: torch.device) -> torch.device:
    """Where losses are summed in float64: ``device`` itself, or the CPU for MPS (which has no float64).

    Example:
        >>> float64_device(torch.device("cpu"))
        device(type='cpu')
    """
    return torch.device("cpu") if device.type == "mps" else device
