"""Prompt-based heads on tiny real models: label words, slot positions, scores against slow references."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from promptsearch.errors import ConfigError
from promptsearch.io.data import Example
from promptsearch.models.features import PromptEncoder, collate
from promptsearch.models.heads import LabelTokens, class_scores, label_tokens
from promptsearch.models.runtime import load_tokenizer
from promptsearch.space.config import DemoConfig, PromptConfig
from promptsearch.space.spec import ModelSpec

LABELS = ["negative", "positive"]


def _rows(sst2_rows: list[Example], n: int = 6) -> list[Example]:
    return sst2_rows[:n]


@pytest.fixture
def sst2_rows(repo_root: Path) -> list[Example]:
    import json

    lines = (repo_root / "data" / "sst2" / "16-13" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    return [Example(fields={"text": r["text"]}, label=r["label"]) for r in rows]


def _encoder(model: Path, head: str, *, max_length: int = 256, scoring: str = "error") -> PromptEncoder:
    tokenizer = load_tokenizer(ModelSpec(name=str(model), head=head))
    return PromptEncoder(tokenizer, head, max_length, LABELS, scoring)


# --- label words -------------------------------------------------------------------------------------


def test_label_words_take_the_space_the_template_puts_before_the_slot(tiny_llama: Path) -> None:
    tok = load_tokenizer(ModelSpec(name=str(tiny_llama), head="causal"))
    words = {"negative": "terrible", "positive": "great"}
    spaced = {"negative": " terrible", "positive": " great"}
    after_space = label_tokens(tok, LABELS, words, template="{text} It was {label}.", head="causal", rule="sum")
    explicit = label_tokens(tok, LABELS, spaced, template="{text} It was {label}.", head="causal", rule="sum")
    assert after_space.ids == explicit.ids
    assert tok.convert_ids_to_tokens(list(after_space.ids[1])) == ["Ġgreat"]
    glued = label_tokens(tok, LABELS, words, template="{text} It was:{label}", head="causal", rule="sum")
    assert tok.convert_ids_to_tokens(list(glued.ids[1])) == tok.tokenize("great")  # no space: no 'Ġ'
    with_space = label_tokens(tok, LABELS, spaced, template="{text} It was:{label}", head="causal", rule="sum")
    assert with_space.ids == after_space.ids  # a leading space in the word adds one where the template has none
    chat = label_tokens(tok, LABELS, words, template="{text} It was {label}.", head="causal", rule="sum", chat=True)
    assert chat.ids == glued.ids  # a chat answer opens the assistant's turn: no space


def test_multi_token_words_are_refused_by_the_single_token_rule(tiny_mlm: Path) -> None:
    tok = load_tokenizer(ModelSpec(name=str(tiny_mlm), head="mlm"))
    words = {"negative": "bad", "positive": "great."}
    with pytest.raises(ConfigError) as info:
        label_tokens(tok, LABELS, words, template="{text} It was {label}", head="mlm", rule="error")
    assert str(info.value).startswith("label word 'great.' is 2 tokens for this model (['great', '.'])")
    assert "model.multi_token: mean" in str(info.value)
    ok = label_tokens(tok, LABELS, words, template="{text} It was {label}", head="mlm", rule="mean")
    assert [len(t) for t in ok.ids] == [1, 2]
    with pytest.raises(ConfigError, match="'Great' and 'great' have the same tokens"):
        label_tokens(
            tok, LABELS, {"negative": "Great", "positive": "great"}, template="{label}", head="mlm", rule="error"
        )


# --- masked LM -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("demos", [0, 2])
@pytest.mark.parametrize("max_length", [256, 24])
def test_mlm_slot_is_the_single_mask_of_each_prompt(
    tiny_mlm: Path, sst2_rows: list[Example], demos: int, max_length: int
) -> None:
    enc = _encoder(tiny_mlm, "mlm", max_length=max_length)
    prompt = PromptConfig(
        instruction="Classify.",
        template="{text} It was {label}.",
        label_words={"negative": "terrible", "positive": "great"},
        demonstrations=DemoConfig(count=demos),
    )
    rows = [*_rows(sst2_rows), Example(fields={"text": "a [MASK] in the data"}, label="positive")]
    encoded = enc.encode(prompt, rows, sst2_rows)
    mask = enc.tokenizer.mask_token_id
    assert encoded.slots is not None
    for ids, slot, rendered in zip(encoded.input_ids, encoded.slots, encoded.prompts, strict=True):
        assert ids[slot] == mask and ids.count(mask) == 1
        assert len(ids) <= max_length
        after = enc.tokenizer.decode(ids[slot + 1 :], skip_special_tokens=True)
        assert after.strip() == "."  # the slot is the query's, after every demonstration
        if max_length == 256:
            assert len(rendered.demos) == demos
    if max_length == 24:
        assert any(p.query_truncated or p.demos_dropped for p in encoded.prompts)


def test_mlm_slot_in_sentence_pairs(tiny_mlm: Path, repo_root: Path) -> None:
    import json

    lines = (repo_root / "data" / "rte" / "16-13" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    rows = [json.loads(line) for line in lines]
    labels = sorted({r["label"] for r in rows} | {"entailment", "not_entailment"})
    tokenizer = load_tokenizer(ModelSpec(name=str(tiny_mlm), head="mlm"))
    enc = PromptEncoder(tokenizer, "mlm", 64, labels)
    prompt = PromptConfig(
        template="{text_a} Question: {text_b}? {label}.",
        label_words={"entailment": "good", "not_entailment": "bad"},
    )
    fields = [k for k in rows[0] if k != "label"]
    examples = [Example(fields={f: r[f] for f in fields}, label=r["label"]) for r in rows]
    encoded = enc.encode(prompt, examples, examples)
    assert encoded.slots is not None
    for ids, slot in zip(encoded.input_ids, encoded.slots, strict=True):
        assert ids[slot] == tokenizer.mask_token_id and len(ids) <= 64
        assert tokenizer.decode(ids[slot + 1 :], skip_special_tokens=True).strip() == "."


@pytest.mark.parametrize("rule", ["error", "mean"])
def test_mlm_scores_equal_the_full_vocabulary_reference(tiny_mlm: Path, sst2_rows: list[Example], rule: str) -> None:
    from transformers import AutoModelForMaskedLM

    enc = _encoder(tiny_mlm, "mlm", scoring=rule)
    words = {"negative": "terrible", "positive": "great." if rule == "mean" else "great"}
    prompt = PromptConfig(template="{text} It was {label}", label_words=words)
    encoded = enc.encode(prompt, _rows(sst2_rows), sst2_rows)
    model = AutoModelForMaskedLM.from_pretrained(tiny_mlm).eval()
    index = list(range(len(encoded)))
    batch = collate(encoded, index, enc.tokenizer.pad_token_id, torch.device("cpu"))
    assert encoded.slots is not None and encoded.tokens is not None
    slots = torch.tensor(encoded.slots)
    with torch.no_grad():
        fast = class_scores(model, "mlm", batch, slots, encoded.tokens)
        logp = torch.log_softmax(model(**batch).logits, dim=-1)  # every position, the slow way
    ref = torch.tensor(
        [[logp[i, encoded.slots[i], list(ids)].mean().item() for ids in encoded.tokens.ids] for i in index]
    )
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


# --- causal LM -----------------------------------------------------------------------------------------


def _reference_causal(model: torch.nn.Module, prompt_ids: list[int], tokens: LabelTokens) -> list[float]:
    """One full forward pass per label over prompt + label tokens, unpadded: the definition of the score."""
    out = []
    for ids in tokens.ids:
        seq = torch.tensor([prompt_ids + list(ids)])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=seq).logits[0].float(), dim=-1)
        start = len(prompt_ids)
        total = sum(logp[start - 1 + j, t].item() for j, t in enumerate(ids))
        out.append(total / len(ids) if tokens.rule == "mean" else total)
    return out


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize(
    ("rule", "chat", "template", "negative"),
    [
        ("sum", False, "Review: {text}\nSentiment: {label}", "terrible"),  # 1 and 6 tokens
        ("sum", False, "Review: {text}\nSentiment:\n{label}", "extraordinarily"),  # newline, then 2 long words
        ("mean", True, "Review: {text}\nSentiment: {label}", "terrible"),
    ],
)
def test_causal_scores_equal_one_pass_per_label(
    arch: str,
    rule: str,
    chat: bool,
    template: str,
    negative: str,
    request: pytest.FixtureRequest,
    sst2_rows: list[Example],
) -> None:
    from transformers import AutoModelForCausalLM

    folder: Path = request.getfixturevalue(f"tiny_{arch}")
    enc = _encoder(folder, "causal", scoring=rule)
    prompt = PromptConfig(
        template=template,
        label_words={"negative": negative, "positive": "wonderful"},
        demonstrations=DemoConfig(count=1),
        chat=chat,
    )
    encoded = enc.encode(prompt, _rows(sst2_rows), sst2_rows)
    assert encoded.tokens is not None and encoded.slots is not None
    assert encoded.tokens.longest > 1
    if "\n{label}" in template:  # the newline moved from the prompt into the answer: one more scored token
        assert enc.tokenizer.decode(list(encoded.tokens.ids[0][:1])) == "\n"
        assert len({len(t) for t in encoded.tokens.ids}) == 2  # two multi-token words of different lengths
    assert len(set(encoded.lengths)) > 1  # the batch really pads
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    index = list(range(len(encoded)))
    batch = collate(encoded, index, enc.tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        fast = class_scores(model, "causal", batch, torch.tensor(encoded.slots), encoded.tokens)
    ref = torch.tensor([_reference_causal(model, encoded.input_ids[i], encoded.tokens) for i in index])
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
    text = encoded.prompts[0].text
    assert text.rstrip().endswith("Sentiment:")  # the query stops at the slot
    if chat:
        assert enc.tokenizer.decode(encoded.input_ids[0]).endswith("<|im_start|>assistant\n")


def test_chat_without_a_chat_template_is_one_clear_error(tiny_mlm: Path, sst2_rows: list[Example]) -> None:
    tokenizer = load_tokenizer(ModelSpec(name=str(tiny_mlm)))
    enc = PromptEncoder(tokenizer, "causal", 128, LABELS, "sum")
    prompt = PromptConfig(template="{text} {label}", label_words={"negative": "bad", "positive": "good"}, chat=True)
    with pytest.raises(ConfigError, match="the tokenizer of this model has no chat template"):
        enc.encode(prompt, _rows(sst2_rows), sst2_rows)


def test_a_word_with_its_own_space_renders_once_in_demonstrations(tiny_llama: Path, sst2_rows: list[Example]) -> None:
    enc = _encoder(tiny_llama, "causal")
    prompt = PromptConfig(
        template="{text} It was {label}.",
        label_words={"negative": " terrible", "positive": " great"},
        demonstrations=DemoConfig(count=2, selection="balanced"),
    )
    text = enc.encode(prompt, _rows(sst2_rows, 1), sst2_rows).prompts[0].text
    assert "It was great." in text and "It was terrible." in text and "  " not in text
