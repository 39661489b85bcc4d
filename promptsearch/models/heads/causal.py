"""The ``causal`` head: the prompt stops where ``{label}`` starts; a class's score is the log-probability of its
label word's tokens as the continuation. One pass over the prompts (keeping their key/value cache) plus one pass
over the label tokens of every class scores a whole batch. Whitespace before the slot moves from the prompt to
the continuation (as lm-evaluation-harness does), so prompts never end in a bare space token.

Prompts that start with the same tokens (the instruction, one demonstration set for every query) can share one
reading of them: :meth:`CausalLMHead.read_prefix` runs the model once over those tokens and keeps its key/value
cache, and :meth:`CausalLMHead.scores_after` runs only each prompt's own tokens and the label words on a copy of
that cache. A causal model's keys and values at a position depend only on the tokens up to it, so the scores are
those of the whole prompts (to float rounding).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.models.heads.base import LabelTokens, LabelWordHead, check_chat, forward_params
from promptsearch.models.heads.registry import register_head

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from promptsearch.prompts.render import RenderedPrompt

__all__ = ["CausalLMHead", "Prefix"]

_NO_KEEP: set[str] = set()  # model classes whose logits_to_keep takes no per-row positions


@dataclass(frozen=True)
class Prefix:
    """The key/value cache of the model after reading ``length`` tokens, one row. It is never changed: each batch
    gets its own copy (:meth:`for_rows`), since the model appends the batch's keys and values to the cache it is
    given."""

    cache: Any
    length: int

    def for_rows(self, rows: int) -> Any:
        """A copy of the cache for ``rows`` prompts."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return cache


@register_head("causal")
class CausalLMHead(LabelWordHead):
    auto_class = "AutoModelForCausalLM"
    reuses_prefix = True

    def trains_as_head(self, model: PreTrainedModel, parameter: str, new_modules: Sequence[str]) -> bool:
        return False  # it answers through the output layer, usually tied to the input embeddings

    def slot_text(self, tokenizer: PreTrainedTokenizerBase) -> str:
        return ""  # the query ends at the slot

    def model_text(self, tokenizer: PreTrainedTokenizerBase, text: str, chat: bool) -> str:
        """The prompt without its trailing whitespace, wrapped in the chat template when asked."""
        text = text.rstrip()
        if not chat:
            return text
        check_chat(tokenizer)
        wrapped = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        return str(wrapped)

    def special_tokens(self, chat: bool) -> bool:
        return not chat

    def answer_length(self, tokens: LabelTokens | None) -> int:
        return tokens.longest if tokens is not None else 0

    def find_slots(
        self, tokenizer: PreTrainedTokenizerBase, input_ids: Sequence[Sequence[int]], prompts: Sequence[RenderedPrompt]
    ) -> list[int]:
        return [len(ids) - 1 for ids in input_ids]  # the prompt's last token predicts the answer

    def vocab_logits(
        self, model: PreTrainedModel, batch: Mapping[str, torch.Tensor], slots: torch.Tensor
    ) -> torch.Tensor:
        import torch

        rows = torch.arange(slots.shape[0], device=slots.device)
        body = getattr(model, model.base_model_prefix)  # the vocabulary projection at the slot only
        hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        project: Any = model.get_output_embeddings()
        return project(hidden[rows, slots])

    def word_scores(
        self, model: PreTrainedModel, batch: Mapping[str, torch.Tensor], slots: torch.Tensor, tokens: LabelTokens
    ) -> torch.Tensor:
        return _causal_scores(model, batch, slots, tokens)

    def read_prefix(self, model: PreTrainedModel, ids: torch.Tensor) -> Prefix | None:
        body = getattr(model, model.base_model_prefix)  # no vocabulary projection: only the cache is kept
        cache = _cache_of(body(input_ids=ids, use_cache=True))
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            return None  # a model whose cache cannot serve several rows: its prompts are read whole
        return Prefix(cache=cache, length=int(ids.shape[1]))

    def word_scores_after(
        self,
        model: PreTrainedModel,
        prefix: Any,
        batch: Mapping[str, torch.Tensor],
        slots: torch.Tensor,
        tokens: LabelTokens,
    ) -> torch.Tensor:
        return _causal_scores(model, batch, slots, tokens, prefix=prefix)


