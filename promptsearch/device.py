"""Device choice (cuda, then mps, then cpu) and the matching mixed-precision context."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["autocast", "peak_memory_mb", "resolve_device"]


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must be available or it is refused."""
    import torch

    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device: '{name}' is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available on this machine; use --device cpu or auto")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on GPUs that support it; full precision elsewhere."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def reset_peak_memory(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory since the last reset, or the process's peak RSS on CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def free_memory(device: torch.device) -> None:
    """Return cached accelerator memory; on CPU, reference counting already freed the trial's tensors."""
    import gc

    import torch

    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
    elif device.type == "mps":
        gc.collect()
        torch.mps.empty_cache()
