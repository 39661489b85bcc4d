"""Methods ``embedding`` and ``contrastive`` (head ``embedding``) on the tiny BERT: pairs, the contrastive epoch,
the logistic-regression head, export and predict, pruning, and the space's checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import promptsearch
from promptsearch.api import search
from promptsearch.io.data import load_task_data
from promptsearch.models.device import resolve_device
from promptsearch.models.embedding import contrastive_pairs, embed, fit_embedding
from promptsearch.models.runtime import ModelRuntime
from promptsearch.models.trainer import FitOptions, predict_proba
from promptsearch.space.config import PromptConfig, TrainConfig
from promptsearch.space.sampling import sample_config
from promptsearch.space.search_space import load_space

LABELS = ["negative", "positive"]


def _space_text(
    model: Path, data: Path, *, method: str, epochs: int = 2, n_trials: int = 3, pruner: str = "{type: none}",
    extra: str = "",
) -> str:  # fmt: skip
    return f"""
name: emb
task:
  data: {{dir: {data}}}
  labels: [negative, positive]
model: {{name: {model}, head: embedding, max_length: 64}}
prompt:
  instruction: {{none: "", task: "Represent this review for classifying its sentiment:"}}
  template: {{cloze: "{{text}} It was {{label}}."}}
  label_words: {{words: {{negative: terrible, positive: great}}}}
  demonstrations: {{count: [0, 2]}}
train:
  method: {method}
  learning_rate: {{low: 1.0e-4, high: 1.0e-3, log: true}}
  epochs: {epochs}
  batch_size: 16
  pairs_per_row: [2, 4]
  logistic_c: {{low: 0.1, high: 10.0, log: true}}
