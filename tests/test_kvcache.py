"""Shared-prefix reuse: the prefix found from token ids, scores equal to reading every prompt whole (tiny Llama and
GPT-2, with and without the chat template, multi-token label words, calibration), length-bucketed batches in the
original order, and the final evaluation and ``predict`` on the same path."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import fuzz

from promptsearch.io.data import Example
from promptsearch.models.calibration import apply_calibration
from promptsearch.models.features import Encoded, PromptEncoder, SharedPrefix, shared_prefix
from promptsearch.models.runtime import load_tokenizer
from promptsearch.models.trainer import (
    EVAL_BATCH_SIZE,
    length_batches,
    predict_proba,
    predict_scores,
    prompts_read_whole,
    scores,
)
from promptsearch.space.config import CalibrationParams, DemoConfig, PromptConfig
from promptsearch.space.spec import ModelSpec

LABELS = ["negative", "positive"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def labelled(repo_root: Path) -> list[Example]:
    """SST-2 16-shot train and dev (64 rows): the rows a leave-one-out trial scores."""
    rows = []
    for split in ("train", "dev"):
        path = repo_root / "data" / "sst2" / "16-13" / f"{split}.jsonl"
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [Example(fields={"text": r["text"]}, label=r["label"], row=i) for i, r in enumerate(rows)]


# --- the shared prefix, from token ids alone --------------------------------------------------------------


def _best_saving(rows: Sequence[Sequence[int]]) -> int:
    """The most tokens one shared prefix can save, by brute force over every prefix of every row."""
    best = 0
    for row in rows:
        for n in range(1, len(row)):
            sharing = sum(1 for other in rows if len(other) > n and list(other[:n]) == list(row[:n]))
            best = max(best, n * (sharing - 1))
    return best


token_rows = st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=9), min_size=0, max_size=9)


@fuzz(300, 20000)
@given(rows=token_rows, min_tokens=st.integers(1, 4))
def test_the_shared_prefix_saves_the_most_tokens(rows: list[list[int]], min_tokens: int) -> None:
    found = shared_prefix(rows, min_tokens=min_tokens)
    best = _best_saving(rows)
    if found is None:
        assert best == 0 or min_tokens > 1  # with min_tokens 1, nothing found means nothing to save
        return
    assert len(found.ids) >= min_tokens and len(found.rows) >= 2
    assert list(found.rows) == sorted(set(found.rows))
    for i in found.rows:  # every row starts with it and keeps a token of its own
        assert tuple(rows[i][: len(found.ids)]) == found.ids and len(rows[i]) > len(found.ids)
    others = [i for i in range(len(rows)) if i not in found.rows]
    assert all(tuple(rows[i][: len(found.ids)]) != found.ids or len(rows[i]) == len(found.ids) for i in others)
    assert found.saved == best


def test_the_shared_prefix_of_one_demonstration_set_leaves_out_the_rows_it_had_to_change() -> None:
    instruction, demos = [1, 2, 3], [4, 5, 6, 7]
    rows = [[*instruction, *demos, 10 + i, 9] for i in range(6)]
    rows.append([*instruction, 4, 5, 8, 8, 30, 9])  # its own row was the set's second demonstration
    found = shared_prefix(rows, min_tokens=2)
    assert found == SharedPrefix(ids=(*instruction, *demos), rows=(0, 1, 2, 3, 4, 5))
    assert shared_prefix(rows, min_tokens=8) is None  # too short to be worth a pass of its own


# --- scores equal the whole-prompt path ---------------------------------------------------------------------


@contextmanager
def tokens_read(model: torch.nn.Module) -> Iterator[list[int]]:
    """Counts the token ids the model's input embeddings look up (padding included) while the block runs."""
    seen: list[int] = []
    hook = model.get_input_embeddings().register_forward_pre_hook(lambda _, args: seen.append(args[0].numel()))
    try:
        yield seen
    finally:
        hook.remove()


def _encode(folder: Path, prompt: PromptConfig, rows: list[Example], rule: str) -> tuple[Encoded, int]:
    tokenizer = load_tokenizer(ModelSpec(name=str(folder), head="causal"))
    encoded = PromptEncoder(tokenizer, "causal", 512, LABELS, rule).encode(prompt, rows, rows)
    return encoded, int(tokenizer.pad_token_id)


