"""The exported best prompt: a self-contained YAML file that reloads, re-runs and labels new data.

``write_prompt_config`` writes atomically (temporary file, then rename), so an interrupted write
never leaves a truncated file. ``load_prompt_config`` reads it back into :class:`PromptExport`;
the round trip is exact. ``export_to_space`` turns it into a one-point search space.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from promptsearch.errors import ConfigError, SpaceError
from promptsearch.files import creatable_folder, describe, readable_file, writable_file
from promptsearch.io.rows import text_problem
from promptsearch.space.config import CalibrationParams, PromptConfig, TrainConfig
from promptsearch.space.search_space import SearchSpace, parse_space
from promptsearch.space.spec import DataSource, DevFromTrain, FewShot, ModelSpec, Splits
from promptsearch.space.yamlsafe import EXPORT_LIMITS, load_yaml, read_text

__all__ = ["EXPORT_FORMAT", "PromptExport", "export_to_space", "load_prompt_config", "write_prompt_config"]

EXPORT_FORMAT = "promptsearch/best-prompt@1"
_HAND_EDITED = "The file was changed by hand or truncated; export it again."


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExportedTask(_Frozen):
    text_fields: list[str]
    label_field: str
    labels: list[str]
    metric: str
    data: DataSource | None = None  # None: the data was passed in code
    splits: Splits = Field(default_factory=Splits)
    few_shot: FewShot | None = None
    dev_from_train: DevFromTrain | None = None

    @field_validator("label_field")
    @classmethod
    def _label_is_no_text(cls, label_field: str, info: ValidationInfo) -> str:
        """The label cannot also be a text of the prompt (predict would need the answer as input)."""
        if label_field in (info.data.get("text_fields") or []):
            raise ValueError(f"'{label_field}' is also in task.text_fields; the label field must be another column")
        return label_field


class TestScores(_Frozen):
    mean: float
    std: float
    scores: list[float]


class ExportedScores(_Frozen):
    metric: str
    dev: float | None = None
    dev_epoch: int | None = None
    test: TestScores | None = None
    baseline_dev: float | None = None
    baseline_test: TestScores | None = None


class PromptExport(_Frozen):
    """Everything needed to apply the best prompt again: model, prompt, training, scores, provenance."""

    format: Literal["promptsearch/best-prompt@1"] = "promptsearch/best-prompt@1"
    name: str
    space_file: str | None = None
    trial: int | None = None
    model: ModelSpec
    task: ExportedTask
    prompt: PromptConfig
    demonstration_pool: list[dict[str, str]] = Field(
        default_factory=list,
        validate_default=True,  # a pool left out is an empty pool, checked against the count alike
        description="Train rows the demonstrations are drawn from (empty when count is 0).",
    )
    calibration: CalibrationParams | None = Field(
        None, description="The calibration offsets of the best trial (from its train data), applied by predict."
    )
    generated: dict[str, Any] = Field(
        default_factory=dict,
        description="Which of the prompt's parts were generated (instruction, label_words) and from what.",
    )
    train: TrainConfig
    baseline_train: TrainConfig | None = Field(None, description="Training of the baseline the scores compare to.")
    params: dict[str, Any] = Field(default_factory=dict)
    scores: ExportedScores
    data_fingerprint: str
    versions: dict[str, str] = Field(default_factory=dict)

    @field_validator("demonstration_pool")
    @classmethod
    def _pool_fits_the_task(cls, pool: list[dict[str, str]], info: ValidationInfo) -> list[dict[str, str]]:
        """Each row holds exactly the task's text fields and label field, with a label of the task."""
        task, prompt = info.data.get("task"), info.data.get("prompt")
        if task is None:
            return pool  # the task itself is invalid, and reported
        if prompt is not None:
            _pool_fits_the_count(pool, prompt.demonstrations.count)
        keys = [*task.text_fields, task.label_field]
        for i, row in enumerate(pool):
            unknown = [k for k in row if k not in keys]
            if unknown:
                raise _mismatch(
                    (i, unknown[0]), f"unknown key; a row holds task.text_fields and task.label_field {keys}"
                )
            missing = [k for k in keys if k not in row]
            if missing:
                raise _mismatch((i, missing[0]), f"required key is missing; a row holds the keys {keys}")
            for name in task.text_fields:  # the data loader's rule: non-empty Unicode text (no lone surrogate)
                problem = text_problem(name, row)
                if problem is not None:
                    raise _mismatch((i, name), problem)
            if row[task.label_field] not in task.labels:
                raise _mismatch(
                    (i, task.label_field), f"label {row[task.label_field]!r} is not in task.labels {task.labels}"
                )
        return pool

    @field_validator("calibration")
    @classmethod
    def _offsets_fit_the_labels(cls, value: CalibrationParams | None, info: ValidationInfo) -> CalibrationParams | None:
        """One finite offset per label, from the calibration method the prompt names."""
        task, prompt = info.data.get("task"), info.data.get("prompt")
        if value is None or task is None or prompt is None:
            return value
        if value.method != prompt.calibration:
            raise _mismatch(("method",), f"{value.method!r}, but prompt.calibration is {prompt.calibration!r}")
        if len(value.offsets) != len(task.labels):
            raise _mismatch(
                ("offsets",), f"{len(value.offsets)} offset(s), but task.labels has {len(task.labels)} labels"
            )
        if not all(math.isfinite(x) for x in value.offsets):
            raise _mismatch(("offsets",), f"every offset must be a finite number, but found {value.offsets}")
        return value


