"""The manifest of a saved model folder: the files a save wrote, with their sizes and SHA-256, and what the model is.

A save (``--save-model``, :meth:`Model.save <promptsearch.inference.predict.Model.save>`) writes
``.promptsearch-model.json`` last, so a folder that has it was written completely. ``predict`` and ``load`` check
the folder against it before anything is loaded: a file that is missing, truncated, edited or not written by the
save is refused with one message naming it. A save replaces only a folder that holds exactly the files its manifest
lists (:func:`listed_files`), so it never deletes a file it did not write.

Saves by earlier versions list the file names only (no sizes, hashes, labels or model): they still load, with a
warning that a changed file cannot be detected; saving such a model again (``promptsearch.load(DIR).save(NEW)``)
writes a full manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptsearch.errors import ConfigError

__all__ = [
    "ADAPTER_FILE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "PROMPT_FILE",
    "FileDigest",
    "Manifest",
    "check_agrees",
    "listed_files",
    "read_manifest",
    "verify_folder",
    "write_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST_FILE = ".promptsearch-model.json"
MANIFEST_FORMAT = "promptsearch/model@2"
PROMPT_FILE = "best_prompt.yaml"
ADAPTER_FILE = "adapter_config.json"
TOKENIZER_FILE = "tokenizer_config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")  # torch.save and pickle files
_LISTED = 8  # problems named in one message
_RESAVE = (
    "save it again (`promptsearch train best_prompt.yaml --save-model DIR`, or `promptsearch.load(DIR).save(NEW)` "
    "from an intact copy), or restore the folder from a copy; nothing was loaded"
)


class FileDigest(BaseModel):
    """One file as the save wrote it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """What ``.promptsearch-model.json`` holds. ``files`` is a list of names in saves by earlier versions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["promptsearch/model@2"] | None = None
    files: dict[str, FileDigest] | list[str]
    labels: list[str] | None = None
    model: str | None = Field(None, description="model.name of the prompt config: the checkpoint it started from")
    head: str | None = None
    promptsearch: str | None = Field(None, description="the version that saved it")

    @property
    def names(self) -> set[str]:
        return set(self.files)

    @property
    def hashed(self) -> bool:
        """Whether the sizes and hashes are recorded (a save by this version)."""
        return isinstance(self.files, dict)


def _present(folder: Path) -> set[str]:
    """The files (and links) in ``folder`` and below it, by relative name, the manifest left out."""
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir() or p.is_symlink()}
    present.discard(MANIFEST_FILE)
    return present


def read_manifest(folder: Path) -> Manifest:
    """The manifest of ``folder``; :class:`ConfigError` when it is missing, a link, unreadable or not a manifest."""
    path = folder / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        found = "a link" if path.is_symlink() else ("something else" if path.exists() else "missing")
        raise ConfigError(
            f"{folder}: {MANIFEST_FILE} is {found}; a save writes it last, so the save did not finish or the folder "
            f"was not written by promptsearch; {_RESAVE}"
        )
    try:
        return Manifest.model_validate_json(path.read_bytes(), strict=True)
    except PermissionError:
        raise ConfigError(f"{folder}: this user may not read {path}; give it read permission (chmod a+r)") from None
    except (OSError, ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not a valid promptsearch model manifest ({first}); {_RESAVE}") from None


def listed_files(folder: Path) -> set[str] | None:
    """The files the save in ``folder`` wrote; None unless the folder holds exactly those (and the manifest)."""
    try:
        manifest = read_manifest(folder)
    except ConfigError:
        return None
    return manifest.names if _present(folder) == manifest.names else None


def _digest(path: Path) -> FileDigest:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return FileDigest(size=size, sha256=sha.hexdigest())


def write_manifest(folder: Path, *, labels: Sequence[str], model: str, head: str, version: str) -> Manifest:
    """Write the manifest of every file now in ``folder`` (call it last: its presence means the save finished)."""
    files = {name: _digest(folder / name) for name in sorted(_present(folder))}
    manifest = Manifest(
        format=MANIFEST_FORMAT, files=files, labels=list(labels), model=model, head=head, promptsearch=version
    )
    text = json.dumps(manifest.model_dump(mode="json"), indent=1, ensure_ascii=False)
    (folder / MANIFEST_FILE).write_text(text + "\n", encoding="utf-8")
    return manifest


def _file_problem(folder: Path, name: str, recorded: FileDigest | None) -> str | None:
    """What is wrong with one listed file: missing, unreadable, truncated, changed, a pickle; None when it is intact."""
    path = folder / name
    if path.is_symlink() or (path.exists() and not path.is_file()):
        return f"{name} is not a regular file (a link or a folder)"
    if not path.exists():
        return f"{name} is missing"
    if name.endswith(PICKLE_SUFFIXES):
        return f"{name} is a pickle, which can run code when loaded; promptsearch loads weights only from safetensors"
    try:
        found = _digest(path) if recorded is not None else None
    except PermissionError:
        return f"this user may not read {path}; give it read permission (chmod a+r)"
    if recorded is not None and found is not None:
        if found.size < recorded.size:
            return f"{name} is shorter than saved ({found.size} of {recorded.size} bytes: truncated or edited)"
        if found != recorded:
            return f"{name} changed since the save (its size or SHA-256 differs from the one recorded)"
    if name.endswith(".safetensors"):
        return _safetensors_problem(path, name)
    return None


def _safetensors_problem(path: Path, name: str) -> str | None:
    """A weights file must be safetensors; a pickle or anything else in its place is never handed to torch."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            return None
    except PermissionError:
        return f"this user may not read {path}; give it read permission (chmod a+r)"
    except Exception as exc:  # SafetensorError: a pickle, a zip archive, a truncated header ...
        with path.open("rb") as fh:
            head = fh.read(2)
        what = " (it looks like a pickle)" if head[:1] == b"\x80" or head == b"PK" else ""
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        return f"{name} is not a safetensors file{what} ({first}); promptsearch never unpickles weights"


