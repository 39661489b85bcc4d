"""Warm start from a best_prompt.yaml or an earlier study: what fits is enqueued, what does not is reported."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from tiny import tiny_data, tiny_space_text

from promptsearch.cli import main
from promptsearch.io.export import load_prompt_config, write_prompt_config
from promptsearch.space.config import DemoConfig, PromptConfig, TrainConfig
from promptsearch.space.search_space import parse_space
from promptsearch.study.records import WARM_START_ATTR
from promptsearch.study.warmstart import fit_config, from_export

NEW_SPACE = """
name: new
task: {data: {dir: sst2}, labels: [negative, positive]}
prompt:
  instruction: {none: "", short: "Classify the review."}
  template:
    rev: "Review: {text} Sentiment: {label}"
    it_was: "{text} It was {label}."
  label_words:
    gb: {negative: bad, positive: good}
    gt: {negative: terrible, positive: great}
  demonstrations:
    count: {low: 0, high: 4}
    selection: [random, similar]
train:
  learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}
  batch_size: [8, 16]
  epochs: 3
"""


def test_a_previous_config_is_matched_by_text_and_what_does_not_fit_is_reported() -> None:
    space = parse_space(NEW_SPACE)
    prompt = PromptConfig(
        instruction="",
        template="Review: {text} Sentiment: {label}",  # named 'review' in the old space, 'rev' here
        label_words={"negative": "awful", "positive": "superb"},  # not a choice here
        demonstrations=DemoConfig(count=2, selection="balanced"),  # balanced is not a choice here
    )
    train = TrainConfig(learning_rate=5e-3, batch_size=4, epochs=3)
    fitted = fit_config(space, prompt, train, source="old", params={"prompt.template": "review", "train.foo": 1})
    assert fitted.params == {
        "prompt.instruction": "none",
        "prompt.template": "rev",
        "prompt.demonstrations.count": 2,
        "train.learning_rate": 5e-3,
    }
    assert fitted.not_fitting == [
        "prompt.label_words: the previous {'negative': 'awful', 'positive': 'superb'} is not among this space's "
        "choices [{'negative': 'bad', 'positive': 'good'}, {'negative': 'terrible', 'positive': 'great'}]",
        "prompt.demonstrations.selection: the previous value 'balanced' is outside this space (2 choices)",
        "train.batch_size: the previous value 4 is outside this space (2 choices)",
        "train.foo: not a parameter of this space",
    ]


def test_a_fixed_parameter_that_differs_is_reported_and_zero_demonstrations_skip_their_options() -> None:
    space = parse_space(NEW_SPACE)
    prompt = PromptConfig(template="{text} It was {label}.", label_words={"negative": "bad", "positive": "good"})
    fitted = fit_config(space, prompt, TrainConfig(learning_rate=2e-3, batch_size=8, epochs=10), source="old")
    assert fitted.params["prompt.demonstrations.count"] == 0
    assert "prompt.demonstrations.selection" not in fitted.params
    assert fitted.not_fitting == ["train.epochs: the previous value 10 is outside this space (fixed 3)"]


def _space(tiny_model: Path, root: Path, name: str, batch: str) -> Path:
    text = tiny_space_text(tiny_model, tiny_data(root / "data"), name=name, n_trials=2, epochs="2")
    path = root / f"{name}.yaml"
    path.write_text(text.replace("batch_size: [4, 8]", f"batch_size: {batch}"), encoding="utf-8")
    return path


def test_run_warm_starts_from_an_earlier_study_and_a_best_prompt_file(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_space = _space(tiny_model, tmp_path, "old", "[4, 8]")
    old_out = tmp_path / "old-run"
    assert main(["run", str(old_space), "--final-seeds", "0", "--out", str(old_out), "--device", "cpu"]) == 0
    old = optuna.load_study(study_name="old", storage=f"sqlite:///{old_out / 'study.db'}")
    sampled = [t for t in old.trials if t.state == optuna.trial.TrialState.COMPLETE and t.params]
    capsys.readouterr()

    # a best-prompt file edited by hand to a config the new space only partly holds
    export = load_prompt_config(old_out / "best_prompt.yaml")
    edited = export.model_copy(
        update={
            "prompt": PromptConfig(
                template="Review: {text} Sentiment: {label}", label_words={"negative": "bad", "positive": "good"}
            ),
            "train": TrainConfig(learning_rate=4e-3, batch_size=4, epochs=2),
            "params": {"train.learning_rate": 4e-3},
        }
    )
    best_file = write_prompt_config(edited, tmp_path / "best_prompt.yaml")
    new_space = _space(tiny_model, tmp_path, "new", "[8, 16]")
    new_out = tmp_path / "new-run"
    args = ["run", str(new_space), "--final-seeds", "0", "--out", str(new_out), "--device", "cpu", "--n-trials", "3"]
    url = f"sqlite:///{old_out / 'study.db'}"
    warm = ["--warm-start", str(best_file), "--warm-start-study", url, "old", "--warm-start-top", "1"]
    assert main([*args, *warm]) == 0
    out = capsys.readouterr().out
    assert f"warm start from {best_file} (trial {export.trial} of 'old'): prompt.instruction=0" in out
    assert "  not used: train.batch_size: the previous value 4 is outside this space (2 choices)" in out
    assert "warm start from study 'old' trial" in out

    new = optuna.load_study(study_name="new", storage=f"sqlite:///{new_out / 'study.db'}")
    warmed = [t for t in new.trials if WARM_START_ATTR in t.user_attrs]
    assert [t.number for t in warmed] == [1, 2]  # right after the baseline
    assert warmed[0].params["prompt.template"] == "review"
    assert warmed[0].params["train.learning_rate"] == pytest.approx(4e-3)
    assert warmed[0].params["train.batch_size"] in (8, 16)  # sampled, since 4 does not fit
    top = max(sampled, key=lambda t: (t.value, -t.number))
    assert warmed[1].user_attrs[WARM_START_ATTR].startswith(f"study 'old' trial {top.number} ")
    for key in ("prompt.template", "prompt.label_words", "train.learning_rate"):
        assert warmed[1].params[key] == top.params[key]

    assert main([*args, "--n-trials", "4", *warm]) == 0  # resume: the same sources are not enqueued again
    again = optuna.load_study(study_name="new", storage=f"sqlite:///{new_out / 'study.db'}")
    assert len(again.trials) == 5 and sum(WARM_START_ATTR in t.user_attrs for t in again.trials) == 2


def test_warm_start_sources_that_cannot_be_read_are_one_message(
    tiny_space: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(tiny_space), "--out", str(out), "--warm-start", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file; export one with `promptsearch export`" in capsys.readouterr().err
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["run", str(tiny_space), "--out", str(out), "--warm-start-study", url, "x"]) == 2
    assert "no such database file" in capsys.readouterr().err
    assert not out.exists()


def test_a_plain_baseline_export_is_reported_not_enqueued(tiny_space: Path, tmp_path: Path) -> None:
    from promptsearch.api import load_any_space, search

    space = load_any_space(tiny_space)
    result = search(tiny_space, out=tmp_path / "run", n_trials=0, final_seeds=0, device="cpu")
    assert result.export_path is not None  # with no sampled trial, the baseline is the best
    plan = from_export(space, result.export_path)
    assert plan.trials == [] and "it is the plain fine-tuning baseline" in plan.lines()[0]


HEADS_SPACE = """
name: causal
task: {data: {dir: sst2}, labels: [negative, positive]}
model: {head: causal}
prompt:
  template: "Review: {text}\\nSentiment: {label}"
  label_words: {negative: bad, positive: good}
  chat: [false, true]