def _pool_fits_the_count(pool: list[dict[str, str]], count: int) -> None:
    """Each prompt draws ``count`` demonstrations from the pool, as in training; a pool too small (or left over
    with a count of 0) contradicts the prompt it was exported with."""
    if count > len(pool):
        raise _mismatch(
            (),
            f"{len(pool)} row(s), but prompt.demonstrations.count is {count}: every prompt draws that many "
            "demonstrations from this pool, as it did in training",
        )
    if count == 0 and pool:
        raise _mismatch((), f"{len(pool)} row(s), but prompt.demonstrations.count is 0, so no prompt would use them")


def _mismatch(at: tuple[Any, ...], text: str) -> PydanticCustomError:
    """A cross-field error whose key path goes below the field (``demonstration_pool.3.label``)."""
    return PydanticCustomError("export_mismatch", "{text}", {"text": text, "at": at})


def _error_line(path: Path, error: Any) -> str:
    loc = (*error["loc"], *(error.get("ctx") or {}).get("at", ()))
    return f"{path}: {'.'.join(map(str, loc)) or '(top level)'}: {str(error['msg']).removeprefix('Value error, ')}"


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data and not any(line != line.rstrip() for line in data.split("\n")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, _str_presenter)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    creatable_folder(path.parent, f"cannot write {path}: its folder")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the path of a file to write")
    path = writable_file(path, "cannot write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_prompt_config(export: PromptExport, path: str | Path) -> Path:
    path = Path(path)
    header = (
        "# promptsearch best prompt: reload with promptsearch.load_prompt_config(path),\n"
        "# retrain with `promptsearch run THIS_FILE` or `promptsearch train THIS_FILE --save-model DIR`.\n"
    )
    atomic_write_text(path, header + dump_yaml(export.model_dump(mode="json")))
    return path


def load_prompt_config(path: str | Path) -> PromptExport:
    """Load an exported best prompt; a damaged or hand-broken file gets one clear message."""
    path = Path(path)
    if describe(path) == "missing":
        raise ConfigError(f"{path}: no such file; export one with `promptsearch export`")
    readable_file(path, "best-prompt file")
    try:
        text = read_text(path, limits=EXPORT_LIMITS, error=ConfigError)
        raw = load_yaml(text, where=str(path), limits=EXPORT_LIMITS, error=ConfigError).data
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file ({str(exc).splitlines()[0]}); export it again") from None
    if not isinstance(raw, dict) or raw.get("format") != EXPORT_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ConfigError(
            f"{path}: not a promptsearch best-prompt file (expected format: {EXPORT_FORMAT}, found {found!r})"
        )
    try:
        export = PromptExport.model_validate(raw, strict=True)  # no coercion: "yes" is no boolean, 2.0 no count
    except ValidationError as exc:
        lines = [_error_line(path, e) for e in exc.errors()[:10]]
        raise ConfigError("\n".join(lines) + "\n" + _HAND_EDITED) from None
    _check_as_space(export, path)
    return export


def _check_as_space(export: PromptExport, path: Path) -> None:
    """The export's task, model, prompt and training, checked by the search-space rules themselves.

    One set of rules: an exported prompt that ``promptsearch run`` or ``train`` would refuse (a template
    without ``{label}``, label words that miss a label, a head that cannot read the template ...) is refused
    when the file is read, by ``predict`` too, naming the file and the key.
    """
    try:
        parse_space(export_to_space_text(export), where=str(path), data_in_code=True)
    except SpaceError as exc:
        raise ConfigError("\n".join(exc.messages[:10]) + "\n" + _HAND_EDITED) from None


def is_export_file(path: str | Path) -> bool:
    if describe(Path(path)) != "a regular file":  # never open a FIFO or a device: the read would block
        return False
    try:
        with Path(path).open(encoding="utf-8") as fh:
            head = fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return f"format: {EXPORT_FORMAT}" in head


def export_to_space_text(export: PromptExport) -> str:
    """The export as a one-point search space (YAML text): every value fixed, one trial."""
    demos = export.prompt.demonstrations
    raw = {
        "name": export.name,
        "description": f"best prompt of '{export.name}' (trial {export.trial}), re-run",
        "task": export.task.model_dump(mode="json", exclude_none=True),
        "model": export.model.model_dump(mode="json", exclude_none=True),
        "prompt": {
            "instruction": export.prompt.instruction,
            # a plain (template-less) export still needs a template to be a valid space; train() uses
            # the export's own prompt config, so this placeholder is never rendered
            "template": export.prompt.template or " ".join(f"{{{f}}}" for f in export.task.text_fields) + " {label}",
            "label_words": export.prompt.label_words,
            "demonstrations": {
                "count": demos.count,
                "selection": demos.selection,
                "separator": demos.separator,
                **({"sets": [demos.set]} if demos.selection == "fixed" else {}),
            },
            "chat": export.prompt.chat,
            "calibration": export.prompt.calibration,
        },
        "train": export.train.model_dump(mode="json", exclude_none=True),
        "search": {"seed": export.prompt.seed, "n_trials": 1, "pruner": {"type": "none"}},
        "baseline": (export.baseline_train.model_dump(mode="json", exclude={"lora"}) if export.baseline_train else {}),
    }
    return dump_yaml(raw)


def export_to_space(export: PromptExport, path: Path | None = None, *, allow_plain: bool = False) -> SearchSpace:
    """The export as a one-point space. A plain (baseline) export only with ``allow_plain`` (for train)."""
    if export.prompt.template is None and not allow_plain:
        raise ConfigError(
            f"{path or 'this export'}: the best config is the plain fine-tuning baseline (no template), which "
            "`promptsearch run` would only compare with itself; retrain it with `promptsearch train` instead"
        )
    return parse_space(export_to_space_text(export), path=path, data_in_code=export.task.data is None)