def _keep_positions(model: PreTrainedModel, last: torch.Tensor) -> dict[str, Any]:
    """``logits_to_keep`` so the vocabulary projection runs at each prompt's last token only."""
    if type(model).__name__ in _NO_KEEP or "logits_to_keep" not in forward_params(model):
        return {}
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401  (per-row positions supported)
    except ImportError:
        return {}
    return {"logits_to_keep": last.unsqueeze(1)}


def _cache_of(out: Any) -> Any:
    """The key/value cache a forward pass returned (``cache`` in transformers 5, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _cache_arg(model: PreTrainedModel) -> str:
    """The name ``forward`` takes a cache by."""
    return "cache" if "cache" in forward_params(model) else "past_key_values"


def _causal_scores(
    model: PreTrainedModel,
    batch: Mapping[str, torch.Tensor],
    last: torch.Tensor,
    tokens: LabelTokens,
    *,
    prefix: Prefix | None = None,
) -> torch.Tensor:
    """Class scores of the prompts in ``batch`` (right-padded; ``last``: each one's last token). With ``prefix``,
    ``batch`` holds only the tokens after it, and ``last`` counts from there."""
    import torch

    ids, own_mask = batch["input_ids"], batch["attention_mask"]
    device = ids.device
    n_rows, n_classes = ids.shape[0], len(tokens.ids)
    rows = torch.arange(n_rows, device=device)
    rest = tokens.longest - 1  # continuation tokens fed after the prompt
    start = prefix.length if prefix is not None else 0
    mask = own_mask if prefix is None else torch.cat([own_mask.new_ones((n_rows, start)), own_mask], dim=1)

    def first_pass(keep: dict[str, Any]) -> Any:
        past: dict[str, Any] = {}
        if prefix is not None:  # the prompts' own tokens, after the prefix's cached keys and values
            positions = start + torch.arange(ids.shape[1], device=device)
            past = {_cache_arg(model): prefix.for_rows(n_rows), "position_ids": positions.expand(n_rows, -1)}
        return model(input_ids=ids, attention_mask=mask, use_cache=rest > 0 or prefix is not None, **past, **keep)

    keep = _keep_positions(model, last)
    out = first_pass(keep)
    if keep and tuple(out.logits.shape[:2]) != (n_rows, 1):  # a model that reads logits_to_keep otherwise
        _NO_KEEP.add(type(model).__name__)
        keep = {}
        out = first_pass(keep)
    logits = out.logits[:, 0] if keep else out.logits[rows, last]
    logp = torch.log_softmax(logits.float(), dim=-1)
    first = torch.tensor([t[0] for t in tokens.ids], device=device)
    scores = logp[:, first]
    if rest > 0:
        feed = torch.zeros((n_classes, rest), dtype=torch.long, device=device)  # padding is masked out
        target = torch.zeros((n_classes, rest), dtype=torch.long, device=device)
        valid = torch.zeros((n_classes, rest), dtype=torch.long, device=device)
        for c, toks in enumerate(tokens.ids):
            k = len(toks) - 1
            if k:
                feed[c, :k] = torch.tensor(toks[:-1], device=device)
                target[c, :k] = torch.tensor(toks[1:], device=device)
                valid[c, :k] = 1
        cache = _cache_of(out)
        cache.batch_repeat_interleave(n_classes)  # row b's cache serves its n_classes continuations
        attention = torch.cat([mask.repeat_interleave(n_classes, dim=0), valid.repeat(n_rows, 1)], dim=1)
        positions = (start + last + 1).repeat_interleave(n_classes).unsqueeze(1) + torch.arange(rest, device=device)
        out2 = model(
            input_ids=feed.repeat(n_rows, 1),
            attention_mask=attention,
            position_ids=positions,
            use_cache=False,
            **{_cache_arg(model): cache},
        )
        logp2 = torch.log_softmax(out2.logits.float(), dim=-1)
        picked = logp2.gather(-1, target.repeat(n_rows, 1).unsqueeze(-1)).squeeze(-1)
        scores = scores + (picked * valid.repeat(n_rows, 1)).sum(dim=-1).view(n_rows, n_classes)
    if tokens.rule == "mean":
        lengths = torch.tensor([len(t) for t in tokens.ids], device=device, dtype=scores.dtype)
        scores = scores / lengths
    return scores
