"""Rendered and tokenized splits, cached by everything that changes them.

:class:`PromptEncoder` turns rows into token ids for one tokenizer and head (it needs no weights,
so ``promptsearch render`` uses it too); the head (:mod:`promptsearch.models.heads`) decides how. The cache key
is the prompt config, the split, the tokenizer, the head, the max length and the label slot, so trials that share
a prompt (and differ only in training) tokenize once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.io.data import Example, TaskData
from promptsearch.models.heads import Head, LabelTokens, get_head, label_tokens
from promptsearch.models.heads.base import check_chat
from promptsearch.prompts.render import PromptRenderer, RenderedPrompt
from promptsearch.space.config import PromptConfig
from promptsearch.space.registry import DEFAULT_HEAD

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

__all__ = ["Encoded", "FeatureCache", "PromptEncoder", "collate"]


@dataclass
class Encoded:
    """One split under one prompt: token ids per example, label ids, and the rendered prompts."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int]
    prompts: list[RenderedPrompt]
    head: str = DEFAULT_HEAD
    slots: list[int] | None = None  # mlm: the mask's position; causal: the prompt's last token
    tokens: LabelTokens | None = None  # the label words' token ids (mlm and causal)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    @property
    def mean_tokens(self) -> float:
        return sum(self.lengths) / max(1, len(self))


class PromptEncoder:
    """Renders and tokenizes prompts for one tokenizer and head (no model weights needed)."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        head: str | Head,
        max_length: int,
        labels: Sequence[str],
        scoring: str = "error",
    ) -> None:
        self.tokenizer = tokenizer
        self.answer = get_head(head) if isinstance(head, str) else head
        self.head = self.answer.name
        self.max_length = max_length
        self.labels = list(labels)
        self.scoring = scoring
        self.slot = self.answer.slot_text(tokenizer)
        self._tokens: dict[tuple[Any, ...], LabelTokens] = {}

    def label_tokens(self, prompt: PromptConfig) -> LabelTokens | None:
        """The label words' token ids under ``prompt`` (``None`` for a head that scores no label words)."""
        if not self.answer.traits.label_words:
            return None
        if prompt.template is None:
            raise ConfigError(f"the {self.head} head needs a template with a {{label}} slot; this prompt has none")
        key = (prompt.template, tuple(prompt.label_words.items()), prompt.chat)
        if key not in self._tokens:
            self._tokens[key] = label_tokens(
                self.tokenizer,
                self.labels,
                prompt.label_words,
                template=prompt.template,
                head=self.head,
                rule=self.scoring,
                chat=prompt.chat,
            )
        return self._tokens[key]

    def check_chat(self) -> None:
        """``prompt.chat: true`` needs a tokenizer with a chat template."""
        check_chat(self.tokenizer)

    def model_text(self, text: str, chat: bool) -> str:
        """What the model reads of a rendered text (a continuation loses its trailing whitespace, may be chat)."""
        return self.answer.model_text(self.tokenizer, text, chat)

    def counter(self, prompt: PromptConfig, tokens: LabelTokens | None) -> Callable[[str], int]:
        """Tokens a rendered text takes in the model, the answer's tokens included."""
        extra = self.answer.answer_length(tokens)
        specials = self.answer.special_tokens(prompt.chat)

        def count(text: str) -> int:
            ids = self.tokenizer(self.model_text(text, prompt.chat), add_special_tokens=specials)["input_ids"]
            return len(ids) + extra

        return count

    def encode(
        self, prompt: PromptConfig, rows: Sequence[Example], pool: Sequence[Example], *, label_words: bool = True
    ) -> Encoded:
        """Render and tokenize ``rows``; ``label_words=False`` skips the label words (no ``tokens``: the
        candidate generation scores the whole vocabulary at the slot)."""
        tokens = self.label_tokens(prompt) if label_words else None
        renderer = PromptRenderer(
            prompt,
            pool,
            slot=self.slot,
            count_tokens=self.counter(prompt, tokens),
            max_length=self.max_length,
            stop_at_slot=self.answer.traits.continuation,
        )
        prompts = renderer.render_all(rows)
        label_ids = {label: i for i, label in enumerate(self.labels)}
        labels = [label_ids[p.label] for p in prompts]
        tokenized = self.answer.tokenize(
            self.tokenizer, prompts, chat=prompt.chat, max_length=self.max_length, slot=self.slot
        )
        return Encoded(
            input_ids=tokenized.input_ids,
            token_type_ids=tokenized.token_type_ids,
            labels=labels,
            prompts=prompts,
            head=self.head,
            slots=tokenized.slots,
            tokens=tokens,
        )


class FeatureCache:
    """LRU cache of :class:`Encoded` splits for one prompt encoder (one model and head) and one task's data."""

    def __init__(self, encoder: PromptEncoder, data: TaskData, *, max_entries: int = 64) -> None:
        self.encoder = encoder
        self.data = data
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, ...], Encoded] = OrderedDict()
        self.hits = 0  # lookups served from the cache (trials that share a prompt tokenize once)

    def get(self, prompt: PromptConfig, split: str) -> Encoded:
        enc = self.encoder
        # calibration changes the scores, not the tokens: trials that differ only there share the encoding
        prompt_key = prompt.model_dump_json(exclude={"calibration"})
        name = str(getattr(enc.tokenizer, "name_or_path", ""))
        key = (prompt_key, split, name, enc.head, str(enc.max_length), enc.slot)
        if key in self._cache:
            self.hits += 1
            self._cache.move_to_end(key)
            return self._cache[key]
        rows = {"train": self.data.train, "dev": self.data.dev}.get(split)
        if rows is None:
            rows = self.data.test if split == "test" else None
        if rows is None:
            raise ValueError(f"unknown split {split!r}")
        encoded = enc.encode(prompt, rows, self.data.train)
        self._cache[key] = encoded
        if len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return encoded


def collate(encoded: Encoded, index: Sequence[int], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad the examples at ``index`` to their longest (dynamic padding) and move them to ``device``."""
    import torch

    width = max(len(encoded.input_ids[i]) for i in index)
    ids = torch.full((len(index), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(index), width), dtype=torch.long)
    types = torch.zeros((len(index), width), dtype=torch.long) if encoded.token_type_ids is not None else None
    for row, i in enumerate(index):
        seq = encoded.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
        if types is not None and encoded.token_type_ids is not None:
            types[row, : len(seq)] = torch.tensor(encoded.token_type_ids[i], dtype=torch.long)
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
