"""Rendered and tokenized splits, cached by everything that changes them.

The cache key is the prompt config, the split, the tokenizer, the max length and the label slot,
so trials that share a prompt (and differ only in training) tokenize once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from promptsearch.config import PromptConfig
from promptsearch.data import Example, TaskData
from promptsearch.render import PromptRenderer, RenderedPrompt

if TYPE_CHECKING:
    import torch

    from promptsearch.modeling import ModelRuntime

__all__ = ["Encoded", "FeatureCache", "collate"]


@dataclass
class Encoded:
    """One split under one prompt: token ids per example, label ids, and the rendered prompts."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int]
    prompts: list[RenderedPrompt]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    @property
    def mean_tokens(self) -> float:
        return sum(self.lengths) / max(1, len(self))


def encode(runtime: ModelRuntime, prompt: PromptConfig, rows: Sequence[Example], pool: Sequence[Example]) -> Encoded:
    """Render ``rows`` with ``prompt`` (demonstrations from ``pool``) and tokenize them."""
    renderer = PromptRenderer(
        prompt, pool, slot=runtime.slot, count_tokens=runtime.count_tokens, max_length=runtime.max_length
    )
    prompts = renderer.render_all(rows)
    texts = [p.text for p in prompts]
    pairs = [p.text_pair for p in prompts]
    enc = runtime.tokenizer(
        texts,
        text_pair=pairs if any(x is not None for x in pairs) else None,
        truncation=True,
        max_length=runtime.max_length,
        add_special_tokens=True,
    )
    label_ids = {label: i for i, label in enumerate(runtime.labels)}
    return Encoded(
        input_ids=list(enc["input_ids"]),
        token_type_ids=list(enc["token_type_ids"]) if "token_type_ids" in enc else None,
        labels=[label_ids[p.label] for p in prompts],
        prompts=prompts,
    )


class FeatureCache:
    """LRU cache of :class:`Encoded` splits for one model runtime and one task's data."""

    def __init__(self, runtime: ModelRuntime, data: TaskData, *, max_entries: int = 64) -> None:
        self.runtime = runtime
        self.data = data
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, ...], Encoded] = OrderedDict()
        self.hits = 0  # lookups served from the cache (trials that share a prompt tokenize once)

    def get(self, prompt: PromptConfig, split: str) -> Encoded:
        rt = self.runtime
        key = (prompt.model_dump_json(), split, rt.name, str(rt.max_length), rt.slot)
        if key in self._cache:
            self.hits += 1
            self._cache.move_to_end(key)
            return self._cache[key]
        rows = {"train": self.data.train, "dev": self.data.dev}.get(split)
        if rows is None:
            rows = self.data.test if split == "test" else None
        if rows is None:
            raise ValueError(f"unknown split {split!r}")
        encoded = encode(rt, prompt, rows, self.data.train)
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
