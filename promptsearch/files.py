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

__all__ = ["creatable_folder", "describe", "readable_file", "writable_file"]


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


def creatable_folder(path: str | Path, what: str) -> Path:
    """``path`` if it is a folder this process may write in, or one ``mkdir -p`` can make; creates nothing.

    Checked before any work, so that a run never trains (or creates its study) and then fails to write
    its run folder: no name may be longer than the file system allows, every existing part of the path
    must be a folder, and the deepest existing one writable.
    """
    path = Path(path)
    parts = path.absolute().parts  # not normalised: "a/../b" needs "a" to be a folder, as mkdir does
    _check_names(path, parts, what)
    existing = Path(parts[0])
    for i in range(1, len(parts) + 1):
        here = Path(*parts[:i])
        kind = describe(here)
        if kind == "missing":
            break
        if kind != "a folder":
            where = "it" if i == len(parts) else here
            raise ConfigError(
                f"{what} {path}: expected a folder (or a path where one can be made), but {where} is {kind}; "
                "give another path"
            )
        existing = here
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{what} {path}: this user may not write in the folder {existing}; give another path or change "
            "its permissions"
        )
    return path


def _check_names(path: Path, parts: tuple[str, ...], what: str) -> None:
    try:
        limit = os.pathconf(parts[0], "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for name in parts[1:]:
        if len(os.fsencode(name)) > limit:
            raise ConfigError(
                f"{what} {path}: the name {name[:40]}... is longer than the file system allows ({limit} bytes); "
                "give a shorter path"
            )
