"""Extension points from outside the package: a head registered here runs a real tiny search from a YAML space
that names it, and every registry (head, metric, selector, sampler, pruner) answers an unknown name in YAML with
"did you mean" and the names registered now."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest

from promptsearch.errors import SpaceError
from promptsearch.models.heads import Head, HeadTraits, LabelTokens, get_head, register_head
from promptsearch.models.metrics import compute_metric, register_metric
from promptsearch.space import registry
from promptsearch.space.search_space import parse_space

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


@register_head("mean_pool", traits=HeadTraits(label_words=False, starts_random=True))
class MeanPoolHead(Head):
    """Class scores from the mean of the body's last hidden state through a fixed random projection: the
    projection never trains, so what the search tunes is the body."""

    auto_class = "AutoModel"

    def scores(
        self,
        model: PreTrainedModel,
        batch: Mapping[str, torch.Tensor],
        slots: torch.Tensor | None,
        tokens: LabelTokens | None,
    ) -> torch.Tensor:
        import torch

        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
        generator = torch.Generator().manual_seed(0)
        width, classes = hidden.shape[-1], int(model.config.num_labels)
        projection = torch.randn(width, classes, generator=generator) / width**0.5
        return mean @ projection.to(hidden.device, hidden.dtype)


def _space_text(model: Path, data: Path, *, head: str = "mean_pool") -> str:
    return f"""
name: plugin-head
task: {{data: {{dir: {data}}}, labels: [negative, positive]}}
model: {{name: {model}, head: {head}, max_length: 64}}
prompt:
  template: ["{{text}} It was {{label}}.", "Review: {{text}} Sentiment: {{label}}"]
train: {{method: full, learning_rate: [1.0e-3, 3.0e-3], epochs: 2, batch_size: 8}}
search: {{n_trials: 2, sampler: random, seed: 0, pruner: {{type: none}}, final_seeds: 1}}
baseline: {{epochs: 1, learning_rate: 1.0e-3}}
"""


def test_a_head_registered_outside_the_package_runs_a_real_search(tiny_model: Path, tmp_path: Path) -> None:
    from tiny import tiny_data

    from promptsearch.api import _make_runner
    from promptsearch.io.data import load_task_data
    from promptsearch.study.records import trial_config
    from promptsearch.study.storage import open_study, run_trials

    path = tmp_path / "space.yaml"
    path.write_text(_space_text(tiny_model, tiny_data(tmp_path / "data")), encoding="utf-8")
    space = parse_space(path.read_text(encoding="utf-8"), path=path)
    assert space.model.head == "mean_pool"
    data = load_task_data(space.spec.task, space.base_dir)
    runner = _make_runner(space, data, "cpu")
    assert isinstance(runner.runtime.answer, MeanPoolHead)
    assert runner.runtime.encoder.label_tokens(trial_config_prompt(space)) is None  # it scores no label words
    study = open_study(space, f"sqlite:///{tmp_path / 'study.db'}", "s", data_fingerprint=data.fingerprint)
    run_trials(runner, study, n_trials=2)
    sampled = [t for t in study.trials if not t.user_attrs.get("baseline")]
    assert len(sampled) == 2
    for trial in sampled:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial_config(trial).head == "mean_pool"
        assert trial.user_attrs["epochs_run"] == 2
        assert 0.0 <= float(trial.value) <= 1.0
    baseline = next(t for t in study.trials if t.user_attrs.get("baseline"))
    assert trial_config(baseline).head == registry.DEFAULT_HEAD  # the baseline keeps its classification head
    # the body trained through the fixed projection: the scores it gives differ from the pretrained body's
    trained = runner.runtime.model.state_dict()["embeddings.word_embeddings.weight"].clone()
    runner.runtime.restore(seed=0)
    assert not runner.runtime.model.state_dict()["embeddings.word_embeddings.weight"].equal(trained)


def trial_config_prompt(space):  # type: ignore[no-untyped-def]
    from promptsearch.space.sampling import sample_config

    return sample_config(optuna.trial.FixedTrial({"prompt.template": 0, "train.learning_rate": 1.0e-3}), space).prompt


def test_the_registered_head_is_checked_by_its_traits(tiny_model: Path, tmp_path: Path) -> None:
    """A head that starts random cannot run untrained: the space says so with the head's name."""
    text = _space_text(tiny_model, tmp_path).replace("method: full", "method: [full, none]")
    with pytest.raises(SpaceError, match=re.escape("model.head 'mean_pool': method 'none' (no training) needs")):
        parse_space(text)
    with pytest.raises(SpaceError, match="multi_token applies to the mlm and causal heads only"):
        parse_space(text.replace("head: mean_pool,", "head: mean_pool, multi_token: mean,"))