train:
  method: [none, lora]
  learning_rate: {low: 1.0e-4, high: 1.0e-3, log: true}
  lora: {r: [4, 8]}
"""


def test_warm_start_reads_chat_lora_and_in_context_configs() -> None:
    from promptsearch.space.config import LoraConfig

    space = parse_space(HEADS_SPACE)
    prompt = PromptConfig(
        template="Review: {text}\nSentiment: {label}", label_words={"negative": "bad", "positive": "good"}, chat=True
    )
    lora = TrainConfig(method="lora", learning_rate=5e-4, lora=LoraConfig(r=8))
    fitted = fit_config(space, prompt, lora, source="lora")
    assert fitted.params == {
        "prompt.chat": True,
        "train.method": "lora",
        "train.learning_rate": 5e-4,
        "train.lora.r": 8,
    }
    assert fitted.not_fitting == []
    in_context = fit_config(
        space, prompt.model_copy(update={"chat": False}), TrainConfig(method="none", epochs=0), source="none"
    )
    assert in_context.params == {"prompt.chat": False, "train.method": "none"}  # no training values: none were sampled
    assert in_context.not_fitting == []
    full = fit_config(space, prompt, TrainConfig(method="lora", lora=None), source="no lora values")
    assert "train.lora.r: the previous config has no value for it (left to the sampler)" in full.not_fitting
