"""Generated candidates: label words ranked by a tiny model, instructions from a real (tiny) generate call,
stored with the study and read back instead of generated again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pytest

from promptsearch.errors import SpaceError
from promptsearch.space.sampling import sample_config
from promptsearch.space.search_space import SearchSpace, parse_space
from promptsearch.study.candidates import (
    CANDIDATES_ATTR,
    clean_instruction,
    ensure_candidates,
    generate_candidates,
)


def _space(data: Path, model: Path, head: str, prompt: str) -> SearchSpace:
    return parse_space(
        f"""
name: auto
task: {{data: {{dir: {data}}}, labels: [negative, positive]}}
model: {{name: {model}, head: {head}}}
prompt:
  template: {{review: "Review: {{text}} Sentiment: {{label}}", cloze: "{{text}} It was {{label}}."}}
{prompt}
train: {{method: none}}
search: {{seed: 3}}
"""
    )


@pytest.fixture
def sst2_dir(tmp_path: Path) -> Path:
    from tiny import tiny_data

    return tiny_data(tmp_path / "data", test_rows=8)


def _load(space: SearchSpace) -> Any:
    from promptsearch.io.data import load_task_data

    return load_task_data(space.spec.task, space.base_dir)


@pytest.mark.parametrize("head", ["causal", "mlm"])
def test_generated_label_words_are_distinct_whole_words_and_deterministic(
    head: str, tiny_llama: Path, tiny_mlm: Path, sst2_dir: Path
) -> None:
    import torch

    from promptsearch.models.features import PromptEncoder
    from promptsearch.models.runtime import load_tokenizer

    model = tiny_llama if head == "causal" else tiny_mlm
    space = _space(sst2_dir, model, head, "  label_words: {hand: {negative: bad, positive: good}, auto: {top_k: 3}}")
    data = _load(space)
    first = generate_candidates(space, data, torch.device("cpu"))
    again = generate_candidates(space, data, torch.device("cpu"))
    assert first["label_words"] == again["label_words"]  # deterministic
    maps = first["label_words"]
    assert list(maps) == ["auto-1", "auto-2", "auto-3"]
    ranked = first["sources"]["label_words"]["words"]
    words = {label: [w for w, _ in pairs] for label, pairs in ranked.items()}
    assert all(len(ws) == 3 for ws in words.values())
    assert not {w.lower() for w in words["negative"]} & {w.lower() for w in words["positive"]}  # distinct
    tokenizer = load_tokenizer(space.model)
    encoder = PromptEncoder(tokenizer, head, 128, ["negative", "positive"])
    from promptsearch.space.config import PromptConfig

    for mapping in maps.values():
        assert mapping["negative"] in words["negative"] and mapping["positive"] in words["positive"]
        tokens = encoder.label_tokens(PromptConfig(template="Review: {text} Sentiment: {label}", label_words=mapping))
        assert tokens is not None and tokens.single  # one vocabulary token each, where the label goes
        for word, ids in zip(tokens.words, tokens.ids, strict=True):
            assert word.isalpha() and not tokenizer.convert_ids_to_tokens(list(ids))[0].startswith("##")
    merged = space.with_candidates(first)
    assert set(merged.label_words) == {"hand", "auto-1", "auto-2", "auto-3"}


def test_generated_instructions_are_stored_with_the_study_and_never_regenerated(
    tiny_llama: Path, sst2_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers.generation.utils import GenerationMixin

    calls: list[int] = []
    real_generate = GenerationMixin.generate

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real_generate(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", counting)
    space = _space(sst2_dir, tiny_llama, "causal", '  instruction: {hand: "Classify the review.", auto: {n: 2}}')
    assert space.needs_generation and set(space.instructions) == {"hand", "none"}
    data = _load(space)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    from promptsearch.study.storage import open_study

    study = open_study(space, storage, "auto", data_fingerprint=data.fingerprint)
    merged = ensure_candidates(space, study, data, torch.device("cpu"))
    assert calls  # a real generate call on the tiny model
    stored = optuna.load_study(study_name="auto", storage=storage).user_attrs[CANDIDATES_ATTR]
    generated = stored["instructions"]
    assert 1 <= len(generated) <= 2 and all(k.startswith("auto-") for k in generated)
    assert stored["sources"]["instructions"]["proposals"]  # what they came from: raw text, examples used
    assert {merged.instructions[k] for k in generated} == set(generated.values())
    assert merged.instructions["none"] == "" and merged.instructions["hand"] == "Classify the review."

    def no_generation(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("candidates generated again")

    monkeypatch.setattr("promptsearch.study.candidates.generate_candidates", no_generation)
    resumed = open_study(space, storage, "auto", data_fingerprint=data.fingerprint)  # a resumed run or a worker
    again = ensure_candidates(space, resumed, data, torch.device("cpu"), wait=1.0)
    assert dict(again.instructions) == dict(merged.instructions)
    sampled = set()
    trials = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        sampled.add(sample_config(trials.ask(), again).prompt.instruction)
    assert sampled == set(merged.instructions.values())


def test_a_worker_without_stored_candidates_waits_then_says_why(tiny_llama: Path, sst2_dir: Path) -> None:
    from promptsearch.errors import ConfigError

    space = _space(sst2_dir, tiny_llama, "causal", "  instruction: {auto: {n: 1}}")
    study = optuna.create_study(study_name="w")
    with pytest.raises(ConfigError, match=re.escape("has no generated candidates yet")):
        ensure_candidates(space, study, _load(space), "cpu", wait=0.1, poll=0.05)


def test_a_search_with_generated_candidates_exports_them_as_text(
    tiny_llama: Path, sst2_dir: Path, tmp_path: Path
) -> None:
    from promptsearch.api import search
    from promptsearch.io.export import load_prompt_config

    space = _space(
        sst2_dir,
        tiny_llama,
        "causal",
        "  instruction: {auto: {n: 1}}\n  label_words: {auto: {top_k: 2, maps: 2}}\n  calibration: [none, mean]",
    )
    text = space.text.replace("search: {seed: 3}", "search: {seed: 3, n_trials: 3, final_seeds: 1}")
    text += "baseline: {epochs: 1}\n"
    result = search(parse_space(text), out=tmp_path / "run", device="cpu")
    report = result.report
    assert report.candidates is not None
    assert report.candidates["label_words"] and "auto-1" in report.candidates["label_words"]
    assert "## Generated candidates" in (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    from promptsearch.study.candidates import generated_parts
    from promptsearch.study.records import trial_records

    sampled = [r for r in trial_records(result.study) if not r.is_baseline and r.config is not None]
    assert sampled
    for record in sampled:  # only generated maps in this space: every sampled trial used one
        assert record.config is not None
        assert generated_parts(result.study, record.config)["label_words"]["key"].startswith("auto-")
    exported = load_prompt_config(tmp_path / "run" / "best_prompt.yaml")
    if not exported.prompt.is_plain:
        assert exported.prompt.label_words in list((report.candidates or {})["label_words"].values())
        assert exported.generated["label_words"]["key"].startswith("auto-")


def test_auto_options_are_checked_with_file_and_line(write_space) -> None:
    from promptsearch.space.search_space import load_space

    path = write_space(
        """name: bad