def _prompt(selection: str, count: int, chat: bool, *, demo_set: int = 0) -> PromptConfig:
    return PromptConfig(
        instruction="Classify the sentiment of each movie review as positive or negative.",
        template="Review: {text}\nSentiment: {label}",
        label_words={"negative": "terrible", "positive": "extraordinarily"},  # 1 and several tokens
        demonstrations=DemoConfig(count=count, selection=selection, set=demo_set),
        chat=chat,
    )


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("rule", ["sum", "mean"])
def test_scores_after_one_shared_demonstration_set_equal_the_whole_prompts(
    arch: str, chat: bool, rule: str, request: pytest.FixtureRequest, labelled: list[Example]
) -> None:
    from transformers import AutoModelForCausalLM

    folder: Path = request.getfixturevalue(f"tiny_{arch}")
    rows = labelled[:40]  # leave-one-out: the queries are the pool, so the set holds two of them
    encoded, pad_id = _encode(folder, _prompt("fixed", 2, chat), rows, rule)
    assert encoded.tokens is not None and encoded.tokens.longest > 1
    found = shared_prefix(encoded.input_ids)
    assert found is not None and len(rows) - 2 <= len(found.rows) < len(rows)  # both paths run
    assert len(found.ids) > 60  # instruction and both demonstrations
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with tokens_read(model) as whole_reads:
        whole = predict_scores(model, encoded, CPU, pad_id, "fp32", reuse_prefix=False)
    with tokens_read(model) as cached_reads:
        cached = predict_scores(model, encoded, CPU, pad_id, "fp32")
    np.testing.assert_allclose(cached, whole, atol=1e-4, rtol=0)
    assert np.abs(whole).min() > 0.1  # real log-probabilities, not zeros compared with zeros
    assert sum(cached_reads) < sum(encoded.lengths) < sum(whole_reads)
    offsets = CalibrationParams(method="contextual", offsets=[-0.2, -1.7])
    calibrated = apply_calibration(encoded, offsets)
    np.testing.assert_allclose(
        predict_scores(model, calibrated, CPU, pad_id, "fp32"),
        predict_scores(model, calibrated, CPU, pad_id, "fp32", reuse_prefix=False),
        atol=1e-4,
        rtol=0,
    )
    np.testing.assert_allclose(
        predict_scores(model, calibrated, CPU, pad_id, "fp32"), cached - np.array([-0.2, -1.7]), atol=1e-5
    )


@pytest.mark.parametrize(("selection", "count"), [("random", 2), ("balanced", 1), ("fixed", 0)])
def test_per_query_demonstrations_share_the_instruction(
    tiny_llama: Path, labelled: list[Example], selection: str, count: int
) -> None:
    from transformers import AutoModelForCausalLM

    rows = [*labelled, *labelled[:16]]  # more than one batch after the prefix: each reads an unchanged copy of it
    encoded, pad_id = _encode(tiny_llama, _prompt(selection, count, True), rows, "sum")
    found = shared_prefix(encoded.input_ids)
    assert found is not None and found.rows == tuple(range(len(rows)))  # the chat header and the instruction
    assert len(rows) > EVAL_BATCH_SIZE
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    np.testing.assert_allclose(
        predict_scores(model, encoded, CPU, pad_id, "fp32"),
        predict_scores(model, encoded, CPU, pad_id, "fp32", reuse_prefix=False),
        atol=1e-4,
        rtol=0,
    )


def test_prompts_read_whole_switches_the_prefix_off_for_every_caller(tiny_llama: Path, labelled: list[Example]) -> None:
    """The benchmark's old path: inside ``prompts_read_whole()`` every call reads each prompt whole (what
    ``reuse_prefix=False`` reads), and after it the prefix is read once again."""
    from transformers import AutoModelForCausalLM

    encoded, pad_id = _encode(tiny_llama, _prompt("fixed", 2, False), labelled[:24], "sum")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    with tokens_read(model) as whole_reads:
        whole = predict_scores(model, encoded, CPU, pad_id, "fp32", reuse_prefix=False)
    with prompts_read_whole(), tokens_read(model) as switched_reads:
        switched = predict_scores(model, encoded, CPU, pad_id, "fp32")
    with tokens_read(model) as after_reads:
        predict_scores(model, encoded, CPU, pad_id, "fp32")
    assert switched_reads == whole_reads
    np.testing.assert_array_equal(switched, whole)
    assert sum(after_reads) < sum(encoded.lengths) <= sum(whole_reads)


def test_a_head_that_reads_prompts_whole_ignores_the_prefix(tiny_mlm: Path, labelled: list[Example]) -> None:
    from transformers import AutoModelForMaskedLM

    tokenizer = load_tokenizer(ModelSpec(name=str(tiny_mlm), head="mlm"))
    prompt = PromptConfig(
        instruction="classify the review .",
        template="{text} it was {label} .",
        label_words={"negative": "terrible", "positive": "great"},
        demonstrations=DemoConfig(count=2, selection="fixed"),
    )
    encoded = PromptEncoder(tokenizer, "mlm", 256, LABELS).encode(prompt, labelled[:16], labelled)
    assert shared_prefix(encoded.input_ids) is not None  # the prompts share a prefix, but a masked LM looks both ways
    model = AutoModelForMaskedLM.from_pretrained(tiny_mlm).eval()
    pad_id = int(tokenizer.pad_token_id)
    with tokens_read(model) as reads:
        got = predict_scores(model, encoded, CPU, pad_id, "fp32")
    with tokens_read(model) as whole_reads:
        whole = predict_scores(model, encoded, CPU, pad_id, "fp32", reuse_prefix=False)
    assert reads == whole_reads and sum(reads) >= sum(encoded.lengths)  # every prompt read whole
    np.testing.assert_array_equal(got, whole)


