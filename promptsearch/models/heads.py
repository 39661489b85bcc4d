"""How a model turns a rendered prompt into one score per class.

Three heads:

- ``classification``: a new linear head on the body (``AutoModelForSequenceClassification``); the
  prompt is only extra input text.
- ``mlm``: the template's ``{label}`` slot holds the mask token; the masked-LM logits at that
  position, restricted to the label words' tokens, are the class scores (LM-BFF).
- ``causal``: the prompt stops where ``{label}`` starts; a class's score is the log-probability
  of its label word's tokens as the continuation. One pass over the prompts (keeping their
  key/value cache) plus one pass over the label tokens of every class scores a whole batch.

Label words are tokenized as they follow the template: in ``It was {label}.`` the word comes after a
space, so a BPE tokenizer uses its space-prefixed token (RoBERTa's ``Ġgreat``, SmolLM's
``Ġgreat``); ``great`` and `` great`` are then the same word. A leading space in the word adds one
where the template has none. Whitespace before a causal slot moves from the prompt to the
continuation (as lm-evaluation-harness does), so prompts never end in a bare space token.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptsearch.errors import ConfigError
from promptsearch.space.template import Placeholder, Template

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["HEADS", "LabelTokens", "class_scores", "label_tokens", "slot_whitespace"]

HEADS = ("classification", "mlm", "causal")
_PROBE = "("  # a character BPE and WordPiece pre-tokenizers split from a following word
_NO_KEEP: set[str] = set()  # model classes whose logits_to_keep takes no per-row positions
_FAST_MLM = {"BertForMaskedLM": "cls", "RobertaForMaskedLM": "lm_head", "XLMRobertaForMaskedLM": "lm_head"}


@dataclass(frozen=True)
class LabelTokens:
    """The token ids of each class's label word (label order), and how several tokens combine."""

    words: tuple[str, ...]
    ids: tuple[tuple[int, ...], ...]
    rule: str = "error"  # error | mean | sum
    offsets: tuple[float, ...] | None = (
        None  # calibration: subtracted from the class scores (promptsearch.models.calibration)
    )

    @property
    def single(self) -> bool:
        return all(len(t) == 1 for t in self.ids)

    @property
    def longest(self) -> int:
        return max(len(t) for t in self.ids)


def slot_whitespace(template: str) -> str:
    """The whitespace right before ``{label}`` in ``template`` ('' when a placeholder or no space precedes it)."""
    segments = Template.parse(template).segments
    for i, seg in enumerate(segments):
        if isinstance(seg, Placeholder) and seg.name == "label":
            before = segments[i - 1] if i > 0 else ""
            if isinstance(before, str):
                return before[len(before.rstrip()) :]
            return ""
    return ""


def _word_ids(tokenizer: PreTrainedTokenizerBase, word: str, whitespace: str, *, keep_whitespace: bool) -> list[int]:
    """Ids of ``word`` as it follows ``whitespace`` in running text (whitespace tokens kept only if asked)."""
    lead = word[: len(word) - len(word.lstrip())]
    ws = whitespace or lead
    probe = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    full = tokenizer(_PROBE + ws + word.strip(), add_special_tokens=False)["input_ids"]
    ids = full[len(probe) :] if full[: len(probe)] == probe else tokenizer(word, add_special_tokens=False)["input_ids"]
    if not keep_whitespace:
        while len(ids) > 1 and not str(tokenizer.decode(ids[:1])).strip():
            ids = ids[1:]  # a bare space token (SentencePiece's '▁' before some words): not part of the word
    return list(ids)


