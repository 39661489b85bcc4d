"""Save a fine-tuned model with its prompt config, and label new texts with it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError, DataError
from promptsearch.inference.manifest import (
    ADAPTER_FILE,
    MANIFEST_FILE,
    PROMPT_FILE,
    check_agrees,
    listed_files,
    verify_folder,
    write_manifest,
)
from promptsearch.io.data import Example
from promptsearch.io.export import PromptExport, load_prompt_config, write_prompt_config
from promptsearch.io.rows import text_problem
from promptsearch.versions import versions

if TYPE_CHECKING:
    import numpy as np

    from promptsearch.models.runtime import ModelRuntime

__all__ = [
    "ADAPTER_FILE",
    "MODEL_MARKER",
    "PROMPT_FILE",
    "Model",
    "Prediction",
    "Predictor",
    "check_save_target",
    "save_model",
    "save_runtime",
]

MODEL_MARKER = MANIFEST_FILE
"""Written last by a save, and only by a save: the files that save wrote, with their sizes and SHA-256
(:mod:`promptsearch.inference.manifest`). A folder is replaced only when it holds exactly those files (and the
manifest); everything else is refused. ``predict`` and ``load`` check the folder against it."""


def check_save_target(directory: str | Path) -> Path:
    """Refuse, before any training, a target that promptsearch may not replace.

    promptsearch never deletes a file it did not write: the target must be new, an empty folder, or a
    folder that holds exactly what an earlier ``--save-model`` wrote (its marker lists those files).
    """
    directory = Path(directory)
    flag = f"--save-model {directory}"
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise ConfigError(f"{flag}: this is a file or a link, not a folder; give a new folder path")
    resolved = directory.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise ConfigError(
            f"{flag}: this is the current folder (or holds it); give a new folder path, e.g. {flag}/model"
        )
    if directory.is_dir() and any(directory.iterdir()) and listed_files(directory) is None:
        raise ConfigError(
            f"{flag}: the folder is not empty and is not (exactly) an earlier promptsearch model save, which is "
            f"the only folder a save replaces; give a new or empty folder. Nothing was changed"
        )
    return directory


def _write_marker(tmp: Path, export: PromptExport) -> None:
    model = export.model
    write_manifest(
        tmp, labels=export.task.labels, model=model.name, head=model.head, version=versions()["promptsearch"]
    )


def _make_readable(tmp: Path) -> None:
    """``mkdtemp`` makes an owner-only folder; a saved model gets the permissions of any new folder (umask)."""
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)
    for path in tmp.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def save_model(runtime: ModelRuntime, export: PromptExport, directory: Path) -> Path:
    """Write ``runtime``'s model as it is now and its tokenizer (Hugging Face format), and the prompt config.

    After LoRA training only the adapter is written (with a trained classification head, when there
    is one, and the weights the checkpoint lacked); ``Predictor`` loads the base model named in the
    prompt config and applies it. The folder is built next to ``directory`` and moved into place,
    so it is never half-written.
    """
    return save_runtime(runtime, export, directory)


def save_runtime(runtime: ModelRuntime, export: PromptExport, directory: str | Path) -> Path:
    """Write ``runtime``'s model and tokenizer and the prompt config to ``directory`` (see :func:`save_model`)."""
    from safetensors.torch import save_file

    from promptsearch.models.runtime import MISSING_WEIGHTS_FILE

    def fill(tmp: Path) -> None:
        if runtime.peft is not None:
            runtime.peft.save_pretrained(tmp, save_embedding_layers=False)
            missing = runtime.missing_weights()
            if missing:
                save_file({k: v.contiguous() for k, v in missing.items()}, str(tmp / MISSING_WEIGHTS_FILE))
        else:
            runtime.model.save_pretrained(tmp, safe_serialization=True)
        runtime.tokenizer.save_pretrained(tmp)
        write_prompt_config(export, tmp / PROMPT_FILE)

    return _write_save(Path(directory), fill, export)


def _copy_save(source: Path, export: PromptExport, directory: str | Path) -> Path:
    """Copy the files an earlier save wrote in ``source`` (checked against its manifest again now) to ``directory``,
    with a new manifest (so a save by an earlier version gains sizes and hashes)."""
    written = verify_folder(source, warn=False).names  # warned when it was loaded

    def fill(tmp: Path) -> None:
        for name in sorted(written):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, tmp / name)

    return _write_save(Path(directory), fill, export)


