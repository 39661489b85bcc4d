"""Sampling a trial config from a space with real Optuna trials; FixedTrial replays it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml

from promptsearch.errors import SpaceError
from promptsearch.space.config import DemoConfig, PromptConfig, TrainConfig, TrialConfig
from promptsearch.space.dimensions import Categorical, Fixed
from promptsearch.space.sampling import baseline_config, sample_config
from promptsearch.space.search_space import SearchSpace, load_space, parse_space

WriteSpace = Callable[..., Path]

# Prompt text candidates as a list (sampled by index), a conditional training parameter, and demonstrations
# that may be zero (then selection/separator are not sampled).
CONDITIONAL = """\
name: conditional
task:
  data: {dir: sst2}
  labels: [negative, positive]
prompt:
  instruction: ["", "Is this review positive or negative?"]
  template: ["{text} It was {label}.", "{instruction}\\n{demos}Review: {text}\\nSentiment: {label}"]
  label_words: {negative: bad, positive: good}
  demonstrations:
    count: [0, 2]
    selection: [random, similar]
    separator: ["\\n", " | "]
train:
  method: [full, head]
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true, when: {train.method: head}}
  epochs: {low: 2, high: 6, step: 2}
search:
  seed: 3
"""


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def sst2_space() -> SearchSpace:
    """The shipped sst2.yaml with its first model alone (MiniLM fine-tuned: every prompt key is searched)."""
    path = Path(__file__).resolve().parent.parent / "search_spaces" / "sst2.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    first = {k: v for k, v in raw["model"][0].items() if k != "id"}
    raw["model"], raw["baseline"] = first, {k: v for k, v in raw["baseline"].items() if k != "model"}
    return SearchSpace.from_dict(raw, path=path)


def random_trials(n: int, seed: int = 0) -> list[optuna.Trial]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [study.ask() for _ in range(n)]


def test_parameter_names_are_dotted_yaml_paths(sst2_space: SearchSpace) -> None:
    trial = optuna.create_study().ask()
    sample_config(trial, sst2_space)
    names = set(trial.params)
    assert names <= set(sst2_space.params)
    assert {
        "prompt.template",
        "prompt.instruction",
        "prompt.label_words",
        "prompt.demonstrations.count",
        "train.learning_rate",
        "train.batch_size",
    } <= names
    assert "train.epochs" not in names  # fixed values are not suggested


def test_text_choices_are_stored_as_keys_and_resolved(sst2_space: SearchSpace) -> None:
    for trial in random_trials(30):
        cfg = sample_config(trial, sst2_space)
        assert trial.params["prompt.template"] in ("cloze", "review", "instructed")
        assert trial.distributions["prompt.template"] == optuna.distributions.CategoricalDistribution(
            ["cloze", "review", "instructed"]
        )
        assert cfg.prompt.template == sst2_space.templates[trial.params["prompt.template"]].source
        assert cfg.prompt.instruction == sst2_space.instructions[trial.params["prompt.instruction"]]
        assert cfg.prompt.label_words == sst2_space.label_words[trial.params["prompt.label_words"]]
        assert cfg.params == trial.params
        assert 1e-5 <= cfg.train.learning_rate <= 2e-4
        assert cfg.train.epochs == sst2_space.params["train.epochs"].value  # fixed in the file
        assert cfg.prompt.seed == 0


def test_list_candidates_are_sampled_by_index(write_space: WriteSpace) -> None:
    space = load_space(write_space(CONDITIONAL))
    seen = set()
    for trial in random_trials(40):
        cfg = sample_config(trial, space)
        index = trial.params["prompt.template"]
        seen.add(index)
        assert (
            cfg.prompt.template
            == [
                "{text} It was {label}.",
                "{instruction}\n{demos}Review: {text}\nSentiment: {label}",
            ][index]
        )
        assert cfg.prompt.label_words == {"negative": "bad", "positive": "good"}
        assert "prompt.label_words" not in trial.params  # one candidate: fixed
        assert cfg.prompt.seed == 3
    assert seen == {0, 1}


def test_conditional_parameter_exists_only_under_its_condition(write_space: WriteSpace) -> None:
    space = load_space(write_space(CONDITIONAL))
    methods = []
    for trial in random_trials(60, seed=1):
        cfg = sample_config(trial, space)
        methods.append(cfg.train.method)
        if cfg.train.method == "head":
            assert 1e-4 <= trial.params["train.learning_rate"] <= 1e-2
            assert cfg.train.learning_rate == trial.params["train.learning_rate"]
        else:
            assert "train.learning_rate" not in trial.params
            assert cfg.train.learning_rate == TrainConfig().learning_rate
        assert cfg.train.epochs in (2, 4, 6)
    assert set(methods) == {"full", "head"}


def test_selection_and_separator_are_not_sampled_without_demonstrations(write_space: WriteSpace) -> None:
    space = load_space(write_space(CONDITIONAL))
    counts = set()
    for trial in random_trials(40, seed=2):
        cfg = sample_config(trial, space)
        counts.add(cfg.prompt.demonstrations.count)
        demo_params = {"prompt.demonstrations.selection", "prompt.demonstrations.separator"}
        if cfg.prompt.demonstrations.count == 0:
            assert not demo_params & set(trial.params)
            assert cfg.prompt.demonstrations == DemoConfig()
        else:
            assert demo_params <= set(trial.params)
            assert cfg.prompt.demonstrations.selection == trial.params["prompt.demonstrations.selection"]
            assert cfg.prompt.demonstrations.separator == trial.params["prompt.demonstrations.separator"]
    assert counts == {0, 2}


def test_fixed_trial_reproduces_the_config(sst2_space: SearchSpace, write_space: WriteSpace) -> None:
    conditional = load_space(write_space(CONDITIONAL))
    for space in (sst2_space, conditional):
        for trial in random_trials(25, seed=4):
            cfg = sample_config(trial, space)
            assert sample_config(optuna.trial.FixedTrial(trial.params), space) == cfg


def test_fixed_trial_of_a_hand_written_config(sst2_space: SearchSpace) -> None:
    params = {
        "prompt.instruction": "sentiment",
        "prompt.template": "review",
        "prompt.label_words": "good_bad",
        "prompt.demonstrations.count": 2,
        "prompt.demonstrations.selection": "similar",
        "train.learning_rate": 3e-5,
        "train.batch_size": 4,
    }
    assert sample_config(optuna.trial.FixedTrial(params), sst2_space) == TrialConfig(
        prompt=PromptConfig(
            instruction="Is the sentiment of this movie review positive or negative?",
            template="Review: {text}\nSentiment: {label}",
            label_words={"negative": "bad", "positive": "good"},
            demonstrations=DemoConfig(count=2, selection="similar", separator="\n"),
            seed=0,
        ),
        train=TrainConfig(learning_rate=3e-5, batch_size=4, epochs=sst2_space.params["train.epochs"].value),
        params=params,
    )


def test_a_space_with_nothing_searched_samples_nothing() -> None:
    space = parse_space(CONDITIONAL.split("prompt:")[0] + 'prompt:\n  template: "{text} It was {label}."\n')
    trial = optuna.create_study().ask()
    cfg = sample_config(trial, space)
    assert trial.params == {} and cfg.params == {}
    assert cfg.prompt.template == "{text} It was {label}."
    assert cfg.train == TrainConfig()


def test_baseline_config_uses_the_baseline_overrides(sst2_space: SearchSpace) -> None:
    cfg = baseline_config(sst2_space)
    assert cfg.baseline
    assert cfg.prompt.is_plain
    assert cfg.prompt.instruction == ""
    assert cfg.prompt.demonstrations.count == 0
    assert cfg.prompt.label_words == {"negative": "negative", "positive": "positive"}
    assert cfg.train == TrainConfig(**sst2_space.spec.baseline)
    assert sst2_space.spec.baseline["learning_rate"] == 2e-5
    assert cfg.params == {}


def test_baseline_config_defaults_without_overrides(write_space: WriteSpace) -> None:
    cfg = baseline_config(load_space(write_space(CONDITIONAL)))
    assert cfg.train == TrainConfig()
    assert cfg.prompt.seed == 3
    custom = baseline_config(load_space(write_space(CONDITIONAL + "baseline: {method: head, learning_rate: 1.0e-3}\n")))
    assert custom.train == TrainConfig(method="head", learning_rate=1e-3)


def test_a_conditional_demonstration_count_is_zero_when_its_condition_is_false() -> None:
    space = parse_space(
        CONDITIONAL.split("prompt:")[0]
        + 'prompt:\n  template: {cloze: "{text} It was {label}.", review: "Review: {text} {label}"}\n'
        + "  demonstrations:\n    count: {low: 1, high: 2, when: {prompt.template: cloze}}\n"
    )
    seen = set()
    for trial in random_trials(30):
        cfg = sample_config(trial, space)
        seen.add(trial.params["prompt.template"])
        if trial.params["prompt.template"] == "review":
            assert cfg.prompt.demonstrations.count == 0
            assert "prompt.demonstrations.count" not in trial.params
        else:
            assert cfg.prompt.demonstrations.count in (1, 2)
    assert seen == {"cloze", "review"}


FIXED_SETS = """\
name: sets
task:
  data: {dir: sst2}
  labels: [negative, positive]