search:
  seed: 0
  evaluation: {{mode: dev}}
  n_trials: {n_trials}
  pruner: {pruner}
  final_seeds: 1
{extra}
"""


def _runtime(tiny_model: Path) -> ModelRuntime:
    from promptsearch.space.spec import ModelSpec

    spec = ModelSpec(name=str(tiny_model), head="embedding", max_length=64)
    return ModelRuntime(spec, LABELS, resolve_device("cpu"), head="embedding")


def _encoded(runtime: ModelRuntime, data: Path, split: str = "train"):  # type: ignore[no-untyped-def]
    from promptsearch.space.spec import TaskSpec

    task = TaskSpec.model_validate({"data": {"dir": str(data)}, "labels": LABELS})
    rows = load_task_data(task, data).train if split == "train" else load_task_data(task, data).dev
    prompt = PromptConfig(label_words={label: label for label in LABELS})
    return runtime.encoder.encode(prompt, rows, [])


@pytest.mark.parametrize(("labels", "rounds"), [([0] * 5 + [1] * 3, 4), ([0, 1, 2, 2, 1, 0, 2], 3), ([0, 0, 0], 2)])
def test_pairs_are_balanced_and_never_pair_a_row_with_itself(labels: list[int], rounds: int) -> None:
    pairs = contrastive_pairs(labels, rounds, np.random.default_rng(0))
    positive = [(i, j) for i, j, t in pairs if t == 1.0]
    negative = [(i, j) for i, j, t in pairs if t == 0.0]
    assert all(i != j for i, j, _ in pairs)
    assert all(labels[i] == labels[j] for i, j in positive)
    assert all(labels[i] != labels[j] for i, j in negative)
    several = len(set(labels)) > 1
    assert len(positive) == rounds * len(labels)  # every label here has at least two rows
    assert len(negative) == (rounds * len(labels) if several else 0)


def test_a_contrastive_epoch_moves_same_label_embeddings_closer(tiny_model: Path, tmp_path: Path) -> None:
    from tiny import tiny_data

    data = tiny_data(tmp_path / "data", test_rows=8)
    runtime = _runtime(tiny_model)
    model = runtime.restore(seed=0, train=TrainConfig(method="contrastive"))
    train = _encoded(runtime, data)
    labels = np.array(train.labels)
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)

    def gap() -> float:
        e = embed(model, train, runtime.device, int(runtime.tokenizer.pad_token_id), "fp32")
        cos = e @ e.T
        return float(cos[same & off].mean() - cos[~same].mean())

    before = gap()
    config = TrainConfig(method="contrastive", epochs=2, learning_rate=1e-3, batch_size=16, pairs_per_row=4)
    options = FitOptions(device=runtime.device, pad_id=int(runtime.tokenizer.pad_token_id), seed=0, precision="fp32")
    result = fit_embedding(model, train, train, config, options)
    after = gap()
    assert after > before + 0.05, (before, after)
    assert result.epochs_run == 2 and len(result.history) == 2  # dev scored after every epoch


def test_the_logistic_head_trains_and_predicts_what_scikit_learn_predicts(tiny_model: Path, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from tiny import tiny_data

    data = tiny_data(tmp_path / "data", test_rows=8)
    runtime = _runtime(tiny_model)
    model = runtime.restore(seed=0, train=TrainConfig(method="embedding"))
    assert not any(p.requires_grad for p in model.parameters())  # nothing trains by gradient
    train = _encoded(runtime, data)
    pad = int(runtime.tokenizer.pad_token_id)
    config = TrainConfig(method="embedding", epochs=1, logistic_c=2.0)
    result = fit_embedding(model, train, train, config, FitOptions(device=runtime.device, pad_id=pad, seed=0,
                                                                   precision="fp32"))  # fmt: skip
    assert result.history and result.best_epoch == 1 and result.best_score > 0.5
    vectors = embed(model, train, runtime.device, pad, "fp32")
    fitted = LogisticRegression(C=2.0, max_iter=1000, random_state=0).fit(vectors, train.labels)
    expected = fitted.predict_proba(vectors)
    found = predict_proba(model, train, runtime.device, pad, "fp32")
    np.testing.assert_allclose(found, expected, atol=1e-4)


def test_sampling_skips_the_template_and_the_instruction_prefixes_the_text(tiny_model: Path, tmp_path: Path) -> None:
    from tiny import tiny_data

    data = tiny_data(tmp_path / "data", test_rows=8)
    path = tmp_path / "space.yaml"
    path.write_text(_space_text(tiny_model, data, method="[embedding, contrastive]"), encoding="utf-8")
    space = load_space(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(8):
        trial = study.ask()
        config = sample_config(trial, space)
        assert config.prompt.template is None and config.prompt.demonstrations.count == 0
        assert not any(k.startswith(("prompt.template", "prompt.label_words", "prompt.demo")) for k in trial.params)
        assert ("train.pairs_per_row" in trial.params) == (config.train.method == "contrastive")
        assert ("train.learning_rate" in trial.params) == (config.train.method == "contrastive")
        study.tell(trial, 0.5)
    runtime = _runtime(tiny_model)
    prompt = PromptConfig(instruction="Represent this review:", label_words={label: label for label in LABELS})
    rows = load_task_data(space.spec.task, space.base_dir).train[:2]
    encoded = runtime.encoder.encode(prompt, rows, [])
    assert encoded.prompts[0].text == f"Represent this review: {rows[0].fields['text']}"


def test_export_then_predict_gives_the_trial_probabilities(tiny_model: Path, tmp_path: Path) -> None:
    from tiny import tiny_data

    data = tiny_data(tmp_path / "data", test_rows=8)
    path = tmp_path / "one.yaml"
    text = _space_text(tiny_model, data, method="contrastive", epochs=1)
    text = text.replace("{low: 1.0e-4, high: 1.0e-3, log: true}", "5.0e-4").replace("[2, 4]", "2")
    text = text.replace("{low: 0.1, high: 10.0, log: true}", "1.0").replace("  demonstrations: {count: [0, 2]}\n", "")
    text = text.replace('{none: "", task: "Represent this review for classifying its sentiment:"}', '"Review:"')
    path.write_text(text, encoding="utf-8")
    model = promptsearch.train(path, device="cpu")
    texts = ["a fine, moving film", "dull and far too long", "it was fine"]
    probabilities = model.predict_proba(texts)
    model.save(tmp_path / "saved")
    reloaded = promptsearch.load(tmp_path / "saved", device="cpu")
    np.testing.assert_allclose(reloaded.predict_proba(texts), probabilities, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "saved").iterdir() if p.suffix in (".pkl", ".pickle", ".joblib")) == []


def test_a_contrastive_trial_is_pruned_like_any_other(tiny_model: Path, tmp_path: Path) -> None:
    from tiny import tiny_data

    data = tiny_data(tmp_path / "data", test_rows=8)
    path = tmp_path / "space.yaml"
    pruner = "{type: median, options: {n_startup_trials: 1, n_warmup_steps: 0}}"
    path.write_text(_space_text(tiny_model, data, method="contrastive", epochs=3, n_trials=6, pruner=pruner,
                                extra="baseline:\n  epochs: 1\n"), encoding="utf-8")  # fmt: skip
    result = search(path, out=tmp_path / "run", device="cpu", final_seeds=0)
    trials = [t for t in result.study.trials if not t.user_attrs.get("baseline")]
    assert all(len(t.intermediate_values) >= 1 for t in trials)  # dev after every contrastive epoch
    assert any(t.state == TrialState.PRUNED for t in trials), [t.intermediate_values for t in trials]


def test_the_methods_need_the_embedding_head(tiny_model: Path, tmp_path: Path) -> None:
    from tiny import tiny_data

    data = tiny_data(tmp_path / "data", test_rows=8)
    path = tmp_path / "space.yaml"
    path.write_text(_space_text(tiny_model, data, method="[full, contrastive]").replace("head: embedding", "head: "
                    "classification"), encoding="utf-8")  # fmt: skip
    with pytest.raises(promptsearch.SpaceError, match="method 'contrastive' fits a logistic regression"):
        load_space(path)
