"""The :class:`Head` base class: how a model turns a rendered prompt into one score per class.

A head says what it needs from the model (which ``transformers`` auto class loads it, what the tokenizer must
have), how a rendered prompt is tokenized and where its answer slot is, and how the class scores are computed.
The built-in heads live one per module (``classification``, ``mlm``, ``causal``) and are registered by name in
:mod:`promptsearch.space.registry`; :func:`promptsearch.models.heads.register_head` adds one from outside.

Label words are tokenized as they follow the template: in ``It was {label}.`` the word comes after a
space, so a BPE tokenizer uses its space-prefixed token (RoBERTa's ``Ġgreat``, SmolLM's
``Ġgreat``); ``great`` and `` great`` are then the same word. A leading space in the word adds one
where the template has none. Whitespace before a causal slot moves from the prompt to the
continuation (as lm-evaluation-harness does), so prompts never end in a bare space token.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from promptsearch.errors import ConfigError
from promptsearch.space.registry import HeadTraits, head_traits
from promptsearch.space.template import Placeholder, Template

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from promptsearch.prompts.render import RenderedPrompt

__all__ = ["Head", "LabelTokens", "LabelWordHead", "Tokenized", "check_chat", "label_tokens", "slot_whitespace"]

_PROBE = "("  # a character BPE and WordPiece pre-tokenizers split from a following word


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
    whole = head_traits(head).continuation  # a continuation is scored token by token, whitespace included
    words = tuple(label_words[label] for label in labels)
    whitespace = "" if chat else slot_whitespace(template)  # a chat answer opens the assistant's turn
    ids = tuple(tuple(_word_ids(tokenizer, w, whitespace, keep_whitespace=whole)) for w in words)
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
    key = [t if whole or rule != "error" else t[:1] for t in ids]
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            if key[i] == key[j]:
                raise ConfigError(
                    f"label words {words[i]!r} and {words[j]!r} have the same tokens for this model "
                    f"({tokenizer.convert_ids_to_tokens(list(key[i]))}), so they cannot be told apart; "
                    "choose different words"
                )
    return LabelTokens(words=words, ids=ids, rule=rule)


def check_chat(tokenizer: PreTrainedTokenizerBase) -> None:
    """``prompt.chat: true`` needs a tokenizer with a chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "prompt.chat: true, but the tokenizer of this model has no chat template; "
            "set prompt.chat: false or use an instruction-tuned model that ships one"
        )


@dataclass(frozen=True)
class Tokenized:
    """Rendered prompts as token ids, and each one's answer slot (``None``: a head that reads no slot)."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    slots: list[int] | None = None


class Head(ABC):
    """How a model answers: one score per class for each tokenized prompt.

    Subclass it, set ``auto_class`` (the ``transformers`` class that loads the model with this head) and implement
    :meth:`scores`; register it with :func:`promptsearch.models.heads.register_head`, with its
    :class:`~promptsearch.space.registry.HeadTraits` (what the search space checks need to know).
    """

    name: ClassVar[str] = ""
    traits: ClassVar[HeadTraits]
    auto_class: ClassVar[str] = "AutoModel"
    # whether prompts that start with the same tokens can share one reading of them (read_prefix, scores_after)
    reuses_prefix: ClassVar[bool] = False

    # --- what it needs from the model --------------------------------------------------------------------------

    def model_kwargs(self, labels: Sequence[str]) -> dict[str, Any]:
        """Extra keyword arguments of ``from_pretrained`` (the class names, for a head that has them)."""
        return {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)},
        }

    def check_tokenizer(self, tokenizer: PreTrainedTokenizerBase, model_name: str) -> None:  # noqa: B027
        """Raise :class:`ConfigError` when the tokenizer lacks what this head needs (by default: nothing)."""

    def new_modules(self, model: PreTrainedModel, missing_keys: Sequence[str], model_name: str) -> list[str]:
        """Modules that are new (not pretrained) and re-initialised with each trial's seed."""
        return []

    def trains_as_head(self, model: PreTrainedModel, parameter: str, new_modules: Sequence[str]) -> bool:
        """Whether method ``head`` trains ``parameter``: by default, the new modules' weights."""
        return any(parameter.startswith(m + ".") for m in new_modules)

    # --- the prompt and its answer slot ------------------------------------------------------------------------

    def slot_text(self, tokenizer: PreTrainedTokenizerBase) -> str:
        """What the ``{label}`` slot of a query renders as (the mask token, or nothing)."""
        return str(tokenizer.mask_token or "")

    def model_text(self, tokenizer: PreTrainedTokenizerBase, text: str, chat: bool) -> str:
        """What the model reads of a rendered prompt."""
        return text

    def special_tokens(self, chat: bool) -> bool:
        """Whether the tokenizer adds its special tokens (a chat template writes its own)."""
        return True

    def answer_length(self, tokens: LabelTokens | None) -> int:
        """Tokens the answer adds to a prompt's length (a continuation's label tokens)."""
        return 0

    def tokenize(
        self,
        tokenizer: PreTrainedTokenizerBase,
        prompts: Sequence[RenderedPrompt],
        *,
        chat: bool,
        max_length: int,
        slot: str,
    ) -> Tokenized:
        """Token ids of the rendered ``prompts`` (and their answer slots)."""
        texts = [p.text for p in prompts]
        pairs = [p.text_pair for p in prompts]
        enc = tokenizer(
            texts,
            text_pair=pairs if any(x is not None for x in pairs) else None,
            truncation=True,
            max_length=max_length,
            add_special_tokens=True,
        )
        types = list(enc["token_type_ids"]) if "token_type_ids" in enc else None
        return Tokenized(input_ids=list(enc["input_ids"]), token_type_ids=types)

    # --- the answer -------------------------------------------------------------------------------------------

    @abstractmethod
    def scores(
        self,
        model: PreTrainedModel,
        batch: Mapping[str, torch.Tensor],
        slots: torch.Tensor | None,
        tokens: LabelTokens | None,
    ) -> torch.Tensor:
        """Scores ``[batch, classes]`` (logits or log-probabilities: cross-entropy and argmax treat them alike)."""

    def read_prefix(self, model: PreTrainedModel, ids: torch.Tensor) -> Any:
        """What the model keeps after reading ``ids`` ``[1, length]`` once: the tokens that many prompts start with
        (for :meth:`scores_after`; only a head with ``reuses_prefix`` has it). ``None``: this model cannot reuse
        it, and the prompts are read whole."""
        raise NotImplementedError(f"the {self.name} head reads every prompt whole (reuses_prefix is false)")

    def scores_after(
        self,
        model: PreTrainedModel,
        prefix: Any,
        batch: Mapping[str, torch.Tensor],
        slots: torch.Tensor | None,
        tokens: LabelTokens | None,
    ) -> torch.Tensor:
        """:meth:`scores` of prompts that all start with the tokens ``prefix`` was read from (:meth:`read_prefix`):
        ``batch`` holds each prompt's own tokens after them, and ``slots`` count from there."""
        raise NotImplementedError(f"the {self.name} head reads every prompt whole (reuses_prefix is false)")