task: {data: {dir: sst2}, labels: [negative, positive]}
prompt:
  template: "{text} It was {label}."
  instruction:
    auto: {n: 0}
"""
    )
    with pytest.raises(SpaceError, match=re.escape(f"{path}:5: prompt.instruction: auto.n: Input should be greater")):
        load_space(path)
    path = write_space(
        """name: bad
task: {data: {dir: sst2}, labels: [negative, positive]}
prompt:
  template: "{text} It was {label}."
  instruction: {auto: {n: 2}}
  label_words: {auto: {top_k: 2, template: clozee}}
"""
    )
    with pytest.raises(SpaceError) as info:
        load_space(path)
    text = str(info.value)
    assert "prompt.label_words.auto: generated label words are ranked by a language model" in text
    assert "no model here has one" in text
    assert "prompt.instruction.auto: generated instructions are written by an instruction-following causal LM" in text
    assert "prompt.label_words.auto.template: no template 'clozee'" in text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "The instruction was: Classify the review as positive or negative. Then more.",
            "Classify the review as positive or negative.",
        ),
        ('Instruction: "Say if it is good."', "Say if it is good."),
        ("\n1. Decide the sentiment\nsecond line", "Decide the sentiment"),
        ("Label the text. Input: a copied example", "Label the text."),
        ("", ""),
    ],
)
def test_clean_instruction(raw: str, clean: str) -> None:
    assert clean_instruction(raw) == clean


def test_render_shows_the_generated_candidates_and_their_source(
    tiny_llama: Path, sst2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptsearch.cli import main

    path = tmp_path / "auto.yaml"
    path.write_text(_space(sst2_dir, tiny_llama, "causal", "  label_words: {auto: {top_k: 2}}").text, encoding="utf-8")
    assert main(["render", str(path), "--n", "1", "--set", "prompt.label_words=auto-2"]) == 0
    out = capsys.readouterr().out
    assert "generated label words (prompt.label_words), ranked by" in out
    assert "auto-1: {" in out and "zero-shot train accuracy" in out
    assert '"prompt.label_words": "auto-2"' in out
