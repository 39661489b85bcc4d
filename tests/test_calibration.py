"""Calibrated label scores: the offsets, the rules of the space, and a biased tiny model that calibration fixes
(and that ``predict`` reproduces from the export)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import optuna
import pytest

from promptsearch.errors import SpaceError
from promptsearch.models.calibration import apply_calibration, offsets_from_probabilities
from promptsearch.space.sampling import sample_config
from promptsearch.space.search_space import parse_space

TEMPLATE = "Review: {text}\\nSentiment: {label}"


def test_offsets_are_log_probabilities_over_the_classes() -> None:
    rows = [[0.9, 0.1], [0.7, 0.3]]
    contextual = offsets_from_probabilities(rows, "contextual")
    assert contextual == pytest.approx([math.log(0.8), math.log(0.2)])
    mean = offsets_from_probabilities(rows, "mean")
    logs = [(math.log(0.9) + math.log(0.7)) / 2, (math.log(0.1) + math.log(0.3)) / 2]
    shift = math.log(sum(math.exp(x) for x in logs))
    assert mean == pytest.approx([x - shift for x in logs])
    assert sum(math.exp(x) for x in mean) == pytest.approx(1.0)


def _space_text(data: Path, model: str = "default", head: str = "causal", extra: str = "") -> str:
    return f"""
name: cal
task: {{data: {{dir: {data}}}, labels: [negative, positive]}}
model: {{name: {model}, head: {head}}}
prompt:
  template: "{TEMPLATE}"
  label_words: {{negative: bad, positive: good}}
  calibration: [none, contextual, mean]
{extra}
"""


def test_calibration_needs_a_scoring_head_and_in_context_trials(write_space) -> None:
    path = write_space("")
    data = path.parent / "sst2"
    text = _space_text(data, head="classification", extra="train: {method: full}")
    with pytest.raises(SpaceError, match=re.escape("calibration ['contextual', 'mean'] adjusts label-word scores")):
        parse_space(text)
    text = _space_text(data, extra="train: {method: [full, lora]}")
    with pytest.raises(SpaceError, match=re.escape("applies to in-context trials (train.method 'none')")):
        parse_space(text)


def test_calibration_is_sampled_only_in_trials_that_do_not_train(write_space) -> None:
    path = write_space("")
    space = parse_space(_space_text(path.parent / "sst2", extra="train: {method: [none, full]}"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        config = sample_config(study.ask(), space)
        if config.train.method == "none":
            assert "prompt.calibration" in config.params
            seen.add(config.prompt.calibration)
        else:
            assert "prompt.calibration" not in config.params and config.prompt.calibration == "none"
    assert seen == {"none", "contextual", "mean"}


def _biased_llama(source: Path, target: Path, word: str, strength: float = 15.0) -> Path:
    """The tiny Llama, changed so that ``word`` wins at every label slot: the mean final hidden state of some
    prompts is added to the word's (tied) embedding, which raises its logit by about ``strength``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    texts = ["Review: a fine film\nSentiment:", "Review: dull and long\nSentiment:", "Review: it was ok\nSentiment:"]
    with torch.no_grad():
        hidden = torch.cat([model.model(**tokenizer(t, return_tensors="pt"))[0][0, -1:] for t in texts]).mean(0)
        (token,) = tokenizer(word, add_special_tokens=False)["input_ids"]
        model.lm_head.weight[token] += strength * hidden / hidden.norm() ** 2
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def test_calibration_fixes_a_biased_model_and_predict_applies_it(tiny_llama: Path, tmp_path: Path) -> None:
    import torch
    from tiny import tiny_data

    from promptsearch.api import train_config
    from promptsearch.inference.predict import Predictor
    from promptsearch.io.data import load_task_data
    from promptsearch.models.runtime import ModelRuntime
    from promptsearch.models.trainer import predict_proba
    from promptsearch.space.config import PromptConfig, TrainConfig, TrialConfig
    from promptsearch.study.objective import TrialRunner

    model = _biased_llama(tiny_llama, tmp_path / "biased", " good")
    data_dir = tiny_data(tmp_path / "data", test_rows=32)
    text = _space_text(data_dir, model=str(model), extra="train: {method: none}").replace(
        "calibration: [none, contextual, mean]", "calibration: contextual"
    )
    space = parse_space(text)
    data = load_task_data(space.spec.task, space.base_dir)
    runner = TrialRunner(
        space=space, data=data, runtime=ModelRuntime(space.model, ["negative", "positive"], torch.device("cpu"))
    )

    def predictions(calibration: str) -> list[int]:
        prompt = PromptConfig(
            template=TEMPLATE.replace("\\n", "\n"),
            label_words={"negative": "bad", "positive": "good"},
            calibration=calibration,
        )
        config = TrialConfig(prompt=prompt, train=TrainConfig(method="none", epochs=0), head="causal")
        runner.fit(config, seed=0)
        encoded = apply_calibration(runner.features_for("causal").get(prompt, "test"), runner.calibration_for(config))
        runtime = runner.runtime
        probs = predict_proba(
            runtime.model, encoded, runner.device, int(runtime.tokenizer.pad_token_id), runtime.precision
        )
        return [int(p.argmax()) for p in probs]

    plain = predictions("none")
    assert set(plain) == {1}  # the biased model answers "good" to every review
    for method in ("contextual", "mean"):
        calibrated = predictions(method)
        assert calibrated != plain and 0 in calibrated, method

    saved = tmp_path / "saved"
    train_config(space, save_model=saved, device="cpu")
    predictor = Predictor(saved, device="cpu")
    assert predictor.export.prompt.calibration == "contextual"
    assert predictor.export.calibration is not None and predictor.export.calibration.method == "contextual"
    rows = [{"text": " ".join(ex.fields.values())} for ex in data.test]
    got = [["negative", "positive"].index(p.label) for p in predictor.predict_rows(rows)]
    assert got == predictions("contextual")
