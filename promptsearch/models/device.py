"""Device choice (cuda, then mps, then cpu) and the matching mixed-precision context.

Precision ``auto`` means bf16 autocast where the hardware computes in bf16 natively (CUDA GPUs that
support it; CPUs with AVX512-BF16 or AMX), fp32 elsewhere. ``benchmarks/precision.py`` checks that
the test scores stay those of fp32 and measures the gain.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "autocast", "native_bf16", "peak_memory_mb", "resolve_device", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16")


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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (not emulated, which is slower than fp32)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # x86; private but stable since 2.3
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(device: torch.device, requested: str = "auto") -> str:
    """``fp32`` or ``bf16`` (autocast) for ``device``; ``auto`` picks bf16 where it is native."""
    if requested not in PRECISIONS:
        raise ConfigError(f"model.precision: '{requested}' is not a precision; use {', '.join(PRECISIONS)}")
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if requested == "bf16" and device.type not in ("cuda", "cpu"):
        raise ConfigError(f"model.precision: bf16 autocast is not supported on {device.type}; use fp32 or auto")
    return requested


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager[object]:
    """bf16 autocast when ``precision`` resolves to bf16 on ``device``; full precision otherwise."""
    import torch

    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
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