def _write_save(directory: Path, fill: Callable[[Path], None], export: PromptExport) -> Path:
    """Build the save in a new folder next to ``directory`` with ``fill``, then its manifest, then move it into
    place."""
    directory = check_save_target(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        fill(tmp)
        _write_marker(tmp, export)
        _make_readable(tmp)
        if directory.exists() and any(directory.iterdir()):
            _replace_previous_save(directory, tmp)
        else:
            if directory.exists():
                directory.rmdir()  # empty
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _replace_previous_save(directory: Path, tmp: Path) -> None:
    """Swap in the new save, deleting only the files the previous save listed (checked again just now)."""
    written = listed_files(directory)
    if written is None:
        raise ConfigError(
            f"--save-model {directory}: the folder changed during training and is no longer exactly an earlier "
            "promptsearch model save; nothing was deleted. Give a new folder"
        )
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    directory.rename(old)
    tmp.rename(directory)
    for name in sorted(written, key=lambda n: -n.count("/")):
        (old / name).unlink(missing_ok=True)
    (old / MODEL_MARKER).unlink(missing_ok=True)
    for sub in sorted((p for p in old.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        sub.rmdir()
    old.rmdir()


def _checked_folder(directory: Path) -> PromptExport:
    """The prompt config of a saved model folder, once the folder is complete and consistent; else one message.

    The prompt config is checked on its own first (its labels, label words and demonstrations must agree, named by
    key), then the folder against its manifest (every file present and unchanged, nothing added, weights in
    safetensors), then the two against each other and against the saved head's labels.
    """
    prompt_file = directory / PROMPT_FILE
    if not prompt_file.exists() and not prompt_file.is_symlink() and not (directory / MANIFEST_FILE).exists():
        raise ConfigError(
            f"{directory}: not a promptsearch model folder (no {PROMPT_FILE}); "
            "create one with `promptsearch train best_prompt.yaml --save-model DIR`"
        )
    export = load_prompt_config(prompt_file) if prompt_file.exists() or prompt_file.is_symlink() else None
    manifest = verify_folder(directory)
    export = export or load_prompt_config(prompt_file)
    model = export.model
    check_agrees(manifest, directory, labels=export.task.labels, model=model.name, head=model.head)
    _check_head_labels(directory, export)
    return export


def _check_head_labels(directory: Path, export: PromptExport) -> None:
    """A head with one output per class (classification, embedding) stores the class names in ``config.json``; they
    must be the prompt config's labels in the same order, or every prediction would carry another label's name."""
    from promptsearch.models.heads import get_head

    config = directory / "config.json"
    labels = export.task.labels
    if "id2label" not in get_head(export.model.head).model_kwargs(labels) or not config.is_file():
        return
    try:
        saved = json.loads(config.read_text(encoding="utf-8")).get("id2label")
        names = [saved[key] for key in sorted(saved, key=int)] if isinstance(saved, dict) else None
    except (OSError, ValueError, TypeError, AttributeError):
        names = None
    if names is not None and names != list(labels):
        raise ConfigError(
            f"{directory / PROMPT_FILE}: task.labels is {list(labels)}, but the model's {export.model.head} head "
            f"was saved with the classes {names} (config.json id2label); restore the prompt config, or save the "
            "model again"
        )


def _check_tokenizer(directory: Path, runtime: ModelRuntime) -> None:
    """A tokenizer whose vocabulary files are gone loads as its special tokens alone (every word unknown)."""
    tokenizer = runtime.tokenizer
    specials = set(tokenizer.all_special_tokens)
    if len(tokenizer) <= len(specials):
        raise ConfigError(
            f"{directory}: the tokenizer has no vocabulary beyond its {len(specials)} special tokens, so every word "
            "would be unknown; its vocabulary file (tokenizer.json, vocab.txt ...) is missing. Save the model again"
        )


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    probabilities: dict[str, float]


class Predictor:
    """A saved model folder (from ``--save-model``) ready to label new rows."""

    def __init__(self, directory: str | Path, *, device: str | None = "auto") -> None:
        from promptsearch.models.device import resolve_device
        from promptsearch.models.runtime import ModelRuntime

        self.directory = Path(directory)
        self.export = _checked_folder(self.directory)
        labels = self.export.task.labels
        if (self.directory / ADAPTER_FILE).is_file():  # LoRA: the base model, then the adapter
            self.runtime = ModelRuntime(self.export.model, labels, resolve_device(device), warn_missing=False)
            self._apply_adapter()
        else:
            update = {"name": str(self.directory), "revision": None, "gguf_file": None}
            self.runtime = ModelRuntime(self.export.model.model_copy(update=update), labels, resolve_device(device))
        _check_tokenizer(self.directory, self.runtime)
        self._prepare(str(self.directory / PROMPT_FILE))

    def _prepare(self, where: str) -> None:
        """The calibration offsets and the demonstration pool, from the prompt config."""
        self.calibration = self.export.calibration
        if self.export.prompt.calibration != "none" and not self.export.train.trains and self.calibration is None:
            raise ConfigError(
                f"{where}: prompt.calibration is '{self.export.prompt.calibration}' but the file holds no "
                "calibration offsets; export it again with this version of promptsearch"
            )
        task = self.export.task
        self.pool = [
            Example(fields={f: row[f] for f in task.text_fields}, label=row[task.label_field])
            for row in self.export.demonstration_pool
        ]

    def _apply_adapter(self) -> None:
        from peft import PeftModel
        from safetensors.torch import load_file

        from promptsearch.models.runtime import MISSING_WEIGHTS_FILE, quiet_peft

        model = self.runtime.model
        missing = self.directory / MISSING_WEIGHTS_FILE
        if missing.is_file():
            state = load_file(str(missing), device=str(self.runtime.device))
            model.load_state_dict(state, strict=False)
        with quiet_peft():
            PeftModel.from_pretrained(model, str(self.directory))  # injects the adapter into ``model`` in place
        model.eval()

    def predict_rows(self, rows: Sequence[Mapping[str, Any]], *, source: str = "input") -> list[Prediction]:
        from promptsearch.models.calibration import apply_calibration
        from promptsearch.models.trainer import predict_proba

        task = self.export.task
        examples = []
        for i, row in enumerate(rows, start=1):
            fields = {}
            for f in task.text_fields:
                problem = text_problem(f, row)
                if problem is not None:
                    raise DataError(f"{source}: row {i}: {problem}")
                fields[f] = row[f]
            examples.append(Example(fields=fields, label=task.labels[0], source=source, row=i))
        if not examples:
            return []
        encoded = self.runtime.encoder.encode(self.export.prompt, examples, self.pool)
        encoded = apply_calibration(encoded, self.calibration)
        runtime = self.runtime
        probs = predict_proba(
            runtime.model, encoded, runtime.device, int(runtime.tokenizer.pad_token_id), runtime.precision
        )
        out = []
        for p in probs:
            k = int(p.argmax())
            out.append(
                Prediction(
                    task.labels[k],
                    float(p[k]),
                    {lab: float(x) for lab, x in zip(task.labels, p, strict=True)},
                )
            )
        return out


class Model(Predictor):
    """A trained prompt and model, in memory: ``predict``, ``predict_proba`` and ``save``.

    :func:`promptsearch.train` returns one; :func:`promptsearch.load` reads a saved folder back as one.
    Rows are dicts with the task's text fields, a ``pandas.DataFrame``, a ``datasets.Dataset``, or plain
    strings when the task has one text field. ``labels`` is the column order of ``predict_proba``.

    >>> model = promptsearch.train(study.best, data=data)         # doctest: +SKIP
    >>> model.predict(["a moving film"]), model.predict_proba(["a moving film"])  # doctest: +SKIP
    """

    scores: dict[str, Any]

    def __init__(self, directory: str | Path, *, device: str | None = "auto") -> None:
        super().__init__(directory, device=device)
        self.scores = {}

    @classmethod
    def from_runtime(
        cls, runtime: ModelRuntime, export: PromptExport, *, scores: Mapping[str, Any] | None = None
    ) -> Model:
        """The model ``runtime`` holds now, with its prompt config ``export`` (nothing is copied)."""
        self = cls.__new__(cls)
        self.directory = None  # type: ignore[assignment]
        self.export = export
        self.runtime = runtime
        self.scores = dict(scores or {})
        self._prepare(f"the prompt config of '{export.name}'")
        return self

    @property
    def labels(self) -> list[str]:
        return list(self.export.task.labels)

    def _as_rows(self, rows: Any) -> list[Mapping[str, Any]]:
        fields = self.export.task.text_fields
        if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # pandas.DataFrame
            return list(rows.to_dict(orient="records"))
        if isinstance(rows, str | Mapping):
            raise DataError(f"predict: expected a list of rows, but found one {type(rows).__name__}; wrap it in a list")
        out: list[Mapping[str, Any]] = []
        for i, row in enumerate(rows if isinstance(rows, Iterable) else [rows], start=1):
            if isinstance(row, str):
                if len(fields) != 1:
                    raise DataError(
                        f"predict: row {i}: a plain string, but the task has the text fields {fields}; "
                        "pass dicts with those keys"
                    )
                out.append({fields[0]: row})
            elif isinstance(row, Mapping):
                out.append(row)
            else:
                raise DataError(f"predict: row {i}: expected a dict or a string, but found {type(row).__name__}")
        return out

    def predict_proba(self, rows: Any) -> np.ndarray:
        """Class probabilities, one row per input and one column per label (in :attr:`labels` order)."""
        import numpy as np

        predictions = self.predict_rows(self._as_rows(rows))
        labels = self.labels
        return np.array([[p.probabilities[lab] for lab in labels] for p in predictions], dtype=np.float64).reshape(
            len(predictions), len(labels)
        )

    def predict(self, rows: Any) -> list[str]:
        """The most probable label of each row."""
        return [p.label for p in self.predict_rows(self._as_rows(rows))]

    def save(self, directory: str | Path) -> Path:
        """Write the model, its tokenizer and its prompt config to ``directory``; :func:`promptsearch.load` reads it.

        The same rules as ``--save-model``: ``directory`` must be new, empty, or an earlier save (which it
        replaces); a file promptsearch did not write is never deleted.
        """
        if self.directory is not None:
            return _copy_save(self.directory, self.export, directory)
        return save_runtime(self.runtime, self.export, directory)
