"""Shared fixtures. Foundation ones first (space files, data files, real task data); keep each small."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from promptsearch.io.data import Example, TaskData, load_task_data
from promptsearch.space.spec import TaskSpec

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-long", action="store_true", help="run the hypothesis fuzzers with many more examples (minutes)"
    )


def pytest_configure(config: pytest.Config) -> None:
    import os

    if config.getoption("--fuzz-long"):
        os.environ["PROMPTSEARCH_FUZZ_LONG"] = "1"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before any test imports mlflow: no network


# --- foundation: paths, space files, data files ---------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository checkout (holds search_spaces/ and data/)."""
    return REPO_ROOT


@pytest.fixture
def write_space(tmp_path: Path) -> Callable[..., Path]:
    """``write_space(text, name="space.yaml") -> path``: a space file in ``tmp_path``.

    Next to it, ``sst2/`` is a copy of the real SST-2 16-shot split (train.jsonl, dev.jsonl), so a space can
    say ``data: {dir: sst2}`` and exercise relative paths.
    """

    def write(text: str, name: str = "space.yaml") -> Path:
        data = tmp_path / "sst2"
        if not data.exists():
            shutil.copytree(REPO_ROOT / "data" / "sst2" / "16-13", data)
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def write_jsonl() -> Callable[[Path, Iterable[Mapping[str, Any]]], Path]:
    """``write_jsonl(path, rows) -> path``: one JSON object per line, parent folders created."""

    def write(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return path

    return write


# --- foundation: real task data -------------------------------------------------------------------


def _local_task(**fields: Any) -> TaskSpec:
    return TaskSpec.model_validate(fields)


@pytest.fixture(scope="session")
def sst2_data() -> TaskData:
    """SST-2, LM-BFF 16-shot split (seed 13): 32 train and 32 dev rows, labels negative/positive."""
    task = _local_task(data={"dir": str(REPO_ROOT / "data" / "sst2" / "16-13")}, labels=["negative", "positive"])
    return load_task_data(task, REPO_ROOT)


@pytest.fixture(scope="session")
def rte_train() -> list[Example]:
    """RTE 16-shot train rows: sentence pairs (text_a, text_b), labels entailment/not_entailment."""
    task = _local_task(
        data={"dir": str(REPO_ROOT / "data" / "rte" / "16-13")},
        text_fields=["text_a", "text_b"],
        labels=["entailment", "not_entailment"],
    )
    return load_task_data(task, REPO_ROOT).train


@pytest.fixture(scope="session")
def agnews_task() -> TaskSpec:
    """AG News from one full train file: 8 per class for train and 4 per class for dev, sampled (seed 13)."""
    return _local_task(
        data={"files": {"train": str(REPO_ROOT / "data" / "agnews" / "train.jsonl")}},
        labels=["world", "sports", "business", "sci/tech"],
        few_shot={"k": 8, "seed": 13, "dev_k": 4},
        splits={"test": None},
    )


@pytest.fixture(scope="session")
def agnews_train(agnews_task: TaskSpec) -> list[Example]:
    """32 AG News train rows, 8 of each of the 4 classes."""
    return load_task_data(agnews_task, REPO_ROOT).train


# --- training: a tiny real BERT and a small space over it ---------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """Tiny models gain nothing from threads, and a spinning OpenMP pool slows a loaded machine."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT body with an offline WordPiece tokenizer, saved in Hugging Face format."""
    import torch

    torch.set_num_threads(1)
    from tiny import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with a (random, saved) masked-LM head."""
    from tiny import build_tiny_bert_mlm

    return build_tiny_bert_mlm(tmp_path_factory.mktemp("tiny-bert-mlm"))


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide Llama with an offline byte-level BPE tokenizer and a ChatML chat template."""
    from tiny import build_tiny_causal

    return build_tiny_causal(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tokenizer with a GPT-2 layout (absolute position embeddings)."""
    from tiny import build_tiny_causal

    return build_tiny_causal(tmp_path_factory.mktemp("tiny-gpt2"), arch="gpt2")


@pytest.fixture
def tiny_space(tiny_model: Path, tmp_path: Path) -> Path:
    """An SST-2 space over the tiny model: 4 sampled trials + baseline, successive halving, 2 final seeds."""
    from tiny import tiny_data, tiny_space_text

    data = tiny_data(tmp_path / "data")
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_space_text(tiny_model, data), encoding="utf-8")
    return path
