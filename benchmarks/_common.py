"""Helpers shared by the benchmark scripts: the common options, quiet libraries, the machine/versions record,
writing the results, test capping, tiny smoke models, and a ``Trainer.hyperparameter_search`` run over the
text alone (the peer a user would pick)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptsearch.io.data import Example

REPO = Path(__file__).resolve().parents[1]


def bench_parser(
    doc: str | None, *, smoke: str, threads: int = 2, device: str | None = None
) -> argparse.ArgumentParser:
    """The options every benchmark has: ``--threads``, ``--out``, ``--smoke`` (and ``--device`` when given a default).

    The description is the first line of ``doc`` (the script's docstring); ``smoke`` says what the smoke mode runs.
    """
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the results")
    parser.add_argument("--smoke", action="store_true", help=f"{smoke} (CI)")
    if device is not None:
        parser.add_argument("--device", default=device, help="cpu, cuda or auto")
    return parser


def write_results(out: Path, name: str, record: dict[str, Any], markdown: str, *, title: str | None = None) -> None:
    """``<out>/<name>.json`` (the record) and ``<out>/<name>.md`` (``# title`` then the markdown)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text((f"# {title}\n\n" if title else "") + markdown, encoding="utf-8")


def tiny_bert(tmp: Path) -> str:
    """A tiny random BERT built offline (the one the tests use), for the smoke modes."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from tiny import build_tiny_bert

    return str(build_tiny_bert(tmp / "bert"))


def tiny_causal(tmp: Path) -> str:
    """A tiny random Llama with a byte-level BPE tokenizer and a chat template, for the smoke modes."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from tiny import build_tiny_causal

    return str(build_tiny_causal(tmp / "lm"))


def quiet(threads: int) -> None:
    """Torch on ``threads`` CPU threads; Optuna, transformers and promptsearch log warnings only."""
    import logging

    import optuna
    import torch
    import transformers

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("promptsearch").setLevel(logging.WARNING)


def record_header(name: str, *, threads: int, device: str, packages: Sequence[str] = ()) -> dict[str, Any]:
    """The ``benchmark``, ``date``, ``machine`` and ``versions`` keys every results JSON starts with."""
    names = ["torch", "transformers", "optuna", *packages]
    found: dict[str, str | None] = {}
    for package in names:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cpu_threads": threads,
            "device": device,
        },
        "versions": found,
    }


def cap_lines(path: Path, n: int | None, out: Path, *, seed: int = 0) -> Path:
    """``n`` rows of a JSONL file drawn with ``random.Random(seed)``, kept in file order (all if n is None).

    A seeded sample, not the first n rows: some test files (LM-BFF's MR and SUBJ) are sorted by label.
    ``data/mr/test-500.jsonl`` and ``data/subj/test-500.jsonl`` are this sample of 500.
    """
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if n is not None and n < len(lines):
        keep = sorted(random.Random(seed).sample(range(len(lines)), n))
        lines = [lines[i] for i in keep]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def smoke_space(raw: dict[str, Any], tmp: Path, *, epochs: int = 1) -> dict[str, Any]:
    """``raw`` (a parsed space file) on a tiny random BERT built offline, ``epochs`` epochs (baseline too): CI.

    A space with a list of models keeps the list; every model reads the same tiny BERT.
    """
    tiny = tiny_bert(tmp)
    for model in raw["model"] if isinstance(raw["model"], list) else [raw["model"]]:
        model["name"] = tiny
    raw["train"]["epochs"] = epochs
    raw["baseline"] = {**raw.get("baseline", {}), "epochs": epochs}
    return raw


# --- Trainer.hyperparameter_search on the texts alone ---------------------------------------------------------


