"""The Python API end to end, in memory: a space from a dict, data as a list of dicts and a DataFrame,
``Study(...).optimize``, ``best``, ``export``, ``train``, ``predict``/``predict_proba``, ``save`` and ``load``."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import promptsearch
from promptsearch import DataError, ExperimentalWarning, Space, SpaceError, Study
from promptsearch.experimental import experimental

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO / "data" / "sst2"


def _rows(path: Path, n: int | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:n] if n is not None else rows


def _space_dict(model: Path, *, n_trials: int = 3) -> dict[str, Any]:
    """The tiny SST-2 space as a dict, without task.data: the data comes in code."""
    return {
        "name": "api",
        "task": {"labels": ["negative", "positive"]},
        "model": {"name": str(model), "max_length": 128},
        "prompt": {
            "template": {"cloze": "{text} It was {label}.", "review": "Review: {text} Sentiment: {label}"},
            "label_words": [{"negative": "terrible", "positive": "great"}],
            "demonstrations": {"count": {"low": 0, "high": 1}},
        },
        "train": {"learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True}, "epochs": 2, "batch_size": 8},
        "search": {"seed": 0, "n_trials": n_trials, "final_seeds": 1, "evaluation": {"folds": 2}, "finalists": 2},
        "baseline": {"learning_rate": 3.0e-3, "epochs": 2},
    }


@pytest.fixture(scope="module")
def in_memory() -> dict[str, Any]:
    """train: a list of dicts; dev: the same rows as a DataFrame (a tiny model needs a moving score); test: 24 rows."""
    train = _rows(SST2 / "16-13" / "train.jsonl")
    return {"train": train, "dev": pd.DataFrame(train), "test": _rows(SST2 / "test.jsonl", 24)}


def test_space_from_dict_equals_the_same_space_from_yaml(tiny_model: Path, tmp_path: Path) -> None:
    raw = _space_dict(tiny_model)
    raw["task"]["data"] = {"dir": str(tmp_path)}
    import yaml

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    from_file, from_dict = Space.from_yaml(path), Space.from_dict(raw)
    assert from_dict.spec == from_file.spec
    assert list(from_dict.params) == list(from_file.params)
    assert from_dict.path is None and from_file.path == path


def test_space_from_dict_reports_problems_like_a_file(tiny_model: Path) -> None:
    raw = _space_dict(tiny_model)
    raw["train"]["epochz"] = 3
    with pytest.raises(SpaceError, match=re.escape("<dict>: train.epochz:")):
        Space.from_dict(raw)


def test_data_in_memory_is_checked_with_the_messages_of_files(tiny_model: Path) -> None:
    space = Space.from_dict(_space_dict(tiny_model))
    rows = [{"text": "fine", "label": "positive"}, {"text": "", "label": "negative"}]
    with pytest.raises(DataError, match=re.escape("data['train']: row 2: text field 'text' must be a non-empty")):
        promptsearch.task_data(space.spec.task, {"train": rows, "dev": rows})
    with pytest.raises(DataError, match=re.escape("data['dev']: labels 'neutral' (1 rows, first at row 1)")):
        promptsearch.task_data(
            space.spec.task, {"train": rows[:1], "dev": pd.DataFrame([{"text": "ok", "label": "neutral"}])}
        )
    with pytest.raises(DataError, match=re.escape("data: unknown split(s) ['validation']")):
        promptsearch.task_data(space.spec.task, {"train": rows[:1], "validation": rows[:1]})
    with pytest.raises(DataError, match=re.escape("task.data: the space names no data")):
        Study(space)


def test_a_datasets_dataset_with_class_labels_is_one_split(tiny_model: Path) -> None:
    import datasets

    space = Space.from_dict(_space_dict(tiny_model))
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    ds = datasets.Dataset.from_dict({"text": ["dull", "lovely"], "label": [0, 1]}, features=features)
    data = promptsearch.task_data(space.spec.task, datasets.DatasetDict({"train": ds, "dev": ds}))
    assert [ex.label for ex in data.train] == ["negative", "positive"]
    assert not data.has_test


def test_round_trip_study_export_train_predict_save_load(
    tiny_model: Path, in_memory: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written unless asked
    space = Space.from_dict(_space_dict(tiny_model))
    study = Study(space, data=in_memory, device="cpu").optimize(3)
    assert list(tmp_path.iterdir()) == []
    assert len(study.optuna_study.trials) == 4  # the baseline + 3 sampled
    best = study.best
    chosen = study.best_trial
    assert chosen is not None and best.scores.dev == pytest.approx(chosen.dev)
    assert best.task.data is None  # the data came in code

    with pytest.warns(ExperimentalWarning, match="Study.finalists is experimental"):
        finalists = study.finalists  # the race (optimize ran it): the top 2 trials and the baseline
    assert len(finalists) == 3 and any(f.baseline for f in finalists)
    assert chosen.number in [f.trial for f in finalists]
    assert all(f.n == 2 and f.std_error is not None for f in finalists)  # one value per fold
    with pytest.warns(ExperimentalWarning, match="Study.test_results is experimental"):
        results = study.test_results
    assert [r.role for r in results] == ["best", "baseline"]
    assert all(r.test is not None and len(r.test["scores"]) == 1 for r in results)
    report = study.report()
    assert report.best is not None and report.best.test is not None
    assert report.best.test.model_dump() == results[0].test  # the report reads the stored final scores
    assert report.race is not None and report.verdict is not None

    exported = study.export(tmp_path / "out" / "best_prompt.yaml")
    assert promptsearch.load_prompt_config(exported).prompt == best.prompt

    model = promptsearch.train(exported, data=in_memory, device="cpu")
    assert set(model.scores) == {"dev", "dev_epoch", "test"} and model.scores["test"] is not None
    texts = ["a gorgeous, witty film", "dull and lifeless"]
    probs = model.predict_proba(texts)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert model.predict(texts) == [model.labels[k] for k in probs.argmax(axis=1)]
    assert np.allclose(model.predict_proba(pd.DataFrame({"text": texts})), probs)

    saved = model.save(tmp_path / "model")
    loaded = promptsearch.load(saved, device="cpu")
    assert isinstance(loaded, promptsearch.Model)
    assert np.allclose(loaded.predict_proba(texts), probs, atol=1e-5)
    assert loaded.predict(texts) == model.predict(texts)

    # a loaded model saves again (a copy of its files); the same rules as --save-model
    again = loaded.save(tmp_path / "model-copy")
    assert np.allclose(promptsearch.load(again, device="cpu").predict_proba(texts), probs, atol=1e-5)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(promptsearch.ConfigError, match="is not \\(exactly\\) an earlier promptsearch model save"):
        model.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.filterwarnings("ignore::promptsearch.ExperimentalWarning")
def test_evaluate_scores_one_config_of_a_space(tiny_model: Path, in_memory: dict[str, Any]) -> None:
    space = Space.from_dict(_space_dict(tiny_model))
    with pytest.raises(promptsearch.ConfigError, match=re.escape("one config is needed, but the space searches")):
        promptsearch.evaluate(space, data=in_memory, device="cpu")
    params = {
        "prompt.template": "review",
        "prompt.demonstrations.count": 0,
        "train.learning_rate": 5e-3,
    }
    result = promptsearch.evaluate(space, params, data=in_memory, device="cpu", seed=0)
    assert result.config.prompt.template == "Review: {text} Sentiment: {label}"
    assert len(result.history) == 2 and result.dev == max(result.history)
    assert result.test is not None and 0.0 <= result.test <= 1.0


def test_config_from_names_the_parameters_it_lacks_or_does_not_know(tiny_model: Path) -> None:
    space = Space.from_dict(_space_dict(tiny_model))
    params = {"prompt.template": "review", "prompt.demonstrations.count": 0, "train.learning_rate": 5e-3}
    config = promptsearch.config_from(space, params)
    assert config.prompt.template == "Review: {text} Sentiment: {label}"
    assert config.train.learning_rate == 5e-3 and config.prompt.demonstrations.count == 0
    assert promptsearch.config_from(space, config) is config
    with pytest.raises(promptsearch.ConfigError, match=re.escape("the space searches ['train.learning_rate']")):
        promptsearch.config_from(space, {k: v for k, v in params.items() if k != "train.learning_rate"})
    with pytest.raises(promptsearch.ConfigError, match=re.escape("unknown parameter(s) ['train.lr']")):
        promptsearch.config_from(space, {**params, "train.lr": 1e-3})


def test_a_study_with_a_storage_resumes(tiny_model: Path, in_memory: dict[str, Any], tmp_path: Path) -> None:
    space = Space.from_dict(_space_dict(tiny_model, n_trials=1))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = Study(space, data=in_memory, storage=url, device="cpu").optimize(0)  # the baseline alone
    assert len(first.optuna_study.trials) == 1
    again = Study(space, data=in_memory, storage=url, device="cpu").optimize(1)
    assert len(again.optuna_study.trials) == 2
    with pytest.raises(promptsearch.ConfigError, match="was run on different train/dev data"):
        Study(space, data={**in_memory, "train": in_memory["train"][:-1]}, storage=url, device="cpu")


def test_experimental_warns_once() -> None:
    @experimental("9.9")
    def shiny() -> int:
        return 1

    with pytest.warns(ExperimentalWarning, match=re.escape("shiny is experimental (added in promptsearch 9.9)")):
        assert shiny() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert shiny() == 1
    assert "Experimental (added in 9.9)" in (shiny.__doc__ or "")