def test_register_head_refuses_a_taken_name_and_a_head_without_traits() -> None:
    with pytest.raises(ValueError, match=re.escape("head 'mlm' is already registered")):
        register_head("mlm", traits=HeadTraits(label_words=True))(MeanPoolHead)
    with pytest.raises(ValueError, match=re.escape("head 'no_traits' needs its traits")):

        @register_head("no_traits")
        class NoTraits(MeanPoolHead):
            pass

    assert "no_traits" not in registry.HEADS
    with pytest.raises(ValueError, match=re.escape("unknown head 'mean_pol'. did you mean 'mean_pool'?")):
        get_head("mean_pol")


def test_a_registered_metric_is_accepted_by_the_yaml(tiny_model: Path, tmp_path: Path) -> None:
    with registry.METRICS.temporary():

        @register_metric("error_rate")
        def error_rate(gold: list[int], pred: list[int]) -> float:
            return sum(g != p for g, p in zip(gold, pred, strict=True)) / len(gold)

        text = _space_text(tiny_model, tmp_path).replace(
            "labels: [negative, positive]}", "labels: [a, b], metric: error_rate}"
        )
        assert parse_space(text).spec.task.metric == "error_rate"
        assert compute_metric("error_rate", [0, 1, 1, 0], [0, 1, 0, 0]) == 0.25
    with pytest.raises(SpaceError, match="unknown metric 'error_rate'"):
        parse_space(text)


def test_a_registered_sampler_and_pruner_are_used_by_the_study(tiny_model: Path, tmp_path: Path) -> None:
    from promptsearch.study.storage import make_pruner, make_sampler

    with registry.SAMPLERS.temporary(), registry.PRUNERS.temporary():

        @registry.register_sampler("quasi")
        def quasi(seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
            return optuna.samplers.QMCSampler(seed=seed)

        registry.register_pruner("quartile")(optuna.pruners.PercentilePruner)
        text = _space_text(tiny_model, tmp_path).replace(
            "sampler: random, seed: 0, pruner: {type: none}",
            "sampler: quasi, seed: 0, pruner: {type: quartile, options: {percentile: 25.0}}",
        )
        space = parse_space(text)
        assert isinstance(make_sampler(space, 0), optuna.samplers.QMCSampler)
        assert isinstance(make_pruner(space), optuna.pruners.PercentilePruner)


@pytest.mark.parametrize(
    ("yaml_from", "yaml_to", "key", "kind", "names"),
    [
        ("head: mean_pool,", "head: clasification,", "model.head", "head", registry.HEADS),
        ("positive]}", "positive], metric: acuracy}", "task.metric", "metric", registry.METRICS),
        ("sampler: random,", "sampler: randm,", "search.sampler", "sampler", registry.SAMPLERS),
        ("pruner: {type: none}", "pruner: {type: hyperbnd}", "search.pruner.type", "pruner", registry.PRUNERS),
    ],
)
def test_unknown_names_get_did_you_mean_from_the_registry(
    tiny_model: Path,
    tmp_path: Path,
    yaml_from: str,
    yaml_to: str,
    key: str,
    kind: str,
    names: registry.Registry[object],
) -> None:
    text = _space_text(tiny_model, tmp_path).replace(yaml_from, yaml_to)
    bad = yaml_to.split(":")[-1].strip(" ,}")
    with pytest.raises(SpaceError) as info:
        parse_space(text)
    # the names registered now: the head defined in this file is among them
    available = ", ".join(names)
    assert f"{key}: unknown {kind} '{bad}'. did you mean" in str(info.value)
    assert f"Available: {available}" in str(info.value)


def test_an_unknown_selector_gets_did_you_mean_from_the_registry(tiny_model: Path, tmp_path: Path) -> None:
    from promptsearch.prompts.demos import DemoSelector, register_selector

    text = _space_text(tiny_model, tmp_path).replace(
        "template:", "demonstrations: {count: 1, selection: [random, firsts]}\n  template:"
    )
    with pytest.raises(SpaceError, match=re.escape("did you mean 'first'?")), registry.SELECTORS.temporary():

        @register_selector("first")
        class First(DemoSelector):
            def select(self, query, k):  # type: ignore[no-untyped-def]
                return [self.pool[i] for i in self.candidates(query)[:k]]

        assert "first" in str(registry.SELECTORS.names())
        parse_space(text)
    with pytest.raises(SpaceError, match=re.escape("supported values ['random', 'balanced', 'similar', 'fixed']")):
        parse_space(text)