def label_tokens(
    tokenizer: PreTrainedTokenizerBase,
    labels: Sequence[str],
    label_words: Mapping[str, str],
    *,
    template: str,
    head: str,
    rule: str,
    chat: bool = False,
) -> LabelTokens:
    """Token ids of each label word for ``head`` under ``template``; clear errors for unusable words."""
    words = tuple(label_words[label] for label in labels)
    whitespace = "" if chat else slot_whitespace(template)  # a chat answer opens the assistant's turn
    ids = tuple(tuple(_word_ids(tokenizer, w, whitespace, keep_whitespace=head == "causal")) for w in words)
    for word, toks in zip(words, ids, strict=True):
        if not toks:
            raise ConfigError(f"label word {word!r} has no tokens for this tokenizer; choose another word")
        if len(toks) > 1 and rule == "error":
            pieces = tokenizer.convert_ids_to_tokens(list(toks))
            raise ConfigError(
                f"label word {word!r} is {len(toks)} tokens for this model ({pieces}), but the {head} head scores "
                "one token per label; choose a single-token word, or set model.multi_token: mean "
                "(the mean of the sub-token log-probabilities)"
            )
    key = [t if head == "causal" or rule != "error" else t[:1] for t in ids]
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            if key[i] == key[j]:
                raise ConfigError(
                    f"label words {words[i]!r} and {words[j]!r} have the same tokens for this model "
                    f"({tokenizer.convert_ids_to_tokens(list(key[i]))}), so they cannot be told apart; "
                    "choose different words"
                )
    return LabelTokens(words=words, ids=ids, rule=rule)


def class_scores(
    model: PreTrainedModel,
    head: str,
    batch: Mapping[str, torch.Tensor],
    slots: torch.Tensor | None,
    tokens: LabelTokens | None,
) -> torch.Tensor:
    """Scores ``[batch, classes]`` (logits or log-probabilities: cross-entropy and argmax treat them alike)."""
    if head == "classification":
        return model(**batch).logits
    assert slots is not None and tokens is not None
    if head == "mlm":
        out = _mlm_scores(model, batch, slots, tokens)
    elif head == "causal":
        out = _causal_scores(model, batch, slots, tokens)
    else:
        raise ValueError(f"unknown head {head!r}")
    if tokens.offsets is not None:
        import torch

        out = out - torch.tensor(tokens.offsets, dtype=out.dtype, device=out.device)
    return out


def _combine(logp: torch.Tensor, tokens: LabelTokens) -> torch.Tensor:
    """Per-class score from log-probabilities ``[batch, vocab]`` at one position (first or mean sub-token)."""
    import torch

    if tokens.single or tokens.rule == "error":
        index = torch.tensor([t[0] for t in tokens.ids], device=logp.device)
        return logp[:, index]
    return torch.stack([logp[:, list(t)].mean(dim=-1) for t in tokens.ids], dim=-1)


def _mlm_scores(
    model: PreTrainedModel, batch: Mapping[str, torch.Tensor], slots: torch.Tensor, tokens: LabelTokens
) -> torch.Tensor:
    import torch

    rows = torch.arange(slots.shape[0], device=slots.device)
    head_name = _FAST_MLM.get(type(model).__name__)
    if head_name is not None:  # the vocabulary projection only at the mask, not at every position
        hidden = getattr(model, model.base_model_prefix)(**batch)[0]
        logits = getattr(model, head_name)(hidden[rows, slots])
    else:
        logits = model(**batch).logits[rows, slots]
    return _combine(torch.log_softmax(logits.float(), dim=-1), tokens)


_FORWARD_PARAMS: dict[type, frozenset[str]] = {}


def _forward_params(model: PreTrainedModel) -> frozenset[str]:
    """The keyword arguments of the model's ``forward`` (looked up once per model class, not per batch)."""
    cls = type(model)
    if cls not in _FORWARD_PARAMS:
        _FORWARD_PARAMS[cls] = frozenset(inspect.signature(model.forward).parameters)
    return _FORWARD_PARAMS[cls]


def _keep_positions(model: PreTrainedModel, last: torch.Tensor) -> dict[str, Any]:
    """``logits_to_keep`` so the vocabulary projection runs at each prompt's last token only."""
    if type(model).__name__ in _NO_KEEP or "logits_to_keep" not in _forward_params(model):
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
        cache_arg = "cache" if "cache" in _forward_params(model) else "past_key_values"
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
