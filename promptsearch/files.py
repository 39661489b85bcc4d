"""Paths a user names: read only regular files, and never write over anything that is not one.

A FIFO given as an input would block a read forever; a device or a link to one given as an output
would be replaced by a regular file (as root, ``-o /dev/null`` would replace the system's own entry).
Both are refused with one message that says what the path is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from promptsearch.errors import ConfigError, PromptsearchError

__all__ = ["describe", "readable_file", "writable_file"]


def describe(path: Path) -> str:
    """What ``path`` is, in words (following links): 'a regular file', 'a folder', 'a FIFO', ..."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a broken link" if path.is_symlink() else "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def readable_file(path: str | Path, what: str, *, error: type[PromptsearchError] = ConfigError, hint: str = "") -> Path:
    """``path`` if it is a regular file this process may read; else ``error`` naming ``what`` and what it is."""
    path = Path(path)
    kind = describe(path)
    if kind == "missing":
        raise error(f"{what} {path}: no such file{hint}")
    if kind != "a regular file":
        raise error(f"{what} {path}: expected a regular file, but it is {kind}{hint}")
    if not os.access(path, os.R_OK):
        raise error(f"{what} {path}: this file is not readable by this user; check its permissions")
    return path


def writable_file(path: str | Path, what: str) -> Path:
    """``path`` if writing a new regular file there (replacing a regular file) is safe.

    A link to a regular file resolves to that file, so the link stays and its target is replaced.
    """
    path = Path(path)
    kind = describe(path)
    if kind not in ("missing", "a regular file"):
        raise ConfigError(
            f"{what} {path}: expected the path of a regular file to write, but it is {kind}; "
            "promptsearch never writes over anything else. Give another path"
        )
    return path.resolve() if path.is_symlink() else path
