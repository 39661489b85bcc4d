"""How a model answers: the :class:`Head` base class, the built-in heads (one module each) and their registry.

- ``classification`` (:mod:`.classification`): a new linear head on the body; the prompt is only extra input text.
- ``mlm`` (:mod:`.mlm`): the masked-LM logits at the ``{label}`` slot, restricted to the label words (LM-BFF).
- ``causal`` (:mod:`.causal`): the log-probability of each label word as the continuation of the prompt.
- ``embedding`` (:mod:`.embedding`): a linear head on the mean-pooled, normalised sentence embedding (SetFit's
  shape); methods ``embedding`` and ``contrastive`` fit it as a logistic regression.

Adding a head is one module with a :class:`Head` subclass decorated with :func:`register_head`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from promptsearch.models.heads.base import Head, LabelTokens, LabelWordHead, Tokenized, label_tokens, slot_whitespace
from promptsearch.models.heads.registry import get_head, register_head
from promptsearch.space.registry import HeadTraits

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = [
    "Head",
    "HeadTraits",
    "LabelTokens",
    "LabelWordHead",
    "Tokenized",
    "class_scores",
    "get_head",
    "label_tokens",
    "register_head",
    "slot_whitespace",
]


def class_scores(
    model: PreTrainedModel,
    head: str,
    batch: Mapping[str, torch.Tensor],
    slots: torch.Tensor | None,
    tokens: LabelTokens | None,
) -> torch.Tensor:
    """Scores ``[batch, classes]`` of head ``head`` (see :meth:`Head.scores`)."""
    return get_head(head).scores(model, batch, slots, tokens)
