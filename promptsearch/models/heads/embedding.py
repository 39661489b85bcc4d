"""The ``embedding`` head: a linear layer on the body's sentence embedding (the mean of its last hidden states over
the real tokens, L2-normalised, as sentence-transformers models such as all-MiniLM-L6-v2 pool), SetFit's shape.

The model loads as ``AutoModelForSequenceClassification``, so the linear layer is the architecture's own classifier
and a saved model reloads with it; the head bypasses the architecture's pooler and reads the classifier's last
linear layer (``classifier``, or RoBERTa's ``classifier.out_proj``). Methods ``embedding`` and ``contrastive``
(:mod:`promptsearch.models.embedding`) fit that layer as a logistic regression; the gradient methods (``full``,
``head``, ``bitfit``, ``lora``) train it with cross-entropy like any head. It reads no template: the instruction,
when there is one, is prefixed to the text (``Represent this review for classifying its sentiment: ...``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError
from promptsearch.models.heads.base import Head, LabelTokens
from promptsearch.models.heads.registry import get_head, register_head

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = ["EmbeddingHead", "linear_head", "sentence_embeddings"]


def sentence_embeddings(model: PreTrainedModel, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``[batch, hidden]``: the body's last hidden states averaged over the attention mask, L2-normalised."""
    import torch

    hidden = model.base_model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)


def linear_head(model: PreTrainedModel) -> torch.nn.Linear:
    """The classifier's last linear layer from the hidden size to the classes."""
    import torch

    hidden, classes = int(getattr(model.config, "hidden_size", 0) or 0), int(model.config.num_labels or 0)
    for name in ("classifier", "score", "classification_head"):
        module = getattr(model, name, None)
        if module is None:
            continue
        found = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        found = [m for m in found if m.in_features == hidden and m.out_features == classes]
        if found:
            return found[-1]
    raise ConfigError(
        f"model.head 'embedding': '{getattr(model.config, 'name_or_path', 'this model')}' has no linear classifier "
        f"from its hidden size ({hidden}) to the {classes} classes; use model.head classification"
    )


@register_head("embedding")
class EmbeddingHead(Head):
    auto_class = "AutoModelForSequenceClassification"

    def new_modules(self, model: PreTrainedModel, missing_keys: Sequence[str], model_name: str) -> list[str]:
        linear_head(model)  # refuse, at load, a model this head cannot use
        return get_head("classification").new_modules(model, missing_keys, model_name)

    def scores(
        self,
        model: PreTrainedModel,
        batch: Mapping[str, torch.Tensor],
        slots: torch.Tensor | None,
        tokens: LabelTokens | None,
    ) -> torch.Tensor:
        linear = linear_head(model)
        embedded = sentence_embeddings(model, batch)
        return linear(embedded.to(linear.weight.dtype))
