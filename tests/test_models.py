"""A model list: the sampler picks the model, each with its own head and training values; the report compares
the best trial per model. (Sampling and validation need no model; one small study loads two tiny ones.)"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest

from promptsearch.errors import SpaceError
from promptsearch.space.sampling import baseline_config, sample_config
from promptsearch.space.search_space import parse_space


def _text(data: Path, bert: str = "bert-dir", llama: str = "llama-dir", extra: str = "") -> str:
    return f"""
name: two-models
task: {{data: {{dir: {data}}}, labels: [negative, positive]}}
model:
  - id: bert
    name: {bert}
    head: classification
    train: {{method: full, learning_rate: {{low: 1.0e-3, high: 1.0e-2, log: true}}, epochs: 1}}
  - id: llama
    name: {llama}
    head: causal
    train: {{method: [none, lora]}}
prompt:
  template: "Review: {{text}} Sentiment: {{label}}"
  label_words: {{negative: bad, positive: good}}
  chat: [false, true]
  calibration: [none, contextual]
train:
  learning_rate: [1.0e-4, 1.0e-3]
  epochs: 1
  lora: {{r: [2, 4]}}
search: {{n_trials: 4, final_seeds: 1, pruner: {{type: none}}}}
baseline: {{epochs: 1, learning_rate: 1.0e-3}}
{extra}
"""


def test_every_model_is_sampled_with_its_own_conditional_parameters(write_space) -> None:
    data = write_space("").parent / "sst2"
    space = parse_space(_text(data))
    assert next(iter(space.params)) == "model"
    assert space.params["model.bert.train.learning_rate"].when == {"model": ("bert",)}
    assert "train.method" not in space.params  # both models set their own
    assert space.params["train.learning_rate"].when == {"model": ("llama",)}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen: dict[str, set[str]] = {"bert": set(), "llama": set()}
    for _ in range(40):
        config = sample_config(study.ask(), space)
        assert config.model is not None
        seen[config.model].add(config.train.method)
        names = set(config.params)
        if config.model == "bert":
            assert config.head == "classification" and config.train.method == "full"
            assert "model.bert.train.learning_rate" in names and 1e-3 <= config.train.learning_rate <= 1e-2
            assert not names & {"prompt.chat", "prompt.calibration", "train.method", "train.learning_rate"}
            assert config.prompt.chat is False and config.prompt.calibration == "none"
        else:
            assert config.head == "causal" and "prompt.chat" in names
            assert not any(n.startswith("model.bert.") for n in names)
            if config.train.method == "lora":
                assert config.train.lora is not None and "train.lora.r" in names
                assert config.train.learning_rate in (1e-4, 1e-3) and "prompt.calibration" not in names
            else:
                assert "prompt.calibration" in names and "train.learning_rate" not in names
    assert seen == {"bert": {"full"}, "llama": {"none", "lora"}}
    assert baseline_config(space).model == "bert"  # the first classification model


def test_model_list_problems_name_the_model(write_space) -> None:
    data = write_space("").parent / "sst2"
    text = (
        _text(data)
        .replace("id: llama", "id: bert")
        .replace("train: {method: [none, lora]}", "train: {method: [none, head]}")
    )
    with pytest.raises(SpaceError) as info:
        parse_space(text)
    message = str(info.value)
    assert "model.1: model id 'bert' is already used by model 0" in message
    assert "model.1.train.method: model 'bert' (head causal): method 'head' trains a head of its own" in message
    with pytest.raises(
        SpaceError,
        match=re.escape(
            "baseline.model: 'lama' is not a model id of this space. did you mean 'llama'? Model ids: bert, llama"
        ),
    ):
        parse_space(_text(data).replace("baseline: {epochs: 1,", "baseline: {model: lama, epochs: 1,"))
    with pytest.raises(SpaceError, match=re.escape("model.0.head: unknown head 'clf'")):
        parse_space(_text(data).replace("head: classification", "head: clf"))


@pytest.mark.slow
def test_a_study_over_two_models_reports_the_best_trial_of_each(
    tiny_model: Path, tiny_llama: Path, tmp_path: Path
) -> None:
    from tiny import tiny_data

    from promptsearch.api import search
    from promptsearch.io.export import load_prompt_config

    data = tiny_data(tmp_path / "data", test_rows=8)
    text = _text(data, str(tiny_model), str(tiny_llama)).replace("n_trials: 4", "n_trials: 6")
    result = search(parse_space(text), out=tmp_path / "run", device="cpu")
    models = {row.model: row for row in result.report.models}
    assert set(models) == {"bert", "llama"}
    assert models["bert"].head == "classification" and models["llama"].head == "causal"
    assert "## Best trial per model" in (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert 'id="models"' in (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert result.report.best is not None
    best = result.report.best.config
    exported = load_prompt_config(tmp_path / "run" / "best_prompt.yaml")
    expected = str(tiny_llama) if best.model == "llama" else str(tiny_model)
    assert exported.model.name == expected and exported.model.head == best.head