# --- length-bucketed batches ----------------------------------------------------------------------------------


@fuzz(300, 20000)
@given(
    lengths=st.lists(st.integers(1, 60), max_size=40),
    batch_size=st.integers(1, 9),
    max_padding=st.sampled_from([None, 0.0, 0.25, 1.0]),
)
def test_length_batches_hold_every_row_once_in_buckets(
    lengths: list[int], batch_size: int, max_padding: float | None
) -> None:
    rows = [i for i in range(len(lengths)) if i % 3 != 1]  # a subset, as after a shared prefix
    got = length_batches(rows, lengths, batch_size, max_padding=max_padding)
    assert sorted(i for batch in got for i in batch) == rows
    flat = [lengths[i] for batch in got for i in batch]
    assert flat == sorted(flat)  # shortest first
    for batch in got:
        assert 1 <= len(batch) <= batch_size
        if max_padding is not None and len(batch) > 1:
            real = sum(lengths[i] for i in batch)
            assert len(batch) * max(lengths[i] for i in batch) <= real * (1 + max_padding)
    if max_padding is None:  # fixed-size batches: all full but the last
        assert all(len(batch) == batch_size for batch in got[:-1])


def test_length_buckets_give_each_row_its_own_score_in_the_original_order(
    tiny_gpt2: Path, labelled: list[Example]
) -> None:
    from transformers import AutoModelForCausalLM

    rows = labelled[:48]
    encoded, pad_id = _encode(tiny_gpt2, _prompt("random", 1, False), rows, "sum")
    assert len(set(encoded.lengths)) > 10  # many lengths: the buckets reorder the rows
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).eval()
    with torch.inference_mode():  # each row alone, in file order: no batching, no padding, no reordering
        alone = np.concatenate([scores(model, encoded, [i], CPU, pad_id).numpy() for i in range(len(rows))])
    for reuse in (False, True):
        got = predict_scores(model, encoded, CPU, pad_id, "fp32", reuse_prefix=reuse)
        np.testing.assert_allclose(got, alone, atol=1e-4, rtol=0)
        assert list(got.argmax(axis=1)) == list(alone.argmax(axis=1))
        probs = predict_proba(model, encoded, CPU, pad_id, "fp32", reuse_prefix=reuse)
        np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(got), dim=-1).numpy(), atol=1e-6)


# --- the final evaluation and predict -------------------------------------------------------------------------

SPACE = """
name: fixed-demos
task: {{data: {{dir: {data}}}, labels: [negative, positive]}}
model: {{name: {model}, head: causal, precision: fp32, max_length: 512}}
prompt:
  instruction: Classify the sentiment of each movie review as positive or negative.
  template: "Review: {{text}}\\nSentiment: {{label}}"
  label_words: {{negative: bad, positive: good}}
  demonstrations: {{count: 2, selection: fixed}}
train: {{method: none}}
search: {{evaluation: {{mode: dev}}}}
"""


def test_final_evaluation_and_predict_read_the_demonstration_set_once(tiny_llama: Path, tmp_path: Path) -> None:
    import optuna
    from tiny import tiny_data

    from promptsearch.api import train_config
    from promptsearch.inference.predict import Predictor
    from promptsearch.io.data import load_task_data
    from promptsearch.models.runtime import ModelRuntime
    from promptsearch.space.sampling import sample_config
    from promptsearch.space.search_space import parse_space
    from promptsearch.study.objective import TrialRunner

    data_dir = tiny_data(tmp_path / "data", test_rows=24)
    space = parse_space(SPACE.format(data=data_dir, model=tiny_llama))
    data = load_task_data(space.spec.task, space.base_dir)
    runner = TrialRunner(space=space, data=data, runtime=ModelRuntime(space.model, LABELS, CPU))
    config = sample_config(optuna.trial.FixedTrial({}), space)
    assert config.prompt.demonstrations == DemoConfig(count=2, selection="fixed", set=0)
    encoded = runner.features_for("causal").get(config.prompt, "test")
    assert len({tuple(d.key for d in p.demos) for p in encoded.prompts}) == 1  # no test row is in the set
    model = runner.runtime.model
    with tokens_read(model) as final_reads:
        gold, predicted = runner.predictions(config, "test")
    assert sum(final_reads) < sum(encoded.lengths)
    whole = predict_proba(model, encoded, CPU, int(runner.runtime.tokenizer.pad_token_id), reuse_prefix=False)
    assert predicted == [int(i) for i in whole.argmax(axis=1)] and gold == encoded.labels

    saved = tmp_path / "saved"
    train_config(space, save_model=saved, device="cpu")
    predictor = Predictor(saved, device="cpu")
    assert predictor.export.prompt.demonstrations.selection == "fixed"
    with tokens_read(predictor.runtime.model) as predict_reads:
        got = predictor.predict_rows([dict(ex.fields) for ex in data.test])
    assert sum(predict_reads) < sum(encoded.lengths)
    assert [LABELS.index(p.label) for p in got] == predicted
