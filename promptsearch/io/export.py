"""The exported best prompt: a self-contained YAML file that reloads, re-runs and labels new data.

``write_prompt_config`` writes atomically (temporary file, then rename), so an interrupted write
never leaves a truncated file. ``load_prompt_config`` reads it back into :class:`PromptExport`;
the round trip is exact. ``export_to_space`` turns it into a one-point search space.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptsearch.errors import ConfigError
from promptsearch.files import describe, readable_file, writable_file
from promptsearch.space.config import CalibrationParams, PromptConfig, TrainConfig
from promptsearch.space.search_space import SearchSpace, parse_space
from promptsearch.space.spec import DataSource, FewShot, ModelSpec, Splits

__all__ = ["EXPORT_FORMAT", "PromptExport", "export_to_space", "load_prompt_config", "write_prompt_config"]

EXPORT_FORMAT = "promptsearch/best-prompt@1"


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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file ({str(exc).splitlines()[0]}); export it again") from None
    if not isinstance(raw, dict) or raw.get("format") != EXPORT_FORMAT:
        found = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ConfigError(
            f"{path}: not a promptsearch best-prompt file (expected format: {EXPORT_FORMAT}, found {found!r})"
        )
    try:
        return PromptExport.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10]]
        raise ConfigError("\n".join(lines) + "\nThe file was changed by hand or truncated; export it again.") from None


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
