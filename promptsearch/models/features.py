"""Rendered and tokenized splits, cached by everything that changes them.

:class:`PromptEncoder` turns rows into token ids for one tokenizer and head (it needs no weights,
so ``promptsearch render`` uses it too); the head (:mod:`promptsearch.models.heads`) decides how. The cache key
is the prompt config, the split, the tokenizer, the head, the max length and the label slot, so trials that share
a prompt (and differ only in training) tokenize once.

:func:`shared_prefix` finds, from the token ids alone, the leading tokens that many prompts share (an instruction,
one demonstration set for every query), which a head that reuses a prefix reads once for all of them;
:func:`collate` pads a batch of rows, from their first token or from after such a prefix.
"""

from __future__ import annotations

import itertools
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

__all__ = ["MIN_SHARED_TOKENS", "Encoded", "FeatureCache", "PromptEncoder", "SharedPrefix", "collate", "shared_prefix"]

# A shared prefix shorter than this is read with each prompt: reading it once would save less than the extra pass
# and the cache copies cost.
MIN_SHARED_TOKENS = 8


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


@dataclass(frozen=True)
class SharedPrefix:
    """The leading token ids ``ids`` that the prompts at ``rows`` (ascending) all start with; each of them has at
    least one token of its own after them (its last token predicts the answer)."""

    ids: tuple[int, ...]
    rows: tuple[int, ...]

    @property
    def saved(self) -> int:
        """Tokens not read again: the prefix is read once instead of once per row."""
        return len(self.ids) * (len(self.rows) - 1)


def shared_prefix(input_ids: Sequence[Sequence[int]], *, min_tokens: int = MIN_SHARED_TOKENS) -> SharedPrefix | None:
    """The prefix whose single reading saves the most tokens: of all groups of prompts, the one that maximises
    (rows - 1) x the length of the group's longest common prefix; ``None`` when that prefix is shorter than
    ``min_tokens`` (or fewer than two prompts share one).

    Found from the token ids alone, so it works for any prompt: the instruction shared by all, or one
    demonstration set shared by every query but the few whose set had to change (their own row was in it). In
    lexicographic order, a run of rows shares the minimum of the common prefixes of neighbours, so the best group
    is the largest rectangle under that histogram (one pass with a stack).

    >>> shared_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [9, 9]], min_tokens=2)
    SharedPrefix(ids=(1, 2, 3), rows=(0, 1))
    """
    order = sorted(range(len(input_ids)), key=lambda i: list(input_ids[i]))
    heights = [_common_length(input_ids[a], input_ids[b]) for a, b in itertools.pairwise(order)]
    best, best_left, best_right = 0, 0, -1  # area, and the bars heights[left..right]: rows order[left..right + 1]
    stack: list[int] = []  # bars of increasing height
    for j in range(len(heights) + 1):
        height = heights[j] if j < len(heights) else -1
        while stack and heights[stack[-1]] >= height:
            top = stack.pop()
            left = stack[-1] + 1 if stack else 0
            area = heights[top] * (j - left)
            if area > best:
                best, best_left, best_right = area, left, j - 1
        stack.append(j)
    if best_right < best_left:
        return None
    length = min(heights[best_left : best_right + 1])
    if length < max(1, min_tokens):
        return None
    rows = tuple(sorted(order[best_left : best_right + 2]))
    return SharedPrefix(ids=tuple(input_ids[rows[0]][:length]), rows=rows)


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Leading tokens ``a`` and ``b`` share, leaving each at least one of its own."""
    cap = min(len(a), len(b)) - 1
    n = 0
    while n < cap and a[n] == b[n]:
        n += 1
    return n


def collate(
    encoded: Encoded, index: Sequence[int], pad_id: int, device: torch.device, *, start: int = 0
) -> dict[str, torch.Tensor]:
    """Pad the examples at ``index`` to their longest (dynamic padding) and move them to ``device``; with
    ``start``, each example's tokens from that position on (after a shared prefix of that length)."""
    import torch

    width = max(len(encoded.input_ids[i]) - start for i in index)
    ids = torch.full((len(index), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(index), width), dtype=torch.long)
    types = torch.zeros((len(index), width), dtype=torch.long) if encoded.token_type_ids is not None else None
    for row, i in enumerate(index):
        seq = encoded.input_ids[i][start:]
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
        if types is not None and encoded.token_type_ids is not None:
            types[row, : len(seq)] = torch.tensor(encoded.token_type_ids[i][start:], dtype=torch.long)
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