def hp_space_from(train: dict[str, Any]) -> Callable[[Any], dict[str, Any]]:
    """An Optuna ``hp_space`` for the Trainer from a promptsearch space's ``train:`` section.

    Ranges and choices of ``learning_rate``, ``batch_size``, ``epochs`` and ``weight_decay`` are searched the
    same way (a ``when:`` condition is ignored: the Trainer always fine-tunes the whole model); fixed values
    are passed as they are.
    """
    names = {
        "learning_rate": "learning_rate",
        "batch_size": "per_device_train_batch_size",
        "epochs": "num_train_epochs",
        "weight_decay": "weight_decay",
        "warmup_ratio": "warmup_steps",  # transformers 5: a float below 1 is a ratio of the steps
    }

    def hp_space(trial: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, arg in names.items():
            if key not in train:
                continue
            value = train[key]
            if isinstance(value, dict) and "choices" in value:
                value = value["choices"]
            if isinstance(value, list):
                out[arg] = trial.suggest_categorical(key, value)
            elif isinstance(value, dict) and "low" in value:
                if isinstance(value["low"], int) and isinstance(value["high"], int):
                    out[arg] = trial.suggest_int(key, value["low"], value["high"])
                else:
                    low, high = float(value["low"]), float(value["high"])
                    out[arg] = trial.suggest_float(key, low, high, log=bool(value.get("log", False)))
            elif isinstance(value, dict) and "value" in value:
                out[arg] = value["value"]
            else:
                out[arg] = value
        return out

    return hp_space


def plain_training_args(out: Path, seed: int, *, epochs: int = 10) -> Any:
    """``TrainingArguments`` of plain fine-tuning as a typical user sets them: lr 2e-5, batch 8, weight decay
    0.01, 10 % warmup, clipping 1.0, dev after every epoch, nothing saved or logged; the rest the Trainer's defaults.
    """
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out),
        learning_rate=2e-5,
        num_train_epochs=epochs,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=64,
        weight_decay=0.01,
        warmup_steps=0.1,  # a float below 1 is a ratio of the steps (transformers 5)
        max_grad_norm=1.0,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        seed=seed,
        disable_tqdm=True,
    )


def trainer_search(
    model_dir: str,
    *,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example],
    text_fields: Sequence[str],
    labels: Sequence[str],
    metric: str,
    hp_space: Callable[[Any], dict[str, Any]],
    n_trials: int,
    seed: int,
    max_length: int,
    out: Path,
) -> dict[str, Any]:
    """``Trainer.hyperparameter_search`` (Optuna backend, TPE seeded with ``seed``) over ``hp_space``, scored
    on dev after the last epoch; then, as a user would, the best hyperparameters are trained once more and
    that model scores test. Returns ``{"test", "dev", "hyperparameters"}``.
    """
    import numpy as np
    import optuna
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        PrinterCallback,
        Trainer,
    )

    from promptsearch.models.metrics import compute_metric

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def dataset(rows: Sequence[Example]) -> Dataset:
        texts = [[ex.fields[f] for ex in rows] for f in text_fields]
        enc = tokenizer(*texts, truncation=True, max_length=max_length)
        return Dataset.from_dict({**enc, "labels": [labels.index(ex.label) for ex in rows]})

    def model_init(trial: Any = None) -> Any:
        return AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels))

    def score(pred: Any) -> dict[str, float]:
        return {metric: compute_metric(metric, list(pred.label_ids), list(np.argmax(pred.predictions, -1)))}

    args = plain_training_args(out, seed)
    train_ds, dev_ds = dataset(train), dataset(dev)
    trainer = Trainer(
        model_init=model_init,
        args=args,
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        processing_class=tokenizer,
        compute_metrics=score,
    )
    trainer.remove_callback(PrinterCallback)  # the metrics of every epoch would go to stdout
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        n_trials=n_trials,
        direction="maximize",
        backend="optuna",
        compute_objective=lambda metrics: metrics[f"eval_{metric}"],
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    final = Trainer(
        model_init=model_init,
        args=dataclasses.replace(args, **hp_space(optuna.trial.FixedTrial(best.hyperparameters))),
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        processing_class=tokenizer,
        compute_metrics=score,
    )
    final.remove_callback(PrinterCallback)
    final.train()
    result = final.predict(dataset(test))
    return {
        "test": float(result.metrics[f"test_{metric}"]),
        "dev": float(best.objective),  # type: ignore[arg-type]
        "hyperparameters": json.loads(json.dumps(best.hyperparameters, default=str)),
    }
