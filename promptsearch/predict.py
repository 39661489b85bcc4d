"""Save a fine-tuned model with its prompt config, and label new texts with it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptsearch.data import Example
from promptsearch.errors import ConfigError, DataError
from promptsearch.export import PromptExport, load_prompt_config, write_prompt_config

if TYPE_CHECKING:
    from promptsearch.objective import TrialRunner

__all__ = ["Prediction", "Predictor", "check_save_target", "save_model"]

PROMPT_FILE = "best_prompt.yaml"
ADAPTER_FILE = "adapter_config.json"


def check_save_target(directory: str | Path) -> Path:
    """Refuse, before any training, a target that is a file or a folder holding something else."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--save-model {directory}: this is a file; give a folder path")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / PROMPT_FILE).is_file():
        raise ConfigError(
            f"--save-model {directory}: the folder is not empty and holds no saved promptsearch model; "
            "give a new or empty folder (a previous save there is replaced)"
        )
    return directory


def save_model(runner: TrialRunner, export: PromptExport, directory: Path) -> Path:
    """Write the runner's current model and tokenizer (Hugging Face format) and the prompt config.

    After LoRA training only the adapter is written (with a trained classification head, when there
    is one, and the weights the checkpoint lacked); ``Predictor`` loads the base model named in the
    prompt config and applies it. The folder is built next to ``directory`` and moved into place,
    so it is never half-written.
    """
    from safetensors.torch import save_file

    from promptsearch.modeling import MISSING_WEIGHTS_FILE

    directory = check_save_target(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    runtime = runner.last_runtime  # the model of the config just trained (with a model list: the chosen one)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        if runtime.peft is not None:
            runtime.peft.save_pretrained(tmp, save_embedding_layers=False)
            missing = runtime.missing_weights()
            if missing:
                save_file({k: v.contiguous() for k, v in missing.items()}, str(tmp / MISSING_WEIGHTS_FILE))
        else:
            runtime.model.save_pretrained(tmp, safe_serialization=True)
        runtime.tokenizer.save_pretrained(tmp)
        write_prompt_config(export, tmp / PROMPT_FILE)
        if directory.exists():  # a previous save (check_save_target refused anything else)
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    probabilities: dict[str, float]


class Predictor:
    """A saved model folder (from ``--save-model``) ready to label new rows."""

    def __init__(self, directory: str | Path, *, device: str | None = "auto") -> None:
        from promptsearch.device import resolve_device
        from promptsearch.modeling import ModelRuntime

        self.directory = Path(directory)
        prompt_file = self.directory / PROMPT_FILE
        if not prompt_file.is_file():
            raise ConfigError(
                f"{self.directory}: not a promptsearch model folder (no {PROMPT_FILE}); "
                "create one with `promptsearch train best_prompt.yaml --save-model DIR`"
            )
        self.export = load_prompt_config(prompt_file)
        labels = self.export.task.labels
        if (self.directory / ADAPTER_FILE).is_file():  # LoRA: the base model, then the adapter
            self.runtime = ModelRuntime(self.export.model, labels, resolve_device(device), warn_missing=False)
            self._apply_adapter()
        else:
            update = {"name": str(self.directory), "revision": None, "gguf_file": None}
            self.runtime = ModelRuntime(self.export.model.model_copy(update=update), labels, resolve_device(device))
        self.calibration = self.export.calibration
        if self.export.prompt.calibration != "none" and not self.export.train.trains and self.calibration is None:
            raise ConfigError(
                f"{prompt_file}: prompt.calibration is '{self.export.prompt.calibration}' but the file holds no "
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

        from promptsearch.modeling import MISSING_WEIGHTS_FILE, quiet_peft

        model = self.runtime.model
        missing = self.directory / MISSING_WEIGHTS_FILE
        if missing.is_file():
            state = load_file(str(missing), device=str(self.runtime.device))
            model.load_state_dict(state, strict=False)
        with quiet_peft():
            PeftModel.from_pretrained(model, str(self.directory))  # injects the adapter into ``model`` in place
        model.eval()

    def predict_rows(self, rows: Sequence[dict[str, Any]], *, source: str = "input") -> list[Prediction]:
        from promptsearch.calibration import apply_calibration
        from promptsearch.features import encode
        from promptsearch.trainer import predict_proba

        task = self.export.task
        examples = []
        for i, row in enumerate(rows, start=1):
            fields = {}
            for f in task.text_fields:
                value = row.get(f)
                if not isinstance(value, str) or not value.strip():
                    found = "it missing" if f not in row else repr(value)
                    raise DataError(
                        f"{source}: row {i}: text field '{f}' must be a non-empty string, but found {found}"
                    )
                fields[f] = value
            examples.append(Example(fields=fields, label=task.labels[0], source=source, row=i))
        if not examples:
            return []
        encoded = apply_calibration(encode(self.runtime, self.export.prompt, examples, self.pool), self.calibration)
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
