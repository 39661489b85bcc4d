"""The ``causal`` head: the prompt stops where ``{label}`` starts; a class's score is the log-probability of its
label word's tokens as the continuation. One pass over the prompts (keeping their key/value cache) plus one pass
over the label tokens of every class scores a whole batch. Whitespace before the slot moves from the prompt to
the continuation (as lm-evaluation-harness does), so prompts never end in a bare space token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptsearch.models.heads.base import LabelTokens, LabelWordHead, check_chat, forward_params
from promptsearch.models.heads.registry import register_head

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from promptsearch.prompts.render import RenderedPrompt

__all__ = ["CausalLMHead"]

_NO_KEEP: set[str] = set()  # model classes whose logits_to_keep takes no per-row positions


@register_head("causal")
class CausalLMHead(LabelWordHead):
    auto_class = "AutoModelForCausalLM"

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


def _keep_positions(model: PreTrainedModel, last: torch.Tensor) -> dict[str, Any]:
    """``logits_to_keep`` so the vocabulary projection runs at each prompt's last token only."""
    if type(model).__name__ in _NO_KEEP or "logits_to_keep" not in forward_params(model):
        return {}
    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401  (per-row positions supported)
    except ImportError:
        return {}
    return {"logits_to_keep": last.unsqueeze(1)}


def _causal_scores(
    model: PreTrainedModel, batch: Mapping[str, torch.Tensor], last: torch.Tensor, tokens: LabelTokens
) -> torch.Tensor:
    import torch

    ids, mask = batch["input_ids"], batch["attention_mask"]
    device = ids.device
    n_rows, n_classes = ids.shape[0], len(tokens.ids)
    rows = torch.arange(n_rows, device=device)
    rest = tokens.longest - 1  # continuation tokens fed after the prompt
    keep = _keep_positions(model, last)
    out = model(input_ids=ids, attention_mask=mask, use_cache=rest > 0, **keep)
    if keep and tuple(out.logits.shape[:2]) != (n_rows, 1):  # a model that reads logits_to_keep otherwise
        _NO_KEEP.add(type(model).__name__)
        out = model(input_ids=ids, attention_mask=mask, use_cache=rest > 0)
        keep = {}
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
        cache = getattr(out, "cache", None) or out.past_key_values
        cache.batch_repeat_interleave(n_classes)  # row b's cache serves its n_classes continuations
        cache_arg = "cache" if "cache" in forward_params(model) else "past_key_values"
        attention = torch.cat([mask.repeat_interleave(n_classes, dim=0), valid.repeat(n_rows, 1)], dim=1)
        positions = (last + 1).repeat_interleave(n_classes).unsqueeze(1) + torch.arange(rest, device=device)
        out2 = model(
            input_ids=feed.repeat(n_rows, 1),
            attention_mask=attention,
            position_ids=positions,
            use_cache=False,
            **{cache_arg: cache},
        )
        logp2 = torch.log_softmax(out2.logits.float(), dim=-1)
        picked = logp2.gather(-1, target.repeat(n_rows, 1).unsqueeze(-1)).squeeze(-1)
        scores = scores + (picked * valid.repeat(n_rows, 1)).sum(dim=-1).view(n_rows, n_classes)
    if tokens.rule == "mean":
        lengths = torch.tensor([len(t) for t in tokens.ids], device=device, dtype=scores.dtype)
        scores = scores / lengths
    return scores