def _required(manifest: Manifest) -> list[str]:
    """Files every save writes: the prompt config, the tokenizer, the weights (and the model config without LoRA)."""
    names = manifest.names
    missing = [n for n in (PROMPT_FILE, TOKENIZER_FILE) if n not in names]
    if not any(n.endswith(".safetensors") for n in names):
        missing.append("a weights file (*.safetensors)")
    if ADAPTER_FILE not in names and "config.json" not in names:
        missing.append("config.json")
    return [f"the manifest lists no {n}, which every save writes" for n in missing]


def verify_folder(folder: Path, *, warn: bool = True) -> Manifest:
    """Check ``folder`` against its manifest; raise one :class:`ConfigError` naming every problem found.

    Refused: a missing or damaged manifest, a listed file that is missing, unreadable, truncated or changed (size
    or SHA-256), a file the save did not write, a weights file that is no safetensors file or is a pickle. A save
    by an earlier version (names only) is checked for the names and the weights' format, with a warning (``warn``).
    """
    manifest = read_manifest(folder)
    problems = _required(manifest)
    digests = manifest.files if isinstance(manifest.files, dict) else dict.fromkeys(manifest.files)
    for name in sorted(digests):
        problem = _file_problem(folder, name, digests[name])
        if problem is not None:
            problems.append(problem)
    extra = sorted(_present(folder) - manifest.names)
    problems += [f"{name} was not written by the save" for name in extra]
    if problems:
        more = f" (and {len(problems) - _LISTED} more)" if len(problems) > _LISTED else ""
        raise ConfigError(
            f"{folder}: the saved model is incomplete or changed since it was saved: "
            f"{'; '.join(problems[:_LISTED])}{more}; {_RESAVE}"
        )
    if warn and not manifest.hashed:
        logger.warning(
            "%s: saved by an earlier promptsearch, whose %s lists no sizes or hashes, so a changed file cannot be "
            "detected; save it again to add them: promptsearch.load(DIR).save(NEW_DIR)",
            folder,
            MANIFEST_FILE,
        )
    return manifest


def check_agrees(manifest: Manifest, folder: Path, *, labels: Sequence[str], model: str, head: str) -> None:
    """The prompt config must describe the model the manifest recorded: the same labels in the same order (the
    order of the head's outputs), the same checkpoint and the same head; else one :class:`ConfigError`."""
    where = folder / PROMPT_FILE
    found = []
    if manifest.labels is not None and list(manifest.labels) != list(labels):
        found.append(f"task.labels is {list(labels)}, but the model was saved with the labels {manifest.labels}")
    if manifest.model is not None and manifest.model != model:
        found.append(f"model.name is {model!r}, but the model was saved from {manifest.model!r}")
    if manifest.head is not None and manifest.head != head:
        found.append(f"model.head is {head!r}, but the model was saved with the {manifest.head!r} head")
    if found:
        raise ConfigError(f"{where}: {'; '.join(found)}; {_RESAVE}")