prompt:
  template: "{text} It was {label}."
  label_words: {negative: bad, positive: good}
  demonstrations:
    count: [0, 2]
    selection: [random, fixed]
    sets: 3
"""


def test_the_demonstration_set_is_sampled_only_for_selection_fixed(write_space: WriteSpace) -> None:
    space = load_space(write_space(FIXED_SETS))
    assert space.params["prompt.demonstrations.set"] == Categorical((0, 1, 2))
    seen = set()
    for trial in random_trials(60, seed=5):
        demos = sample_config(trial, space).prompt.demonstrations
        if demos.count and demos.selection == "fixed":
            assert trial.params["prompt.demonstrations.set"] == demos.set
            seen.add(demos.set)
        else:
            assert "prompt.demonstrations.set" not in trial.params and demos.set == 0
    assert seen == {0, 1, 2}
    one = load_space(write_space(FIXED_SETS.replace("    sets: 3\n", "")))
    assert "prompt.demonstrations.set" not in one.params  # one set: nothing to search


def test_sets_may_be_listed_by_number(write_space: WriteSpace) -> None:
    space = load_space(write_space(FIXED_SETS.replace("sets: 3", "sets: [4, 1]")))
    assert space.params["prompt.demonstrations.set"] == Categorical((4, 1))
    one = load_space(write_space(FIXED_SETS.replace("sets: 3", "sets: [7]")))
    assert one.params["prompt.demonstrations.set"] == Fixed(7)  # what an exported best prompt re-runs
    trial = optuna.trial.FixedTrial({"prompt.demonstrations.count": 2, "prompt.demonstrations.selection": "fixed"})
    assert sample_config(trial, one).prompt.demonstrations.set == 7


@pytest.mark.parametrize(
    ("sets", "found"),
    [("0", "0"), ("101", "101"), ("[]", "[]"), ("[1, 1]", "[1, 1]"), ("[-1]", "[-1]"), ("true", "True"),
     ("[2.5]", "[2.5]"), ("two", "'two'")],
)  # fmt: skip
def test_bad_sets_are_one_clear_message(write_space: WriteSpace, sets: str, found: str) -> None:
    path = write_space(FIXED_SETS.replace("sets: 3", f"sets: {sets}"))
    with pytest.raises(SpaceError, match=re.escape(f"but found {found}")) as info:
        load_space(path)
    assert "prompt.demonstrations.sets" in str(info.value) and "sets must be a number from 1 to 100" in str(info.value)


def test_sets_without_selection_fixed_are_refused(write_space: WriteSpace) -> None:
    text = FIXED_SETS.replace("[random, fixed]", "[random, similar]")
    with pytest.raises(SpaceError, match=re.escape("sets is 3, but selection cannot be 'fixed'")):
        load_space(write_space(text))
