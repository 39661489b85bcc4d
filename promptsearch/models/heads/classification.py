"""The ``classification`` head: a new linear head on the body (``AutoModelForSequenceClassification``); the prompt
is only extra input text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from promptsearch.errors import ConfigError
from promptsearch.models.heads.base import Head, LabelTokens
from promptsearch.models.heads.registry import register_head

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = ["ClassificationHead"]

_HEAD_NAMES = ("classifier", "score", "classification_head")  # where transformers puts the head, by architecture


@register_head("classification")
class ClassificationHead(Head):
    auto_class = "AutoModelForSequenceClassification"

    def new_modules(self, model: PreTrainedModel, missing_keys: Sequence[str], model_name: str) -> list[str]:
        """The modules the checkpoint lacks (the new head), else the architecture's usual head module."""
        found = sorted({k.rsplit(".", 1)[0] for k in missing_keys})
        if found:
            return found
        for name in _HEAD_NAMES:
            if hasattr(model, name):
                return [name]
        raise ConfigError(f"model.name: cannot find the classification head of '{model_name}'")

    def scores(
        self,
        model: PreTrainedModel,
        batch: Mapping[str, torch.Tensor],
        slots: torch.Tensor | None,
        tokens: LabelTokens | None,
    ) -> torch.Tensor:
        return model(**batch).logits