class LabelWordHead(Head):
    """A language model's head that scores each class's label word at the ``{label}`` slot."""

    def model_kwargs(self, labels: Sequence[str]) -> dict[str, Any]:
        return {}

    def tokenize(
        self,
        tokenizer: PreTrainedTokenizerBase,
        prompts: Sequence[RenderedPrompt],
        *,
        chat: bool,
        max_length: int,
        slot: str,
    ) -> Tokenized:
        enc = tokenizer(
            [self.model_text(tokenizer, p.text, chat) for p in prompts],
            add_special_tokens=self.special_tokens(chat),
            truncation=False,
        )
        input_ids = [list(ids) for ids in enc["input_ids"]]
        types = list(enc["token_type_ids"]) if "token_type_ids" in enc else None
        slots = self.find_slots(tokenizer, input_ids, prompts)
        return Tokenized(input_ids=input_ids, token_type_ids=types, slots=slots)

    @abstractmethod
    def find_slots(
        self, tokenizer: PreTrainedTokenizerBase, input_ids: Sequence[Sequence[int]], prompts: Sequence[RenderedPrompt]
    ) -> list[int]:
        """Each prompt's answer position (where the label word is scored)."""

    @abstractmethod
    def vocab_logits(
        self, model: PreTrainedModel, batch: Mapping[str, torch.Tensor], slots: torch.Tensor
    ) -> torch.Tensor:
        """Logits over the whole vocabulary at each prompt's slot ``[batch, vocab]`` (generated label words)."""

    def scores(
        self,
        model: PreTrainedModel,
        batch: Mapping[str, torch.Tensor],
        slots: torch.Tensor | None,
        tokens: LabelTokens | None,
    ) -> torch.Tensor:
        assert slots is not None and tokens is not None
        return _calibrated(self.word_scores(model, batch, slots, tokens), tokens)

    def scores_after(
        self,
        model: PreTrainedModel,
        prefix: Any,
        batch: Mapping[str, torch.Tensor],
        slots: torch.Tensor | None,
        tokens: LabelTokens | None,
    ) -> torch.Tensor:
        assert slots is not None and tokens is not None
        return _calibrated(self.word_scores_after(model, prefix, batch, slots, tokens), tokens)

    @abstractmethod
    def word_scores(
        self, model: PreTrainedModel, batch: Mapping[str, torch.Tensor], slots: torch.Tensor, tokens: LabelTokens
    ) -> torch.Tensor:
        """Uncalibrated class scores from the label words' tokens."""

    def word_scores_after(
        self,
        model: PreTrainedModel,
        prefix: Any,
        batch: Mapping[str, torch.Tensor],
        slots: torch.Tensor,
        tokens: LabelTokens,
    ) -> torch.Tensor:
        """:meth:`word_scores` of prompts after a shared prefix (see :meth:`Head.scores_after`)."""
        raise NotImplementedError(f"the {self.name} head reads every prompt whole (reuses_prefix is false)")


def _calibrated(scores: torch.Tensor, tokens: LabelTokens) -> torch.Tensor:
    """``scores`` less the calibration offsets of ``tokens`` (when it has them)."""
    if tokens.offsets is None:
        return scores
    import torch

    return scores - torch.tensor(tokens.offsets, dtype=scores.dtype, device=scores.device)


def combine(logp: torch.Tensor, tokens: LabelTokens) -> torch.Tensor:
    """Per-class score from log-probabilities ``[batch, vocab]`` at one position (first or mean sub-token)."""
    import torch

    if tokens.single or tokens.rule == "error":
        index = torch.tensor([t[0] for t in tokens.ids], device=logp.device)
        return logp[:, index]
    return torch.stack([logp[:, list(t)].mean(dim=-1) for t in tokens.ids], dim=-1)


_FORWARD_PARAMS: dict[type, frozenset[str]] = {}


def forward_params(model: PreTrainedModel) -> frozenset[str]:
    """The keyword arguments of the model's ``forward`` (looked up once per model class, not per batch)."""
    cls = type(model)
    if cls not in _FORWARD_PARAMS:
        _FORWARD_PARAMS[cls] = frozenset(inspect.signature(model.forward).parameters)
    return _FORWARD_PARAMS[cls]
