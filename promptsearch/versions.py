"""Versions of promptsearch and the libraries a result depends on (for reports and exports)."""

from __future__ import annotations

from importlib import metadata

__all__ = ["versions"]

_PACKAGES = ("promptsearch", "optuna", "transformers", "torch")


def versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out
